"""Starting the SIM lifecycle workflows (from the API and the portal): ids, search attributes, reuse
policies and summaries in one place."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from domain.enums import BusinessStatus
from domain.lifecycle_contracts import (
    BulkOperationInput,
    DeprovisioningInput,
    LineOperationInput,
    SimActivationInput,
)
from infra.settings import Settings
from workflows._search import initial_attributes
from workflows.bulk import BulkOperationWorkflow
from workflows.bulk import workflow_id as bulk_workflow_id
from workflows.deprovisioning import DeprovisioningWorkflow
from workflows.deprovisioning import workflow_id as deprovision_workflow_id
from workflows.line_operations import LineOperationWorkflow
from workflows.line_operations import workflow_id as line_operation_workflow_id
from workflows.sim_activation import SimActivationWorkflow
from workflows.sim_activation import workflow_id as activation_workflow_id

OPERATION_LABELS = {"suspend": "Suspension", "resume": "Réactivation", "change_plan": "Changement de forfait"}


async def start_activation(client: Client, settings: Settings, data: SimActivationInput, msisdn: str | None) -> str:
    """A double click joins the running activation; a failed one may be started again."""
    wf_id = activation_workflow_id(data.org_id, data.iccid)
    await client.start_workflow(
        SimActivationWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(
            org_id=data.org_id,
            company_id=data.company_id,
            iccid=data.iccid,
            msisdn_hash=settings.msisdn_hash(msisdn),
            status=BusinessStatus.STARTING,
        ),
        static_summary=f"Activation de la SIM {data.iccid}",
    )
    return wf_id


async def start_deprovisioning(
    client: Client, settings: Settings, data: DeprovisioningInput, *, iccid: str | None, msisdn: str | None
) -> str:
    """One termination per line at a time; after a cancelled one, a new request starts a new run."""
    wf_id = deprovision_workflow_id(data.org_id, data.line_id)
    grace = f" (délai de grâce {data.grace_days} j)" if data.grace_days else ""
    await client.start_workflow(
        DeprovisioningWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(
            org_id=data.org_id,
            company_id=data.company_id,
            iccid=iccid,
            msisdn_hash=settings.msisdn_hash(msisdn),
            status=BusinessStatus.STARTING,
        ),
        static_summary=f"Résiliation de la ligne {msisdn or data.line_id}{grace}",
    )
    return wf_id


async def start_line_operation(
    client: Client, settings: Settings, data: LineOperationInput, *, request_id: str, iccid: str | None, msisdn: str
) -> str:
    """`request_id` (the Idempotency-Key header, or a fresh id) makes a retried request join its run."""
    wf_id = line_operation_workflow_id(data.org_id, data.line_id, data.operation, request_id)
    await client.start_workflow(
        LineOperationWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(
            org_id=data.org_id,
            company_id=data.company_id,
            iccid=iccid,
            msisdn_hash=settings.msisdn_hash(msisdn),
            status=BusinessStatus.STARTING,
        ),
        static_summary=f"{OPERATION_LABELS.get(data.operation, data.operation)} de la ligne {msisdn}",
    )
    return wf_id


async def start_bulk(client: Client, settings: Settings, data: BulkOperationInput, label: str) -> str:
    wf_id = bulk_workflow_id(data.org_id, data.bulk_id)
    await client.start_workflow(
        BulkOperationWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(
            org_id=data.org_id, company_id=data.company_id, status=BusinessStatus.STARTING
        ),
        static_summary=f"Opération en masse « {label} » sur {len(data.items)} SIM",
    )
    return wf_id
