"""`SubscriptionWorkflow` on the time-skipping test server, with fake activities and child workflows under
their real names (`tests/workflows/subscription_fakes.py`)."""

from __future__ import annotations

import asyncio
import calendar
from datetime import date, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.subscription_contracts import charge_key, period_balance_id
from tests.workflows.subscription_fakes import FakeSubscriptionStore, due_tomorrow, running, today
from workflows._search import BUSINESS_STATUS, ORG_ID
from workflows.subscription import SubscriptionWorkflow, at_midnight


@pytest.mark.parametrize("method", ["card", "wallet", "account"])
async def test_thirteen_months_of_renewals_charge_each_period_once_with_its_grant_and_transaction(
    time_skipping_env: WorkflowEnvironment, method: str
) -> None:
    # Anchored on a 31st: the renewals cross short months and February.
    start = await today(time_skipping_env)
    anchor = date(start.year - 1, 1, 31)
    store = FakeSubscriptionStore(anchor=anchor, payment_method=method, plan_type="prepaid")
    store.period = store.calendar.period_of(start)
    first = store.period
    store.end_after_period = first + 13
    async with running(time_skipping_env, store) as handle:
        result = await handle.result()
        described = await handle.describe()

    assert result.status == "ended" and result.period == first + 13
    periods = range(first + 1, first + 14)
    wf_id = handle.id
    assert sorted(store.charges) == sorted(charge_key(wf_id, n) for n in periods)
    assert all(c.method == method and c.amount_minor == 1500 for c in store.charges.values())
    assert len(store.charge_calls) == 13  # no charge attempted twice
    assert sorted(store.transactions) == sorted(store.charges)
    assert [g.balance_id for g in store.grants.values()] == [period_balance_id("plan-basic", n) for n in periods]
    expiries = [g.expiry.date() for g in store.grants.values() if g.expiry is not None]
    assert expiries == [store.calendar.period_end(n) for n in periods]
    assert all(e.day == min(31, calendar.monthrange(e.year, e.month)[1]) for e in expiries)
    # Reminders 10 and 5 days before each expiry, each exactly once per period, by mail and webhook.
    # (The first period's reminders are those still ahead when the workflow started.)
    reminders = store.notices_of("reminder")
    later = [
        n.reference
        for n in reminders
        if not n.reference.endswith((f"period-{first}:reminder-10", f"period-{first}:reminder-5"))
    ]
    assert sorted(later) == sorted(
        f"{wf_id}:period-{n}:reminder-{d}" for n in range(first + 1, first + 13) for d in (10, 5)
    )
    assert len([r for r in store.notice_calls if ":reminder-" in r]) == len(reminders)
    assert {r.reference for r in reminders} <= set(store.events)
    assert described.typed_search_attributes[ORG_ID] == handle.id.split("/")[1]
    assert described.typed_search_attributes[BUSINESS_STATUS] == "ended"


async def test_month_end_anchor_renews_on_the_last_day_of_february_then_on_the_31st(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    anchor = date(start.year - 1, 1, 31)
    store = FakeSubscriptionStore(anchor=anchor)
    # Paid up to 31 January next year: the next renewals end in February, then on 31 March.
    store.period = 23
    store.end_after_period = store.period + 2
    async with running(time_skipping_env, store) as handle:
        await handle.result()
    year = start.year + 1
    last_february = calendar.monthrange(year, 2)[1]
    assert [g.expiry.date() for g in store.grants.values() if g.expiry] == [
        date(year, 2, last_february),
        date(year, 3, 31),
    ]


async def test_off_lets_the_service_expire_after_both_reminders_without_charging(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=start, auto_renew_mode="off")
    async with running(time_skipping_env, store) as handle:
        result = await handle.result()
    assert (result.status, result.reason) == ("ended", "expired")
    assert store.charge_calls == [] and store.grants == {}
    reminders = store.notices_of("reminder")
    assert len(reminders) == 2 and {n.data["days_left"] for n in reminders} == {5, 10}
    assert len(store.notices_of("expired")) == 1


async def test_prompt_renews_only_by_action_and_a_refused_payment_changes_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=start, auto_renew_mode="prompt", payer_pays=False)
    async with running(time_skipping_env, store) as handle:
        await time_skipping_env.sleep(timedelta(days=2))
        refused = await handle.execute_update(SubscriptionWorkflow.renew_now)
        assert not refused.renewed and "refusée" in refused.reason
        assert store.transactions == {} and store.grants == {}
        store.payer_pays = True
        renewed = await handle.execute_update(SubscriptionWorkflow.renew_now)
        assert renewed.renewed and renewed.period == 1
        # A request recorded for period 1 that arrives once it is paid (a double click) is answered, not paid.
        replayed = await handle.execute_update(SubscriptionWorkflow.renew_now, 1)
        assert (replayed.renewed, replayed.period) == (True, 1)
        await handle.execute_update(SubscriptionWorkflow.set_auto_renew, "off")
        result = await handle.result()
    wf_id = handle.id
    # The refused attempt kept the first key; the paid one is its retry: one transaction for period 1.
    assert list(store.transactions) == [charge_key(wf_id, 1)]
    assert list(store.charges) == [charge_key(wf_id, 1, 1)]
    assert result.status == "ended" and result.period == 1
    assert [g.expiry.date() for g in store.grants.values() if g.expiry] == [store.calendar.period_end(1)]


