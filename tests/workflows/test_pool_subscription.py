"""A pool's subscription (`subscription/{org}/pool-{pool}`) on the time-skipping test server: the pool renews
as a whole, static at its plan's price and data, dynamic per member active at renewal time; its dunning
suspends, resumes and terminates its member lines."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from domain.pools import pool_ocs_account
from domain.renewal_calendar import add_months
from domain.subscription_contracts import charge_key, period_balance_id
from tests.workflows.subscription_fakes import FakeSubscriptionStore, due_tomorrow, running, today
from workflows.subscription import SubscriptionWorkflow, at_midnight

GB = 1 << 30
PRICE, DATA = 1500, 5 * GB  # the fakes' `plan-basic`


async def _renew_three_periods(env: WorkflowEnvironment, store: FakeSubscriptionStore) -> str:
    """Three renewals; a third member joins in the middle of the first renewed period."""
    store.period, store.end_after_period = 0, 3
    async with running(env, store) as handle:
        await env.sleep(timedelta(days=10))  # period 1 renewed (due on day 1), in its middle now
        assert len(store.charges) == 1
        store.members.append("line-c")
        result = await handle.result()
    assert result.status == "ended" and result.period == 3
    return handle.id


async def test_a_static_pool_renews_at_its_fixed_price_and_data_whatever_its_members(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=due_tomorrow(start), pool_id="pool-s1", members=["line-a", "line-b"])
    wf_id = await _renew_three_periods(time_skipping_env, store)

    assert wf_id.endswith("/pool-pool-s1")
    assert sorted(store.charges) == [charge_key(wf_id, n) for n in (1, 2, 3)]
    assert [store.charges[charge_key(wf_id, n)].amount_minor for n in (1, 2, 3)] == [PRICE] * 3
    assert len(store.charge_calls) == 3  # each period charged once
    grants = list(store.grants.values())
    assert [(g.account, g.balance_id, g.value_bytes) for g in grants] == [
        (pool_ocs_account("pool-s1"), period_balance_id("plan-basic", n), DATA) for n in (1, 2, 3)
    ]
    assert [q.members for q in store.pool_quotes] == [2, 3, 3]
    assert sorted(store.transactions) == sorted(store.charges)
    assert not store.line_operations and not store.deprovisioned


async def test_a_dynamic_pool_charges_and_grants_per_member_counting_a_new_member_at_the_next_renewal(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(start), pool_id="pool-d1", pool_kind="dynamic", members=["line-a", "line-b"]
    )
    wf_id = await _renew_three_periods(time_skipping_env, store)

    amounts = [store.charges[charge_key(wf_id, n)].amount_minor for n in (1, 2, 3)]
    assert amounts == [2 * PRICE, 3 * PRICE, 3 * PRICE]
    assert [g.value_bytes for g in store.grants.values()] == [2 * DATA, 3 * DATA, 3 * DATA]
    assert {g.account for g in store.grants.values()} == {pool_ocs_account("pool-d1")}
    assert [t.amount_minor for t in store.transactions.values()] == amounts
    assert "3 SIM" in store.transactions[charge_key(wf_id, 2)].description
    assert len(store.charge_calls) == 3


async def test_an_unpaid_pool_suspends_then_terminates_each_member_line(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(start),
        pool_id="pool-u1",
        pool_kind="dynamic",
        members=["line-a", "line-b", "line-gone"],
        member_statuses={"line-gone": "terminated"},
        payer_pays=False,
    )
    expiry = store.calendar.period_end(0)
    async with running(time_skipping_env, store) as handle:
        day_9 = at_midnight(expiry + timedelta(days=9)) + timedelta(hours=1)
        await time_skipping_env.sleep(day_9 - await time_skipping_env.get_current_time())
        assert await handle.query(SubscriptionWorkflow.business_status) == "suspended"
        assert store.member_statuses == {"line-a": "suspended", "line-b": "suspended", "line-gone": "terminated"}
        result = await handle.result()

    assert result.status == "ended" and result.reason == "terminated_unpaid" and result.period == 0
    stages = [n.data["stage"] for n in store.notices_of("dunning")]
    assert stages == ["retry", "second_attempt", "suspension", "termination"]
    assert not store.charges and not store.grants and not store.transactions
    assert sorted((op.line_id, op.operation) for op in store.line_operations) == [
        ("line-a", "suspend"),
        ("line-b", "suspend"),
    ]
    # Each member through the deprovisioning workflow, as an unpaid line; the terminated one left alone.
    assert sorted(d.line_id for d in store.deprovisioned) == ["line-a", "line-b"]
    assert {d.request_id for d in store.deprovisioned} == {"subscription-pool-pool-u1-period-1"}
    assert all(d.requested_by == handle.id for d in store.deprovisioned)
    assert store.member_statuses == {"line-a": "terminated", "line-b": "terminated", "line-gone": "terminated"}


async def test_a_payment_on_day_10_resumes_each_suspended_member_and_regrants_the_pool(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(start),
        pool_id="pool-r1",
        pool_kind="static",
        members=["line-a", "line-b", "line-c"],
        member_statuses={"line-c": "suspended"},  # suspended by staff before: not the pool's to resume
        payer_pays=False,
    )
    expiry = store.calendar.period_end(0)
    async with running(time_skipping_env, store) as handle:
        day_10 = at_midnight(expiry + timedelta(days=10)) + timedelta(hours=1)
        await time_skipping_env.sleep(day_10 - await time_skipping_env.get_current_time())
        assert await handle.query(SubscriptionWorkflow.business_status) == "suspended"
        assert store.member_statuses == {"line-a": "suspended", "line-b": "suspended", "line-c": "suspended"}
        store.payer_pays = True
        outcome = await handle.execute_update(SubscriptionWorkflow.renew_now)
        assert outcome.renewed and outcome.period == 1
        assert await handle.query(SubscriptionWorkflow.business_status) == "active"
        await handle.execute_update(SubscriptionWorkflow.cancel)
        result = await handle.result()

    operations = sorted((op.line_id, op.operation) for op in store.line_operations)
    assert operations == [("line-a", "resume"), ("line-a", "suspend"), ("line-b", "resume"), ("line-b", "suspend")]
    assert store.member_statuses == {"line-a": "active", "line-b": "active", "line-c": "suspended"}
    assert store.deprovisioned == []
    assert list(store.transactions) == [charge_key(handle.id, 1)]
    grants = list(store.grants.values())
    assert [(g.account, g.balance_id, g.value_bytes) for g in grants] == [
        (pool_ocs_account("pool-r1"), period_balance_id("plan-basic", 1), DATA)
    ]
    assert len(store.notices_of("recovered")) == 1
    assert result.reason == "expired" and len(store.charges) == 1


async def test_a_restarted_pool_in_suspension_resumes_only_the_members_its_dunning_suspended(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """A run started again during the suspension stage (the reconciler, after a termination) does not know
    what its predecessor suspended: it resumes the members whose latest line change is the pool's suspension
    of this period, never a line staff suspended."""
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(
        anchor=add_months(start - timedelta(days=9), -1),  # the period ended 9 days ago: suspension stage
        pool_id="pool-s1",
        pool_kind="static",
        members=["line-a", "line-b", "line-c", "line-d"],
        member_statuses={"line-a": "suspended", "line-b": "suspended", "line-c": "suspended"},
        member_changes={
            "line-a": "line-op/org/line-a/suspend-subscription-pool-pool-s1-period-1",
            "line-b": "line-op/org/line-b/suspend-portal-4f2a",  # staff's
            # line-c: suspended by the pool's dunning, then resumed and suspended again by staff
            "line-c": "line-op/org/line-c/suspend-portal-9c1d",
        },
        status="suspended",
        dunning_stage="suspension",
        payer_pays=True,
    )
    async with running(time_skipping_env, store) as handle:
        # The run catches up with the retry days it missed: the first one pays.
        await time_skipping_env.sleep(timedelta(hours=1))
        assert await handle.query(SubscriptionWorkflow.business_status) == "active"
        await handle.execute_update(SubscriptionWorkflow.cancel)
        await handle.result()
    assert list(store.transactions) == [charge_key(handle.id, 1)]

    assert [(op.line_id, op.operation) for op in store.line_operations] == [("line-a", "resume")]
    assert store.member_statuses == {
        "line-a": "active",
        "line-b": "suspended",
        "line-c": "suspended",
    }


async def test_a_member_that_cannot_be_resumed_refunds_the_payment_and_the_others_are_suspended_again(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Service follows payment: a renewal refunded because one member stayed suspended leaves none of them in
    service; the next payment resumes them all."""
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(start),
        pool_id="pool-p1",
        pool_kind="static",
        members=["line-a", "line-b"],
        payer_pays=False,
    )
    expiry = store.calendar.period_end(0)
    async with running(time_skipping_env, store) as handle:
        day_10 = at_midnight(expiry + timedelta(days=10)) + timedelta(hours=1)
        await time_skipping_env.sleep(day_10 - await time_skipping_env.get_current_time())
        assert store.member_statuses == {"line-a": "suspended", "line-b": "suspended"}
        store.payer_pays = True
        store.failing_operations = {("line-b", "resume")}
        refused = await handle.execute_update(SubscriptionWorkflow.renew_now, args=[0, "pay-1"])
        assert not refused.renewed
        assert store.member_statuses == {"line-a": "suspended", "line-b": "suspended"}
        assert len(store.refunds) == 1 and not store.grants

        store.failing_operations = set()
        paid = await handle.execute_update(SubscriptionWorkflow.renew_now, args=[0, "pay-2"])
        assert paid.renewed and paid.period == 1
        assert store.member_statuses == {"line-a": "active", "line-b": "active"}
        await handle.execute_update(SubscriptionWorkflow.cancel)
        await handle.result()

    operations = [(op.line_id, op.operation) for op in store.line_operations]
    assert sorted(operations[:2]) == [("line-a", "suspend"), ("line-b", "suspend")]
    assert sorted(operations[2:4]) == [("line-a", "resume"), ("line-b", "resume")]  # line-b's refused
    assert operations[4] == ("line-a", "suspend")  # in service without payment: suspended again
    assert sorted(operations[5:]) == [("line-a", "resume"), ("line-b", "resume")]
    assert len(store.charges) == 2 and list(store.transactions) == [charge_key(handle.id, 1)]
