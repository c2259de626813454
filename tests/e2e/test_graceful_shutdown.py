"""Deploys and restarts finish what they started: the worker and the API are real processes of a scratch
stack (Temporal dev server, simulators, localstripe behind its fault proxy), stopped with SIGTERM as
Docker stops a container.

- A worker stopped in the middle of a card charge, or of a SNAIC order, lets that activity finish (its
  first attempt completes, nothing is cancelled); a new worker carries the top-up on, and it ends
  completed with exactly one charge (the money invariants, computed from the outside systems, hold).
- An API stopped while a recharge request waits on a slow charge still answers that request.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client

from bench.invariants import check_invariants
from bench.topup_world import STAFF_PASSWORD, World, build_world, provision_line
from infra.processes import ManagedProcess
from infra.secret_settings import with_generated_secrets
from infra.settings import Settings
from infra.stack import Stack
from workflows import activity_names as names

SLOW_MS = 4000


@dataclass
class Deployment:
    stack: Stack
    settings: Settings
    world: World
    client: Client
    headers: dict[str, str]

    def fault(self, system: str, op: str, latency_ms: int = SLOW_MS) -> None:
        url = self.stack.url("stripe_proxy" if system == "stripe" else system)
        body = {"op": op, "mode": "latency", "latency_ms": latency_ms, "times": 1}
        httpx.post(f"{url}/_sim/faults", json=body, timeout=5).raise_for_status()

    def sigterm(self, name: str, exit_within_s: float) -> float:
        """SIGTERM to the process `name`, as `docker stop` sends it; returns how long it took to exit."""
        proc = self.stack.processes[name]
        assert proc.process is not None
        sent = time.monotonic()
        proc.kill(signal.SIGTERM)
        proc.process.wait(timeout=exit_within_s)
        proc.stop()  # closes its log
        return time.monotonic() - sent

    def restart_worker(self) -> None:
        proc: ManagedProcess = self.stack.worker_process(self.settings)
        self.stack.processes["worker"] = proc.start(timeout_s=60)


@pytest_asyncio.fixture(scope="module")
async def deployment() -> AsyncIterator[Deployment]:
    var = Path(tempfile.mkdtemp(prefix="simflow-graceful-"))
    stack = Stack.scratch(var)
    settings = stack.settings(with_generated_secrets(Settings(snaic_callback_sla_s=20, http_timeout_s=15)))
    try:
        await asyncio.to_thread(stack.start, settings)
        world = await build_world(settings, wallet_minor=1_000_000)
        client = await Client.connect(settings.temporal_address)
        async with httpx.AsyncClient(base_url=stack.url("api"), timeout=30) as http:
            token = await http.post(
                "/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD}
            )
        headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
        yield Deployment(stack, settings, world, client, headers)
    finally:
        stack.stop()
        shutil.rmtree(var, ignore_errors=True)


async def recharge(deployment: Deployment, api: str, line_id: str) -> httpx.Response:
    body = {"data_gb": 1, "payment_method": "card"}
    headers = {**deployment.headers, "Idempotency-Key": uuid.uuid4().hex}
    async with httpx.AsyncClient(base_url=deployment.stack.url(api), timeout=60) as http:
        return await http.post(f"/api/v1/lines/{line_id}/recharges", json=body, headers=headers)


async def running_activity(
    client: Client, activity: str, answer: asyncio.Task[httpx.Response], timeout_s: float = 30
) -> str:
    """The id of the top-up workflow whose `activity` is running now (its call is held by a latency fault)."""
    deadline = time.monotonic() + timeout_s
    seen: set[tuple[str, str, int]] = set()
    while time.monotonic() < deadline:
        if answer.done() and answer.result().status_code != 201:
            raise AssertionError(f"refused before {activity} ran: {answer.result().text}")
        async for execution in client.list_workflows("WorkflowType = 'TopUpWorkflow'"):
            description = await client.get_workflow_handle(execution.id).describe()
            for pending in description.raw_description.pending_activities:
                seen.add((execution.id, pending.activity_type.name, pending.state))
                if (
                    pending.activity_type.name == activity
                    and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                ):
                    return execution.id
        await asyncio.sleep(0.2)
    raise AssertionError(f"no top-up is running {activity}: {seen}")


async def attempts_of(client: Client, workflow_id: str, activity: str) -> list[int]:
    """The attempt that completed each `activity` of the workflow (a cancelled or failed one is retried)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and event.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def assert_money_holds(deployment: Deployment) -> None:
    settings = deployment.settings
    report = await check_invariants(
        database_url=settings.database_url,
        localstripe_url=deployment.stack.url("localstripe"),
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=deployment.stack.url("ocs"),
        ocs_tenant=settings.ocs_tenant,
        cfast_url=deployment.stack.url("cfast"),
        org_ids={deployment.world.org_id},
    )
    assert report.violations == [], report.summary()
    assert report.ok, report.summary()


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("system", "op", "activity"),
    [
        ("stripe", "confirm_payment_intent", names.PAYMENT_CHARGE_CARD),
        ("snaic", "add_one_off_option", names.SNAIC_ADD_ONE_OFF_OPTION),
    ],
    ids=["card-charge", "snaic-order"],
)
async def test_worker_sigterm_lets_the_running_activity_finish(
    deployment: Deployment, system: str, op: str, activity: str
) -> None:
    line_id = await provision_line(deployment.world)
    deployment.fault(system, op)
    answer = asyncio.create_task(recharge(deployment, "api", line_id))
    wf_id = await running_activity(deployment.client, activity, answer)

    stopped_after = await asyncio.to_thread(deployment.sigterm, "worker", 30)
    await asyncio.to_thread(deployment.restart_worker)

    response = await answer
    assert response.status_code == 201, response.text
    assert await deployment.client.get_workflow_handle(wf_id).result() is not None
    status = (await deployment.client.get_workflow_handle(wf_id).describe()).search_attributes.get("BusinessStatus")
    assert status == ["completed"], status
    # The activity held by the fault finished its first attempt in the stopping worker: not cancelled, not retried.
    assert await attempts_of(deployment.client, wf_id, activity) == [1], f"worker exited after {stopped_after:.1f} s"
    await assert_money_holds(deployment)


@pytest.mark.timeout(240)
async def test_api_sigterm_answers_the_request_in_flight(deployment: Deployment) -> None:
    line_id = await provision_line(deployment.world)
    stack = deployment.stack
    stack.processes["api-draining"] = await asyncio.to_thread(
        stack.api_process(deployment.settings, name="api-draining").start, 60
    )
    deployment.fault("stripe", "confirm_payment_intent")
    answer = asyncio.create_task(recharge(deployment, "api-draining", line_id))
    await running_activity(deployment.client, names.PAYMENT_CHARGE_CARD, answer)

    stopped_after = await asyncio.to_thread(deployment.sigterm, "api-draining", 30)

    response = await answer
    assert response.status_code == 201, response.text
    assert response.json()["payment_status"] == "succeeded", response.json()
    assert stopped_after < 30
