"""Starting the CFAST customer workflow of a company (customer, billing point, site)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from domain.contracts import CfastCustomerInput
from domain.enums import BusinessStatus
from infra.settings import Settings
from workflows._search import initial_attributes
from workflows.cfast_customer import CfastCustomerWorkflow, workflow_id


async def start_cfast_customer(client: Client, settings: Settings, data: CfastCustomerInput) -> str:
    wf_id = workflow_id(data.org_id, data.company_id)
    await client.start_workflow(
        CfastCustomerWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(
            org_id=data.org_id, company_id=data.company_id, status=BusinessStatus.STARTING
        ),
        static_summary=f"Création du client CFAST « {data.customer_name} »",
    )
    return wf_id
