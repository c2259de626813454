"""What a pool's renewal charges and grants (seed 000: static and dynamic pools)."""

from __future__ import annotations

import pytest

from domain.enums import PoolKind
from domain.pools import charging_account, pool_ocs_account, pool_renewal

GB = 1 << 30


@pytest.mark.parametrize("members", [0, 1, 7])
def test_a_static_pool_costs_and_gets_the_same_whatever_its_member_count(members: int) -> None:
    renewal = pool_renewal(PoolKind.STATIC, price_minor=5000, data_bytes=50 * GB, members=members)
    assert (renewal.amount_minor, renewal.data_bytes, renewal.members) == (5000, 50 * GB, members)


@pytest.mark.parametrize(("members", "amount", "data"), [(0, 0, 0), (1, 700, 2 * GB), (3, 2100, 6 * GB)])
def test_a_dynamic_pool_charges_and_grants_per_member(members: int, amount: int, data: int) -> None:
    renewal = pool_renewal("dynamic", price_minor=700, data_bytes=2 * GB, members=members)
    assert (renewal.amount_minor, renewal.data_bytes) == (amount, data)


def test_a_negative_member_count_is_refused() -> None:
    with pytest.raises(ValueError, match="members"):
        pool_renewal(PoolKind.DYNAMIC, price_minor=700, data_bytes=GB, members=-1)


def test_a_member_line_is_rated_on_its_pool_account() -> None:
    assert charging_account("ocs-0601", pool_ocs_account("p1")) == "pool-p1"
    assert charging_account("ocs-0601", None) == "ocs-0601"
