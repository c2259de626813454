"""`/healthz` against the real processes: every check `ok` while they all run, `degraded` + 503 naming the
component when one is unreachable (an API built on a copy of the settings pointing that component elsewhere)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from api.app import create_app
from infra.processes import free_port
from infra.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")

CHECKS = {"database", "temporal", "worker", "cfast", "snaic", "ocs", "stripe"}


@asynccontextmanager
async def api_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            yield client


async def healthy(client: httpx.AsyncClient, timeout_s: float = 30.0) -> httpx.Response:
    """The worker's pollers show up on the task queue a moment after it starts: wait for a 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/healthz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


async def test_every_check_is_ok_with_the_real_processes(app_client: httpx.AsyncClient) -> None:
    response = await healthy(app_client)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["status"] == "ok", (name, check)
        assert check["latency_ms"] >= 0
    assert body["checks"]["worker"]["pollers"] >= 1
    assert body["checks"]["worker"]["task_queue"] == "simflow-test"


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("component", "override", "failing"),
    [
        pytest.param("cfast", lambda: {"cfast_url": _closed_url()}, {"cfast"}, id="cfast"),
        pytest.param("snaic", lambda: {"snaic_url": _closed_url()}, {"snaic"}, id="snaic"),
        pytest.param("ocs", lambda: {"ocs_url": f"{_closed_url()}/jsonrpc"}, {"ocs"}, id="ocs"),
        pytest.param("stripe", lambda: {"stripe_api_base": _closed_url()}, {"stripe"}, id="stripe"),
        # A task queue no worker polls is what a stopped worker looks like to the server.
        pytest.param("worker", lambda: {"task_queue": f"nobody-{uuid.uuid4().hex[:8]}"}, {"worker"}, id="worker"),
        pytest.param(
            "temporal",
            lambda: {"temporal_address": f"127.0.0.1:{free_port()}"},
            {"temporal", "worker"},
            id="temporal",
        ),
    ],
)
async def test_one_component_down_is_reported_degraded(
    app_client: httpx.AsyncClient, settings: Settings, component: str, override: Any, failing: set[str]
) -> None:
    assert (await healthy(app_client)).status_code == 200  # everything else is up
    broken = settings.model_copy(update=override())
    async with api_for(broken) as client:
        response = await client.get("/healthz")
    body = response.json()
    assert response.status_code == 503, body
    assert response.headers["content-type"].startswith("application/json")
    assert body["status"] == "degraded"
    assert {name for name, check in body["checks"].items() if check["status"] != "ok"} == failing, body
    assert body["checks"][component]["status"] == "error"
    assert body["checks"][component]["error"], body
    if component == "worker":
        assert broken.task_queue in body["checks"]["worker"]["error"]
