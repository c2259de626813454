"""The outbox relay (`outbox-relay`): sends every pending row of `notifications`, `security_messages` (mail,
SMTP) and `sim_messages` (SMS gateway), then waits `poll_s` and looks again.

One long-running workflow started by the worker (`starters.schedules.ensure_outbox_relay`), not a Schedule:
mail should leave within seconds (a password reset), and a Schedule firing every few seconds would open a
new workflow execution each time. After `PASSES_PER_RUN` passes it continues as new, so its history stays
short. A pass that meets an outage fails its activity, retried with `OUTBOX_RETRY` (unbounded, capped
backoff): the retries live in Temporal, they survive a worker restart.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.outbox_contracts import OutboxBatch, OutboxBatchResult, OutboxRelay, OutboxRelayResult
    from workflows import _policies as policies
    from workflows import activity_names as names

WORKFLOW_ID = "outbox-relay"
PASSES_PER_RUN = 500


@workflow.defn
class OutboxRelayWorkflow:
    @workflow.run
    async def run(self, relay: OutboxRelay) -> OutboxRelayResult:
        sent, failed = relay.sent, relay.failed
        for _ in range(PASSES_PER_RUN):
            batch = await workflow.execute_activity(
                names.OUTBOX_RELAY_BATCH,
                OutboxBatch(limit=relay.batch_size, lease_s=relay.lease_s),
                result_type=OutboxBatchResult,
                start_to_close_timeout=policies.OUTBOX_PASS_TIMEOUT,
                heartbeat_timeout=policies.OUTBOX_HEARTBEAT_TIMEOUT,
                retry_policy=policies.OUTBOX_RETRY,
            )
            sent += batch.sent
            failed += batch.failed
            if batch.sent or batch.failed:
                workflow.set_current_details(f"{sent} message(s) envoyé(s), {failed} en échec définitif")
            if batch.more:
                continue
            if relay.stop_when_idle:
                return OutboxRelayResult(sent=sent, failed=failed)
            await workflow.sleep(timedelta(seconds=relay.poll_s))
        workflow.continue_as_new(relay.model_copy(update={"sent": sent, "failed": failed}))