async def test_the_same_renew_now_sent_twice_joins_the_renewal_in_flight_and_pays_once(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    gate = asyncio.Event()
    store = FakeSubscriptionStore(anchor=start, auto_renew_mode="prompt", charge_gate=gate)
    async with running(time_skipping_env, store) as handle:
        await time_skipping_env.sleep(timedelta(days=1))  # the subscription is open
        first = asyncio.create_task(handle.execute_update(SubscriptionWorkflow.renew_now, args=[1, "click"]))
        for _ in range(600):  # the first click's charge is under way
            if store.charge_calls or first.done():
                break
            await asyncio.sleep(0.05)
        assert store.charge_calls, first.result() if first.done() else "no charge within 30 s"
        second = asyncio.create_task(handle.execute_update(SubscriptionWorkflow.renew_now, args=[1, "click"]))
        with pytest.raises(WorkflowUpdateFailedError) as other_request:
            await handle.execute_update(SubscriptionWorkflow.renew_now, args=[1, "another-click"])
        assert getattr(other_request.value.cause, "type", None) == "subscription.renewal_in_progress"
        gate.set()
        outcomes = await asyncio.gather(first, second)
        await handle.execute_update(SubscriptionWorkflow.set_auto_renew, "off")
        await handle.result()
    assert [(o.renewed, o.period) for o in outcomes] == [(True, 1), (True, 1)]
    assert len(store.charge_calls) == 1 and list(store.transactions) == [charge_key(handle.id, 1)]


async def test_a_failed_renewal_goes_through_every_dunning_stage_to_termination(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=due_tomorrow(start), payer_pays=False)
    async with running(time_skipping_env, store) as handle:
        result = await handle.result()
    wf_id = handle.id
    assert (result.status, result.reason) == ("ended", "terminated_unpaid")
    # Expiry, retries on days 1–3, the second attempt on day 4: five attempts, one key each.
    assert [c.idempotency_key for c in store.charge_calls] == [charge_key(wf_id, 1, k) for k in range(5)]
    stages = [n.data["stage"] for n in store.notices_of("dunning")]
    assert stages == ["retry", "second_attempt", "suspension", "termination"]
    assert [op.operation for op in store.line_operations] == ["suspend"]
    assert len(store.deprovisioned) == 1 and store.deprovisioned[0].line_id == handle.id.rsplit("/", 1)[1]
    assert store.transactions == {} and store.grants == {}


async def test_a_payment_on_day_10_of_dunning_resumes_the_line_and_regrants(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=due_tomorrow(start), payer_pays=False)
    expiry = store.calendar.period_end(0)
    async with running(time_skipping_env, store) as handle:
        day_10 = at_midnight(expiry + timedelta(days=10)) + timedelta(hours=1)
        await time_skipping_env.sleep(day_10 - await time_skipping_env.get_current_time())
        assert await handle.query(SubscriptionWorkflow.business_status) == "suspended"
        store.payer_pays = True
        outcome = await handle.execute_update(SubscriptionWorkflow.renew_now)
        assert outcome.renewed and outcome.period == 1
        assert await handle.query(SubscriptionWorkflow.business_status) == "active"
        await handle.execute_update(SubscriptionWorkflow.cancel)
        result = await handle.result()
    assert [op.operation for op in store.line_operations] == ["suspend", "resume"]
    assert store.deprovisioned == []
    assert list(store.transactions) == [charge_key(handle.id, 1)]
    assert [g.balance_id for g in store.grants.values()] == [period_balance_id("plan-basic", 1)]
    assert len(store.notices_of("recovered")) == 1
    assert result.reason == "expired" and len(store.charges) == 1


async def test_an_organisation_policy_sets_the_stage_days(time_skipping_env: WorkflowEnvironment) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=due_tomorrow(start), payer_pays=False)
    store.dunning = store.dunning.model_copy(
        update={"retry_until_day": 1, "second_attempt_until_day": 2, "suspension_until_day": 3}
    )
    async with running(time_skipping_env, store) as handle:
        await handle.result()
    # Expiry, the retry of day 1, the second attempt of day 2.
    assert len(store.charge_calls) == 3
    assert len(store.deprovisioned) == 1


