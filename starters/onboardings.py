"""Starting an integrator's onboarding (one per organisation, ever)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from domain.enums import BusinessStatus
from domain.onboarding_contracts import OnboardingInput, onboarding_workflow_id
from infra.settings import Settings
from workflows._search import initial_attributes
from workflows.onboarding import OnboardingWorkflow


async def start_onboarding(client: Client, settings: Settings, data: OnboardingInput) -> str:
    """One onboarding per organisation, ever: a second start joins the running one."""
    wf_id = onboarding_workflow_id(data.org_id)
    await client.start_workflow(
        OnboardingWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(org_id=data.org_id, status=BusinessStatus.IN_PROGRESS),
        static_summary=f"Intégration de l'intégrateur « {data.org_name} »",
    )
    return wf_id
