"""Records the histories of `SubscriptionWorkflow`'s paths, which `tests/replay/test_replay.py` replays.

Its periods last a month: recorded on the time-skipping test server (not the dev server of
`record_histories.py`), with the fakes of `tests/workflows/subscription_fakes.py`. Each history is the first
run of the case (a renewal ends it with a continue-as-new). Same rule as `record_histories.py`: never
regenerate a history only to make a failing replay pass.

    .venv/bin/python -m tests.replay.record_subscription_histories              # every case
    .venv/bin/python -m tests.replay.record_subscription_histories renewal_card # only the cases named
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.lifecycle_contracts import ResolveCompensation
from infra.processes import venv_bin
from tests.workflows.subscription_fakes import FakeSubscriptionStore, Handle, due_tomorrow, running, today
from workflows._search import ALL_KEYS
from workflows.subscription import SubscriptionWorkflow, at_midnight

HISTORIES = Path(__file__).resolve().parent / "histories"
Scenario = Callable[[WorkflowEnvironment, str], Awaitable[Handle]]


async def _renewal(env: WorkflowEnvironment, case: str, method: str) -> Handle:
    start = await today(env)
    store = FakeSubscriptionStore(anchor=due_tomorrow(start), payment_method=method, end_after_period=1)
    async with running(env, store, case) as handle:
        await handle.result()
    return handle


async def _expires(env: WorkflowEnvironment, case: str) -> Handle:
    store = FakeSubscriptionStore(anchor=await today(env), auto_renew_mode="off")
    async with running(env, store, case) as handle:
        await handle.result()
    return handle


async def _prompt(env: WorkflowEnvironment, case: str) -> Handle:
    store = FakeSubscriptionStore(anchor=await today(env), auto_renew_mode="prompt", payer_pays=False)
    async with running(env, store, case) as handle:
        await env.sleep(timedelta(days=2))
        await handle.execute_update(SubscriptionWorkflow.renew_now)
        store.payer_pays = True
        await handle.execute_update(SubscriptionWorkflow.renew_now)
        await handle.execute_update(SubscriptionWorkflow.set_auto_renew, "off")
        await handle.result()
    return handle


async def _dunning(env: WorkflowEnvironment, case: str, recover_on_day: int | None) -> Handle:
    store = FakeSubscriptionStore(anchor=due_tomorrow(await today(env)), payer_pays=False)
    async with running(env, store, case) as handle:
        if recover_on_day is not None:
            expiry: date = store.calendar.period_end(0)
            when = at_midnight(expiry + timedelta(days=recover_on_day)) + timedelta(hours=1)
            await env.sleep(when - await env.get_current_time())
            store.payer_pays = True
            await handle.execute_update(SubscriptionWorkflow.renew_now)
            await handle.execute_update(SubscriptionWorkflow.cancel)
        await handle.result()
    return handle


async def _change_plan(env: WorkflowEnvironment, case: str, plan_id: str) -> Handle:
    store = FakeSubscriptionStore(anchor=await today(env), end_after_period=1)
    async with running(env, store, case) as handle:
        await env.sleep(timedelta(days=10))
        await handle.execute_update(SubscriptionWorkflow.change_plan, plan_id)
        await handle.result()
    return handle


async def _cancel(env: WorkflowEnvironment, case: str) -> Handle:
    store = FakeSubscriptionStore(anchor=await today(env))
    async with running(env, store, case) as handle:
        await env.sleep(timedelta(days=1))
        await handle.execute_update(SubscriptionWorkflow.cancel)
        await handle.result()
    return handle


async def _line_ended(env: WorkflowEnvironment, case: str) -> Handle:
    store = FakeSubscriptionStore(anchor=await today(env))
    async with running(env, store, case) as handle:
        await env.sleep(timedelta(days=2))
        await handle.signal(SubscriptionWorkflow.line_ended)
        await handle.result()
    return handle


async def _pool(env: WorkflowEnvironment, case: str, kind: str, payer_pays: bool = True) -> Handle:
    store = FakeSubscriptionStore(
        anchor=due_tomorrow(await today(env)),
        pool_id=f"pool-{kind}",
        pool_kind=kind,
        members=["line-a", "line-b"],
        end_after_period=1,
        payer_pays=payer_pays,
    )
    async with running(env, store, case) as handle:
        await handle.result()
    return handle


async def _unpaid_pool(env: WorkflowEnvironment, case: str) -> FakeSubscriptionStore:
    """A pool of two members, due tomorrow, whose payer refuses."""
    return FakeSubscriptionStore(
        anchor=due_tomorrow(await today(env)),
        pool_id=f"pool-{case.replace('_', '-')}",
        members=["line-a", "line-b"],
        payer_pays=False,
    )


async def _pool_members_dunning(env: WorkflowEnvironment, case: str, recover_on_day: int | None) -> Handle:
    """A pool's dunning reaching its member lines: suspended on day 8, then resumed by a payment or
    terminated."""
    store = await _unpaid_pool(env, case)
    async with running(env, store, case) as handle:
        if recover_on_day is not None:
            expiry: date = store.calendar.period_end(0)
            when = at_midnight(expiry + timedelta(days=recover_on_day)) + timedelta(hours=1)
            await env.sleep(when - await env.get_current_time())
            store.payer_pays = True
            await handle.execute_update(SubscriptionWorkflow.renew_now)
            await handle.execute_update(SubscriptionWorkflow.cancel)
        await handle.result()
    return handle


async def _pool_member_resume_refused(env: WorkflowEnvironment, case: str) -> Handle:
    """A payment on day 10 whose resumption of one member is refused: refunded, the other member suspended
    again; a second payment resumes both."""
    store = await _unpaid_pool(env, case)
    async with running(env, store, case) as handle:
        expiry: date = store.calendar.period_end(0)
        await env.sleep(at_midnight(expiry + timedelta(days=10)) + timedelta(hours=1) - await env.get_current_time())
        store.payer_pays, store.failing_operations = True, {("line-b", "resume")}
        await handle.execute_update(SubscriptionWorkflow.renew_now, args=[0, "pay-1"])
        store.failing_operations = set()
        await handle.execute_update(SubscriptionWorkflow.renew_now, args=[0, "pay-2"])
        await handle.execute_update(SubscriptionWorkflow.cancel)
        await handle.result()
    return handle


async def _refund_needs_attention(env: WorkflowEnvironment, case: str) -> Handle:
    """The renewal's grant fails, then its refund: needs_attention; a staff retry refunds it, dunning begins,
    the line ends."""
    store = FakeSubscriptionStore(anchor=due_tomorrow(await today(env)), grant_fails=True, refund_fails=True)
    async with running(env, store, case) as handle:
        expiry: date = store.calendar.period_end(0)
        await env.sleep(at_midnight(expiry) + timedelta(hours=1) - await env.get_current_time())
        while (await handle.query(SubscriptionWorkflow.attention_state)).attention is None:
            await asyncio.sleep(0.05)
        store.refund_fails = False
        answer = ResolveCompensation(action="retry", requested_by="staff", note="nouvel essai")
        await handle.execute_update(SubscriptionWorkflow.resolve_compensation, answer)
        while await handle.query(SubscriptionWorkflow.business_status) != "dunning":
            await asyncio.sleep(0.05)
        await handle.signal(SubscriptionWorkflow.line_ended)
        await handle.result()
    return handle


CASES: dict[str, Scenario] = {
    "renewal_card": lambda env, case: _renewal(env, case, "card"),
    "renewal_wallet": lambda env, case: _renewal(env, case, "wallet"),
    "renewal_account": lambda env, case: _renewal(env, case, "account"),
    "off_expires_after_reminders": _expires,
    "prompt_renew_now_refused_then_paid": _prompt,
    "dunning_to_termination": lambda env, case: _dunning(env, case, None),
    "dunning_recovered_on_day_10": lambda env, case: _dunning(env, case, 10),
    "change_plan_prorated": lambda env, case: _change_plan(env, case, "plan-plus"),
    "change_plan_next_renewal": lambda env, case: _change_plan(env, case, "plan-later"),
    "cancel": _cancel,
    "line_ended": _line_ended,
    "pool_static_renewal": lambda env, case: _pool(env, case, "static"),
    "pool_dynamic_renewal": lambda env, case: _pool(env, case, "dynamic"),
    "pool_dunning_to_end": lambda env, case: _pool(env, case, "dynamic", payer_pays=False),
    "renewal_refund_needs_attention_retried": _refund_needs_attention,
    "pool_dunning_members_terminated": lambda env, case: _pool_members_dunning(env, case, None),
    "pool_dunning_members_recovered_on_day_10": lambda env, case: _pool_members_dunning(env, case, 10),
    "pool_member_resume_refused_then_paid": _pool_member_resume_refused,
}


async def record(only: Sequence[str] = ()) -> list[Path]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=venv_bin("temporal-test-server"),
        test_server_startup_timeout=timedelta(seconds=60),
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in ALL_KEYS},
        )
    )
    written: list[Path] = []
    try:
        for case, scenario in CASES.items():
            if only and case not in only:
                continue
            handle = await scenario(env, case)
            first_run = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
            history = await first_run.fetch_history()
            path = HISTORIES / f"SubscriptionWorkflow__{case}.json"
            path.write_text(json.dumps(json.loads(history.to_json()), indent=2, ensure_ascii=False) + "\n")
            written.append(path)
    finally:
        await env.shutdown()
    return written


def main() -> None:
    for path in asyncio.run(record(sys.argv[1:])):
        print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
