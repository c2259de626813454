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
        ReconcileBatch,
        ReconcileBatchResult,
        ReconcileOrphans,
        ReconcileResult,
        ReconcileScan,
    )
    from workflows import _policies as policies
    from workflows import activity_names as names

SCHEDULE_ID = "renewal-reconciler"
BATCHES_PATCH = "reconciler-batches"
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
        started: list[str] = []
        ended: list[str] = []
        running = 0
        for kind in KINDS:
            after = ""
            while True:
                batch = await workflow.execute_activity(
                    names.SUBSCRIPTION_RECONCILE_BATCH,
                    ReconcileBatch(task_queue=data.task_queue, batch_size=data.batch_size, kind=kind, after=after),
                    result_type=ReconcileBatchResult,
                    start_to_close_timeout=policies.BATCH_TIMEOUT,
                    heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                    retry_policy=policies.DATABASE_RETRY,
                )
                started.extend(batch.started)
                ended.extend(batch.ended)
                running += batch.running
                if batch.next_after is None:
                    break
                after = batch.next_after
        orphans = await workflow.execute_activity(
            names.SUBSCRIPTION_RECONCILE_ORPHANS,
            data,
            result_type=ReconcileOrphans,
            start_to_close_timeout=policies.BATCH_TIMEOUT,
            heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )
        return ReconcileResult(started=started, running=running, ended=ended, orphans=orphans.orphans)
