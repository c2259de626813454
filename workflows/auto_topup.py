"""Auto top-up scan (`auto-topup-scan`, run by a Temporal Schedule): lines under their rule's threshold get
the same TopUpWorkflow as a manual recharge, started as children that outlive the scan. Each pass first
closes the top-up intents whose workflow never started (see `topups.settle_unstarted`), which would
otherwise stay pending and keep their line out of the next auto top-up."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from domain.contracts import AutoTopUpScan, AutoTopUpStarted, SettledTopUps, SettleUnstartedTopUps
    from domain.enums import TopUpStatus
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import MSISDN_HASH_PATCH, initial_attributes
    from workflows.topup import TopUpWorkflow
    from workflows.topup import workflow_id as topup_workflow_id

SCHEDULE_ID = "auto-topup-scan"
# Scans recorded before unstarted intents were settled replay without that step.
SETTLE_UNSTARTED_PATCH = "settle-unstarted-topups"


@workflow.defn
class AutoTopUpScanWorkflow:
    @workflow.run
    async def run(self, scan: AutoTopUpScan) -> list[str]:
        if workflow.patched(SETTLE_UNSTARTED_PATCH):
            settled = await workflow.execute_activity(
                names.TOPUP_SETTLE_UNSTARTED,
                SettleUnstartedTopUps(),
                result_type=SettledTopUps,
                start_to_close_timeout=policies.BATCH_TIMEOUT,
                heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                retry_policy=policies.EXTERNAL_CALL_RETRY,
            )
            if settled.topup_ids:
                workflow.logger.warning("closed %d top-up(s) never started", len(settled.topup_ids))
        prepared = await workflow.execute_activity(
            names.RULES_PREPARE_AUTO_TOPUPS,
            scan,
            result_type=AutoTopUpStarted,
            start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT * 4,
            retry_policy=policies.EXTERNAL_CALL_RETRY,
        )
        started: list[str] = []
        hashed = workflow.patched(MSISDN_HASH_PATCH)
        for data in prepared.inputs:
            child_id = topup_workflow_id(data.org_id, data.topup_id)
            try:
                await workflow.start_child_workflow(
                    TopUpWorkflow.run,
                    data,
                    id=child_id,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    search_attributes=initial_attributes(
                        org_id=data.org_id,
                        company_id=data.company_id,
                        iccid=data.iccid,
                        msisdn_hash=prepared.msisdn_hashes.get(data.topup_id) if hashed else None,
                        legacy_msisdn=None if hashed else data.msisdn,
                        status=TopUpStatus.PENDING,
                    ),
                    static_summary=f"Recharge automatique {data.quantity} Go — {data.msisdn}",
                )
            except WorkflowAlreadyStartedError:
                pass  # started by an earlier scan attempt
            started.append(child_id)
        workflow.set_current_details(f"{len(started)} recharge(s) automatique(s) sur {prepared.checked} ligne(s)")
        return started
