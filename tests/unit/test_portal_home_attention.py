"""The needs-attention queue names the line of each waiting workflow from its id: a line's subscription
names it, a pool's names its pool (answered from the pool's route)."""

from __future__ import annotations

from api.portal.home import _line_of, _pool_of


def test_the_line_of_each_kind_of_workflow_id() -> None:
    assert _line_of("deprovision/org1/line1") == "line1"
    assert _line_of("line-op/org1/line1/suspend-subscription-period-2") == "line1"
    assert _line_of("subscription/org1/line1") == "line1"
    assert _line_of("subscription/org1/pool-p1") is None
    assert _line_of("topup/org1/abc") is None
    assert _pool_of("subscription/org1/pool-p1") == "p1"
    assert _pool_of("subscription/org1/line1") is None and _pool_of("deprovision/org1/pool-p1") is None
