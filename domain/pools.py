"""Pools (seed 000): what a pool's renewal charges and grants, and where its shared allowance lives.

A static pool costs its plan's price and gets its plan's data whatever the member count; a dynamic pool, the
plan's price and data per member active at renewal time. The allowance is one OCS account per pool: the
members' usage is rated on it (see docs/decisions.md, "Pools: one OCS account per pool").
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.enums import PoolKind, SubscriptionKind

PLAN_KIND_OF_POOL = {PoolKind.STATIC: SubscriptionKind.STATIC_POOL, PoolKind.DYNAMIC: SubscriptionKind.DYNAMIC_POOL}


@dataclass(frozen=True)
class PoolRenewal:
    amount_minor: int
    data_bytes: int
    members: int


def pool_renewal(kind: PoolKind | str, *, price_minor: int, data_bytes: int, members: int) -> PoolRenewal:
    """The charge and the grant of one period of a pool with `members` active lines at renewal time."""
    if members < 0:
        raise ValueError("members must not be negative")
    if PoolKind(kind) == PoolKind.STATIC:
        return PoolRenewal(amount_minor=price_minor, data_bytes=data_bytes, members=members)
    return PoolRenewal(amount_minor=price_minor * members, data_bytes=data_bytes * members, members=members)


def pool_ocs_account(pool_id: str) -> str:
    """The pool's OCS account, holding its allowance; every member line is rated on it."""
    return f"pool-{pool_id}"


def pool_owner_id(pool_id: str) -> str:
    """The owner part of the pool's subscription workflow id: `subscription/{org}/pool-{pool_id}`."""
    return f"pool-{pool_id}"


def charging_account(line_ocs_account: str | None, pool_ocs_account: str | None) -> str | None:
    """The OCS account a line's usage is rated on: its pool's when it belongs to one, else its own."""
    return pool_ocs_account or line_ocs_account
