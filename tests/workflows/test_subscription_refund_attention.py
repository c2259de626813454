"""A renewal charged but not granted whose refund fails for good (patch `renewal-refund-waits-for-staff`), on
the time-skipping test server: the subscription does not go on as if nothing were owed back, it waits in
`needs_attention` (BusinessStatus, `attention_state`, the reason on the subscription) for staff's
`resolve_compensation` Update, as a line workflow whose compensation failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.lifecycle_contracts import AttentionState, ResolveCompensation
from domain.subscription_contracts import charge_key
from tests.workflows.subscription_fakes import FakeSubscriptionStore, Handle, due_tomorrow, running, today
from workflows._search import BUSINESS_STATUS
from workflows.subscription import SubscriptionWorkflow, at_midnight


async def _state_when(handle: Handle, ready: Callable[[AttentionState], bool]) -> AttentionState:
    """The workflow's attention state once `ready` (the Update returns before the workflow acts on it)."""
    for _ in range(200):
        state = await handle.query(SubscriptionWorkflow.attention_state)
        if ready(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {state}")


async def _refund_fails_after_a_failed_grant(env: WorkflowEnvironment, store: FakeSubscriptionStore) -> None:
    """Past the period's end: the automatic renewal charged, its grant and then its refund failed."""
    expiry = store.calendar.period_end(0)
    await env.sleep(at_midnight(expiry) + timedelta(hours=1) - await env.get_current_time())


async def test_a_refund_that_fails_for_good_waits_in_needs_attention_until_a_retry_succeeds(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(await today(time_skipping_env)), grant_fails=True, refund_fails=True
    )
    async with running(time_skipping_env, store) as handle:
        await _refund_fails_after_a_failed_grant(time_skipping_env, store)
        state = await _state_when(handle, lambda s: s.attention is not None)
        assert state.status == "needs_attention" and state.since is not None
        assert state.attention and "refund" in state.attention and "remboursement refusé" in state.attention
        assert await handle.query(SubscriptionWorkflow.business_status) == "needs_attention"
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(BUSINESS_STATUS) == "needs_attention"
        assert store.changes[-1].failure == state.attention  # the reason on the subscription
        with pytest.raises(WorkflowUpdateFailedError):  # nothing else goes on meanwhile
            await handle.execute_update(SubscriptionWorkflow.cancel)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(SubscriptionWorkflow.resolve_compensation, ResolveCompensation(action="guess"))

        # A retry while the provider still refuses: back in needs_attention, the refund tried once more.
        calls = len(store.refund_calls)
        retry = ResolveCompensation(action="retry", requested_by="staff@acola", note="nouvel essai")
        assert await handle.execute_update(SubscriptionWorkflow.resolve_compensation, retry) == "retry"
        await _state_when(handle, lambda s: s.attention is not None and len(store.refund_calls) > calls)
        assert not store.refunds

        store.refund_fails = False
        await handle.execute_update(SubscriptionWorkflow.resolve_compensation, retry)
        state = await _state_when(handle, lambda s: s.attention is None and s.status == "dunning")
        with pytest.raises(WorkflowUpdateFailedError):  # nothing waits any more
            await handle.execute_update(SubscriptionWorkflow.resolve_compensation, retry)
        await handle.signal(SubscriptionWorkflow.line_ended)
        result = await handle.result()

    key = charge_key(handle.id, 1)
    assert list(store.refunds) == [f"{key}:refund"]  # the charge given back, once
    assert list(store.charges) == [key] and not store.transactions and not store.grants
    assert result.reason == "line_ended"


async def test_staff_confirm_a_refund_made_by_hand_and_dunning_goes_on(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(await today(time_skipping_env)), grant_fails=True, refund_fails=True
    )
    async with running(time_skipping_env, store) as handle:
        await _refund_fails_after_a_failed_grant(time_skipping_env, store)
        await _state_when(handle, lambda s: s.attention is not None)
        manual = ResolveCompensation(action="resolved_manually", requested_by="staff@acola", note="virement fait")
        await handle.execute_update(SubscriptionWorkflow.resolve_compensation, manual)
        await _state_when(handle, lambda s: s.attention is None and s.status == "dunning")
        await handle.signal(SubscriptionWorkflow.line_ended)
        await handle.result()

    assert not store.refunds and len(store.refund_calls) == 1
    failures = [c.failure for c in store.changes if c.failure]
    assert any(f.startswith("Remboursement du renouvellement impossible") for f in failures)
    assert "Remboursement fait à la main (staff@acola) : virement fait" in failures
    assert [n.data["stage"] for n in store.notices_of("dunning")] == ["retry"]