async def test_a_prorated_plan_change_mid_period_charges_the_difference_for_the_days_left(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=start, payment_method="wallet")
    store.end_after_period = 1
    async with running(time_skipping_env, store) as handle:
        await time_skipping_env.sleep(timedelta(days=10))
        changed_on = (await time_skipping_env.get_current_time()).date()
        assert await handle.execute_update(SubscriptionWorkflow.change_plan, "plan-plus") == "now"
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(SubscriptionWorkflow.change_plan, "plan-unknown")
        await handle.result()
    wf_id = handle.id
    expected = store.calendar.prorated_minor(0, changed_on, 1500, 3000)
    proration = store.charges[f"{wf_id}:period-0:plan-plan-plus:charge"]
    assert proration.amount_minor == expected > 0
    assert [op.operation for op in store.line_operations] == ["change_plan"]
    assert store.line_operations[0].plan_id == "plan-plus"
    renewal = store.charges[charge_key(wf_id, 1)]
    assert renewal.amount_minor == 3000  # the next period at the new plan's price


async def test_a_plan_that_does_not_prorate_applies_from_the_next_renewal(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=start, end_after_period=1)
    async with running(time_skipping_env, store) as handle:
        await time_skipping_env.sleep(timedelta(days=3))
        assert await handle.execute_update(SubscriptionWorkflow.change_plan, "plan-later") == "next_renewal"
        await handle.result()
    assert store.line_operations == []
    assert store.charges[charge_key(handle.id, 1)].amount_minor == 900
    assert [g.balance_id for g in store.grants.values()] == [period_balance_id("plan-later", 1)]
    assert store.plan_id == "plan-later" and store.next_plan_id is None


async def test_cancel_ends_at_the_period_end_without_charging_and_refuses_later_updates(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=start)
    async with running(time_skipping_env, store) as handle:
        await time_skipping_env.sleep(timedelta(days=1))
        await handle.execute_update(SubscriptionWorkflow.cancel)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(SubscriptionWorkflow.renew_now)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(SubscriptionWorkflow.set_auto_renew, "sometimes")
        result = await handle.result()
    assert (result.status, result.reason) == ("ended", "expired")
    assert store.charge_calls == []
    assert store.status == "ended"


async def test_a_terminated_line_ends_its_subscription(time_skipping_env: WorkflowEnvironment) -> None:
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=start)
    async with running(time_skipping_env, store) as handle:
        await time_skipping_env.sleep(timedelta(days=2))
        await handle.signal(SubscriptionWorkflow.line_ended)
        result = await handle.result()
    assert (result.status, result.reason) == ("ended", "line_ended")
    assert store.charge_calls == []


async def test_a_psp_that_times_out_for_half_an_hour_delays_the_renewal_and_charges_once(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """A renewal storm can leave Stripe answering late for a long while: the charge keeps its key and retries
    (backoff capped at 30 s) instead of failing the subscription workflow after ten minutes."""
    start = await today(time_skipping_env)
    store = FakeSubscriptionStore(anchor=due_tomorrow(start), end_after_period=1, charge_unavailable_attempts=70)
    async with running(time_skipping_env, store) as handle:
        result = await handle.result()

    assert result.status == "ended" and result.period == 1
    assert len(store.charge_calls) == 71 and {c.idempotency_key for c in store.charge_calls} == {
        charge_key(handle.id, 1)
    }
    assert list(store.charges) == [charge_key(handle.id, 1)] and list(store.transactions) == [charge_key(handle.id, 1)]
