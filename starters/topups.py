"""Starting the payment workflows (a top-up, a wallet funding): ids, search attributes, reuse policies and
summaries in one place."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.contracts import TopUpInput, TopUpReceipt
from domain.enums import FundingStatus, TopUpStatus
from domain.wallet_contracts import WalletFundingInput, funding_workflow_id
from infra.settings import Settings
from workflows._search import initial_attributes
from workflows.topup import TopUpWorkflow
from workflows.topup import workflow_id as topup_workflow_id
from workflows.wallet_funding import WalletFundingWorkflow


async def start_topup(
    client: Client, settings: Settings, data: TopUpInput, *, msisdn: str, iccid: str | None
) -> TopUpReceipt:
    """Starts the top-up (or attaches to the running one) and waits for its payment outcome.

    Raises TimeoutError when the outcome is not known within `topup_submit_timeout_s` (a saturated
    worker); the top-up is then sure to be running, and the caller reads its outcome later."""
    wf_id = topup_workflow_id(data.org_id, data.topup_id)
    attributes = initial_attributes(
        org_id=data.org_id,
        company_id=data.company_id,
        iccid=iccid,
        msisdn_hash=settings.msisdn_hash(msisdn),
        status=TopUpStatus.PENDING,
    )
    summary = f"Recharge DATA {data.quantity} Go — {msisdn}"
    operation = WithStartWorkflowOperation(
        TopUpWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=attributes,
        static_summary=summary,
    )
    try:
        async with asyncio.timeout(settings.topup_submit_timeout_s):
            return await client.execute_update_with_start_workflow(
                TopUpWorkflow.submit, start_workflow_operation=operation
            )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as waited_too_long:
        # The wait was cut short, possibly before the start reached the server: start it now (same id
        # and policies, so at most one top-up runs), then let the caller poll.
        try:
            await client.start_workflow(
                TopUpWorkflow.run,
                data,
                id=wf_id,
                task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=attributes,
                static_summary=summary,
            )
        except WorkflowAlreadyStartedError:
            pass  # already finished
        raise TimeoutError("payment outcome not known yet") from waited_too_long


async def start_wallet_funding(client: Client, settings: Settings, data: WalletFundingInput) -> str:
    """Starts the funding once: the same id again (a repeated request) attaches to it, or finds it finished."""
    wf_id = funding_workflow_id(data.org_id, data.funding_id)
    try:
        await client.start_workflow(
            WalletFundingWorkflow.run,
            data,
            id=wf_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=initial_attributes(
                org_id=data.org_id, company_id=data.company_id, status=FundingStatus.PENDING
            ),
            static_summary=f"Approvisionnement du portefeuille {data.wallet_id} : {data.amount_minor / 100:.2f} €",
        )
    except WorkflowAlreadyStartedError:
        pass  # already finished: its outcome is in our records
    return wf_id
