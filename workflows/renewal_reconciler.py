"""`renewal-reconciler`, started each day by its Schedule: every renewing line gets its subscription workflow,
every subscription whose line is terminated ends, and running subscription workflows whose line is gone are
reported (orphans).

With patch `reconciler-batches` the pass is paged: renewing lines, then pools, then subscriptions of
terminated lines, `batch_size` rows at a time by keyset on their id, one activity per page (whose running
workflows are found with one visibility query, not a describe per line); then the orphans. Runs started
before it made the whole pass in one activity (still registered)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.subscription_contracts import (
        REPORTED_IDS,
        ReconcileBatch,
        ReconcileBatchResult,
        ReconcileOrphans,
        ReconcileProgress,
        ReconcileResult,
        ReconcileScan,
    )
    from workflows import _policies as policies
    from workflows import activity_names as names

SCHEDULE_ID = "renewal-reconciler"
BATCHES_PATCH = "reconciler-batches"
CONTINUES_PATCH = "reconciler-continues-as-new"
KINDS = ("lines", "pools", "ended")


@workflow.defn
class RenewalReconcilerWorkflow:
    @workflow.run
    async def run(self, data: ReconcileScan) -> ReconcileResult:
        if workflow.patched(BATCHES_PATCH):
            result = await self._in_batches(data)
        else:
            result = await workflow.execute_activity(
                names.SUBSCRIPTION_RECONCILE,
                data,
                result_type=ReconcileResult,
                start_to_close_timeout=policies.BATCH_TIMEOUT,
                heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                retry_policy=policies.DATABASE_RETRY,
            )
        if result.orphans:
            workflow.logger.warning("subscription workflows without a line: %s", ", ".join(result.orphans))
        return result

    async def _in_batches(self, data: ReconcileScan) -> ReconcileResult:
        continues = workflow.patched(CONTINUES_PATCH)
        progress = data.progress or ReconcileProgress()
        pages = 0
        for kind in KINDS[KINDS.index(progress.kind) :]:
            after = progress.after if kind == progress.kind else ""
            while True:
                batch = await workflow.execute_activity(
                    names.SUBSCRIPTION_RECONCILE_BATCH,
                    ReconcileBatch(task_queue=data.task_queue, batch_size=data.batch_size, kind=kind, after=after),
                    result_type=ReconcileBatchResult,
                    start_to_close_timeout=policies.BATCH_TIMEOUT,
                    heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                    retry_policy=policies.DATABASE_RETRY,
                )
                progress = _added(progress, batch, bounded=continues)
                pages += 1
                if batch.next_after is None:
                    break
                after = batch.next_after
                if continues and (pages >= data.pages_per_run or workflow.info().is_continue_as_new_suggested()):
                    following = progress.model_copy(update={"kind": kind, "after": after, "runs": progress.runs + 1})
                    workflow.continue_as_new(data.model_copy(update={"progress": following}))
        orphans = await workflow.execute_activity(
            names.SUBSCRIPTION_RECONCILE_ORPHANS,
            data,
            result_type=ReconcileOrphans,
            start_to_close_timeout=policies.BATCH_TIMEOUT,
            heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )
        return ReconcileResult(
            started=progress.started,
            running=progress.running,
            ended=progress.ended,
            orphans=orphans.orphans,
            started_count=progress.started_count,
            ended_count=progress.ended_count,
            runs=progress.runs,
        )


def _added(progress: ReconcileProgress, batch: ReconcileBatchResult, *, bounded: bool) -> ReconcileProgress:
    """The totals with one more page; with `bounded` the id lists keep their first `REPORTED_IDS`."""
    started, ended = progress.started + batch.started, progress.ended + batch.ended
    if bounded:
        started, ended = started[:REPORTED_IDS], ended[:REPORTED_IDS]
    return progress.model_copy(
        update={
            "started": started,
            "started_count": progress.started_count + len(batch.started),
            "ended": ended,
            "ended_count": progress.ended_count + len(batch.ended),
            "running": progress.running + batch.running,
        }
    )
