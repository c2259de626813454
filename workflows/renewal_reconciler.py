"""`renewal-reconciler`, started each day by its Schedule: every renewing line gets its subscription workflow,
every subscription whose line is terminated ends, and running subscription workflows whose line is gone are
reported (orphans)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.subscription_contracts import ReconcileResult, ReconcileScan
    from workflows import _policies as policies
    from workflows import activity_names as names

SCHEDULE_ID = "renewal-reconciler"


@workflow.defn
class RenewalReconcilerWorkflow:
    @workflow.run
    async def run(self, data: ReconcileScan) -> ReconcileResult:
        result: ReconcileResult = await workflow.execute_activity(
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
