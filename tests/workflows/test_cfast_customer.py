"""`CfastCustomerWorkflow` on the time-skipping test server, with fake activities under the real names."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.contracts import CfastCustomerResult, EnsureCfastBillingPoint, EnsureCfastSite
from domain.enums import ExternalSystem, MajStatus
from domain.errors import ErrorCode, code_of
from tests.workflows.fakes import IDS, REJECTION, STEPS, FakeCfast, FakeRecords, customer_input
from workflows import _policies as policies
from workflows._search import BUSINESS_STATUS, ORG_ID, initial_attributes
from workflows.cfast_customer import CfastCustomerWorkflow, workflow_id


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, cfast: FakeCfast, records: FakeRecords
) -> AsyncIterator[tuple[Client, str]]:
    task_queue = f"cfast-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[CfastCustomerWorkflow],
        activities=[*cfast.activities(), *records.activities()],
    ):
        yield env.client, task_queue


async def start(client: Client, task_queue: str) -> WorkflowHandle[CfastCustomerWorkflow, CfastCustomerResult]:
    data = customer_input(org_id=f"org-{uuid.uuid4().hex[:6]}", company_id=uuid.uuid4().hex)
    return await client.start_workflow(
        CfastCustomerWorkflow.run,
        data,
        id=workflow_id(data.org_id, data.company_id),
        task_queue=task_queue,
        search_attributes=initial_attributes(org_id=data.org_id, company_id=data.company_id, status="starting"),
    )


async def test_happy_path_saves_ids_with_three_ok_records(time_skipping_env: WorkflowEnvironment) -> None:
    cfast, records = FakeCfast(), FakeRecords()
    async with running(time_skipping_env, cfast, records) as (client, task_queue):
        handle = await start(client, task_queue)
        result = await handle.result()
        status = await handle.query(CfastCustomerWorkflow.business_status)
        described = await handle.describe()

    assert result == CfastCustomerResult(
        customer_id=IDS["create_customer"], billing_point_id=IDS["create_billing_point"], site_id=IDS["create_site"]
    )
    wf_id = handle.id
    assert [c.step for c in cfast.calls] == list(STEPS)
    assert [c.data.idempotency_key for c in cfast.calls] == [f"{wf_id}:{step}" for step in STEPS]
    billing_point, site = cfast.calls[1].data, cfast.calls[2].data
    assert isinstance(billing_point, EnsureCfastBillingPoint) and billing_point.customer_id == IDS["create_customer"]
    assert isinstance(site, EnsureCfastSite) and site.billing_point_id == IDS["create_billing_point"]

    maj = records.in_order()
    assert [r.operation for r in maj] == list(STEPS)
    assert all(r.status is MajStatus.OK and r.error is None for r in maj)
    assert all(r.system is ExternalSystem.CFAST and r.workflow_id == wf_id for r in maj)
    assert [r.reference for r in maj] == [f"{wf_id}:{step}" for step in STEPS]
    assert [r.ids_obtained["id"] for r in maj] == [IDS[step] for step in STEPS]
    assert maj[0].sent["customer_reference"] == "ORG1-0A1B2C3D"

    data = customer_input()
    [saved] = records.saved
    assert (saved.customer_id, saved.billing_point_id, saved.site_id) == tuple(IDS[s] for s in STEPS)
    assert (saved.billing_site_id, saved.parc_id) == (data.billing_site_id, data.parc_id)
    assert records.failed == []

    assert status == "synced"
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "synced"
    assert described.typed_search_attributes.get(ORG_ID)


@pytest.mark.parametrize("failing_step", STEPS)
async def test_rejection_fails_the_workflow_with_an_error_record(
    time_skipping_env: WorkflowEnvironment, failing_step: str
) -> None:
    cfast, records = FakeCfast(reject_at=failing_step), FakeRecords()
    async with running(time_skipping_env, cfast, records) as (client, task_queue):
        handle = await start(client, task_queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        status = await handle.query(CfastCustomerWorkflow.business_status)

    error = failure.value.cause
    assert isinstance(error, ApplicationError)
    assert code_of(error) is ErrorCode.CUSTOMER_SYNC_FAILED
    assert REJECTION in error.message
    assert isinstance(error.cause, ActivityError)
    assert isinstance(error.cause.cause, ApplicationError) and error.cause.cause.type == "cfast.rejected"

    position = STEPS.index(failing_step)
    assert [c.step for c in cfast.calls] == list(STEPS[: position + 1])  # a rejection is not retried
    maj = records.in_order()
    assert [r.operation for r in maj] == list(STEPS[: position + 1])
    assert all(r.status is MajStatus.OK for r in maj[:position])
    assert maj[position].status is MajStatus.ERROR
    assert maj[position].error == REJECTION
    assert maj[position].ids_obtained == {}

    [marked] = records.failed
    assert marked.company_id == handle.id.rsplit("/", 1)[1]
    assert REJECTION in marked.reason
    assert records.saved == []
    assert status == "failed"


async def test_transient_failures_are_retried_with_the_same_key(time_skipping_env: WorkflowEnvironment) -> None:
    cfast, records = FakeCfast(transient_failures={"create_billing_point": 2}), FakeRecords()
    async with running(time_skipping_env, cfast, records) as (client, task_queue):
        handle = await start(client, task_queue)
        result = await handle.result()

    assert result.billing_point_id == IDS["create_billing_point"]
    tries = [c for c in cfast.calls if c.step == "create_billing_point"]
    assert [c.attempt for c in tries] == [1, 2, 3]
    assert {c.data.idempotency_key for c in tries} == {f"{handle.id}:create_billing_point"}
    assert [r.status for r in records.in_order()] == [MajStatus.OK] * 3  # retries leave no error record
    assert len(records.saved) == 1 and records.failed == []


async def test_transient_failure_that_never_ends_gives_up_after_the_policy(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Eight attempts with exponential backoff (25 s of retry timers), skipped by the test server."""
    retry = policies.EXTERNAL_CALL_RETRY
    attempts = retry.maximum_attempts
    backoff_s = sum(retry.initial_interval.total_seconds() * retry.backoff_coefficient**n for n in range(attempts - 1))
    cfast, records = FakeCfast(transient_failures={"create_site": attempts}), FakeRecords()
    async with running(time_skipping_env, cfast, records) as (client, task_queue):
        virtual_start, real_start = await time_skipping_env.get_current_time(), time.monotonic()
        handle = await start(client, task_queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        virtual_elapsed = (await time_skipping_env.get_current_time() - virtual_start).total_seconds()

    assert virtual_elapsed >= backoff_s
    assert time.monotonic() - real_start < backoff_s

    assert isinstance(failure.value.cause, ApplicationError)
    assert code_of(failure.value.cause) is ErrorCode.CUSTOMER_SYNC_FAILED
    assert cfast.attempts("create_site") == attempts
    maj = records.in_order()
    assert [(r.operation, r.status) for r in maj][-1] == ("create_site", MajStatus.ERROR)
    assert len(records.failed) == 1 and records.saved == []


async def test_business_status_is_queryable_while_running(time_skipping_env: WorkflowEnvironment) -> None:
    gate = asyncio.Event()
    cfast, records = FakeCfast(gates={"create_billing_point": gate}), FakeRecords()
    async with running(time_skipping_env, cfast, records) as (client, task_queue):
        handle = await start(client, task_queue)
        await asyncio.wait_for(cfast.entered["create_billing_point"].wait(), timeout=30)
        during = await handle.query(CfastCustomerWorkflow.business_status)
        described = await handle.describe()
        gate.set()
        await handle.result()
        after = await handle.query(CfastCustomerWorkflow.business_status)

    assert during == "creating_billing_point"
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "creating_billing_point"
    assert after == "synced"
