"""The grace period and the number quarantine, which last days: on Temporal's time-skipping test server,
with the real activities against the database and the simulators (SNAIC callbacks cannot reach this
server, so the workflows fall back to polling the orders)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from domain.enums import LineStatus, PhoneNumberStatus
from domain.lifecycle_contracts import DeprovisioningInput, SimActivationInput
from domain.models import Line, PhoneNumber, UpdateRecord, new_id
from infra.settings import Settings
from tests.e2e.lifecycle_support import (
    cfast_service,
    db_all,
    db_one,
    keep_history,
    make_tenant,
    ocs_account,
    snaic_lines,
)
from tests.workflows.conftest import time_skipping_env  # noqa: F401 - the session fixture, shared
from worker import build_worker
from workflows._search import initial_attributes
from workflows.deprovisioning import (
    DeprovisioningWorkflow,
    LineQuarantineWorkflow,
    quarantine_workflow_id,
)
from workflows.deprovisioning import workflow_id as deprovision_id
from workflows.sim_activation import SimActivationWorkflow
from workflows.sim_activation import workflow_id as activation_id


@pytest_asyncio.fixture
async def skipping_worker(
    time_skipping_env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    worker: None,
) -> AsyncIterator[Client]:
    """Our worker (real activities) on the time-skipping server; the dev-server worker serves the API."""
    client = time_skipping_env.client
    async with build_worker(settings, client) as skipping:
        task = asyncio.create_task(skipping.run())
        yield client
        await skipping.shutdown()
        await task


async def test_grace_period_expires_then_quarantine_removes_the_ocs_account(
    skipping_worker: Client,
    time_skipping_env: WorkflowEnvironment,  # noqa: F811
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    client = skipping_worker
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    iccid = tenant.iccids[0]
    line_id = new_id()
    activation = await client.execute_workflow(
        SimActivationWorkflow.run,
        SimActivationInput(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            line_id=line_id,
            iccid=iccid,
            plan_id=tenant.plan_id,
            snaic_poll_s=5,
        ),
        id=activation_id(tenant.org_id, iccid),
        task_queue=settings.task_queue,
        search_attributes=initial_attributes(org_id=tenant.org_id, iccid=iccid, status="starting"),
    )
    assert activation.status == "ready_for_activation"

    started = await time_skipping_env.get_current_time()
    handle = await client.start_workflow(
        DeprovisioningWorkflow.run,
        DeprovisioningInput(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            line_id=line_id,
            grace_days=7,
            quarantine_days=90,
            snaic_poll_s=5,
            request_id="grace",
        ),
        id=deprovision_id(tenant.org_id, line_id),
        task_queue=settings.task_queue,
        search_attributes=initial_attributes(org_id=tenant.org_id, status="starting"),
    )
    result = await handle.result()  # seven days pass in a moment
    assert result.status == "terminated"
    assert result.terminated_at is not None and result.terminated_at - started >= timedelta(days=7)
    (snaic,) = snaic_lines(snaic_url, iccid)
    assert snaic["status"] == "terminated"
    service = cfast_service(cfast_url, activation.msisdn)
    assert service is not None and service["status"] == "terminated"
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    assert line.status is LineStatus.TERMINATED
    number = await db_one(settings, select(PhoneNumber).where(PhoneNumber.msisdn == activation.msisdn))
    assert number.status is PhoneNumberStatus.QUARANTINED
    # The account was disabled at termination (late CDRs still rate) and is removed after the quarantine
    # (with time skipping, the quarantine may already be over here).
    records = await db_all(settings, select(UpdateRecord).where(UpdateRecord.line_id == line_id))
    assert "ocs_disable_account" in [r.operation for r in records]

    quarantine = client.get_workflow_handle_for(
        LineQuarantineWorkflow.run, quarantine_workflow_id(tenant.org_id, line_id)
    )
    async with time_skipping_env.time_skipping_unlocked():  # type: ignore[attr-defined]
        assert await quarantine.result() == "released"  # ninety days later, skipped while we wait
    assert (await quarantine.describe()).status is WorkflowExecutionStatus.COMPLETED
    assert ocs_account(ocs_url, line_id) is None
    await keep_history(quarantine, "LineQuarantineWorkflow", "released_after_quarantine")
