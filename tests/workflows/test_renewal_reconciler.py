"""The renewal reconciler's pass on the time-skipping server, with pages served by fakes: it continues as new
every `pages_per_run` pages from where it stopped, and its result counts every workflow started."""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.subscription_contracts import (
    REPORTED_IDS,
    ReconcileBatch,
    ReconcileBatchResult,
    ReconcileOrphans,
    ReconcileScan,
)
from workflows import activity_names as names
from workflows.renewal_reconciler import RenewalReconcilerWorkflow


class Pages:
    """`lines` renewing lines without a workflow, one pool whose workflow runs, one terminated line."""

    def __init__(self, lines: int) -> None:
        self.lines = [f"line-{n:04d}" for n in range(lines)]
        self.asked: list[tuple[str, str]] = []

    def activities(self) -> list[object]:
        @activity.defn(name=names.SUBSCRIPTION_RECONCILE_BATCH)
        async def reconcile_batch(data: ReconcileBatch) -> ReconcileBatchResult:
            self.asked.append((data.kind, data.after))
            if data.kind == "lines":
                page = [line for line in self.lines if line > data.after][: data.batch_size]
                full = len(page) == data.batch_size
                return ReconcileBatchResult(
                    started=[f"sub/{line}" for line in page], next_after=page[-1] if full else None
                )
            if data.kind == "pools":
                return ReconcileBatchResult(running=1)
            return ReconcileBatchResult(ended=["sub/line-gone"])

        @activity.defn(name=names.SUBSCRIPTION_RECONCILE_ORPHANS)
        async def reconcile_orphans(_data: ReconcileScan) -> ReconcileOrphans:
            return ReconcileOrphans(orphans=["sub/ghost"])

        return [reconcile_batch, reconcile_orphans]


async def _reconcile(env: WorkflowEnvironment, pages: Pages, scan: ReconcileScan) -> object:
    task_queue = f"reconciler-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[RenewalReconcilerWorkflow], activities=pages.activities()
    ):
        return await env.client.execute_workflow(
            RenewalReconcilerWorkflow.run,
            scan.model_copy(update={"task_queue": task_queue}),
            id=f"renewal-reconciler-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )


async def test_the_reconciler_continues_as_new_every_pages_per_run_from_the_next_page(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    pages = Pages(lines=5)
    result = await _reconcile(time_skipping_env, pages, ReconcileScan(batch_size=2, pages_per_run=1))
    # Lines in three pages (two full ones continue as new), then the pools and the terminated lines.
    assert pages.asked == [
        ("lines", ""),
        ("lines", "line-0001"),
        ("lines", "line-0003"),
        ("pools", ""),
        ("ended", ""),
    ]
    assert result.runs == 3
    assert result.started == [f"sub/line-{n:04d}" for n in range(5)] and result.started_count == 5
    assert result.ended == ["sub/line-gone"] and result.ended_count == 1
    assert result.running == 1 and result.orphans == ["sub/ghost"]


async def test_a_large_pass_counts_every_start_and_lists_the_first_ones(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    pages = Pages(lines=REPORTED_IDS + 150)
    result = await _reconcile(time_skipping_env, pages, ReconcileScan(batch_size=50, pages_per_run=2))
    assert result.started_count == REPORTED_IDS + 150
    assert result.started == [f"sub/line-{n:04d}" for n in range(REPORTED_IDS)]
    assert result.runs == 3  # six pages of lines (the last one short), two a run
    assert [after for kind, after in pages.asked if kind == "lines"] == [
        "",
        *(f"line-{n:04d}" for n in range(49, 250, 50)),
    ]
