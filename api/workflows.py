"""Starting workflows from the API: ids, search attributes and reuse policies in one place."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from domain.contracts import CfastCustomerInput, TopUpInput, TopUpReceipt
from infra.settings import Settings
from workflows._search import initial_attributes
from workflows.cfast_customer import CfastCustomerWorkflow, workflow_id
from workflows.topup import TopUpWorkflow
from workflows.topup import workflow_id as topup_workflow_id


async def start_cfast_customer(client: Client, settings: Settings, data: CfastCustomerInput) -> str:
    wf_id = workflow_id(data.org_id, data.company_id)
    await client.start_workflow(
        CfastCustomerWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(org_id=data.org_id, company_id=data.company_id, status="starting"),
        static_summary=f"Création du client CFAST « {data.customer_name} »",
    )
    return wf_id


async def submit_topup(
    client: Client, settings: Settings, data: TopUpInput, *, msisdn: str, iccid: str | None
) -> TopUpReceipt:
    """Starts the top-up (or attaches to the running one) and waits for its payment outcome."""
    operation = WithStartWorkflowOperation(
        TopUpWorkflow.run,
        data,
        id=topup_workflow_id(data.org_id, data.topup_id),
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(
            org_id=data.org_id, company_id=data.company_id, iccid=iccid, msisdn=msisdn, status="pending"
        ),
        static_summary=f"Recharge DATA {data.quantity} Go — {msisdn}",
    )
    async with asyncio.timeout(settings.topup_submit_timeout_s):
        return await client.execute_update_with_start_workflow(TopUpWorkflow.submit, start_workflow_operation=operation)
