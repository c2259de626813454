"""Health against the real processes.

`/healthz` is public liveness: `{"status": "ok"}`, nothing about the parts (no address, no exception
text), whatever state they are in. The report on every part (database, Temporal, worker pollers, CFAST,
SNAIC, OCS, Stripe) is `GET /api/v1/health`, for platform admins only: every check `ok` while they all
run, `degraded` + 503 naming the component when one is unreachable (an API built on a copy of the
settings pointing that component elsewhere). The report is cached for `health_cache_s`: requests within
that window share one round of checks (counted on the Stripe fault proxy's `/_sim/calls`)."""

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
from tests.api.conftest import Tenant

pytestmark = pytest.mark.usefixtures("worker")

CHECKS = {"database", "temporal", "worker", "cfast", "snaic", "ocs", "stripe"}
REPORT = "/api/v1/health"
STRIPE_HEALTH_OP = "list_customers"  # the Stripe check reads one customer: GET /v1/customers?limit=1


@asynccontextmanager
async def api_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            yield client


async def healthy(client: httpx.AsyncClient, headers: dict[str, str], timeout_s: float = 30.0) -> httpx.Response:
    """The worker's pollers show up on the task queue a moment after it starts: wait for a 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(REPORT, headers=headers)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


def stripe_health_calls(stripe_url: str) -> int:
    response = httpx.get(f"{stripe_url}/_sim/calls", params={"op": STRIPE_HEALTH_OP}, timeout=5)
    response.raise_for_status()
    return len(response.json())


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --- public liveness ----------------------------------------------------------------------------------------


async def test_liveness_is_public_and_says_nothing_about_the_parts(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


async def test_liveness_shows_no_address_nor_error_when_a_part_is_down(settings: Settings, stripe_url: str) -> None:
    broken = settings.model_copy(update={"cfast_url": _closed_url(), "temporal_address": f"127.0.0.1:{free_port()}"})
    calls_before = stripe_health_calls(stripe_url)
    async with api_for(broken) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    for leak in ("127.0.0.1", "http", "Error", "error", broken.temporal_address):
        assert leak not in response.text, leak
    assert stripe_health_calls(stripe_url) == calls_before, "liveness calls no external system"


# --- the report, behind authentication ----------------------------------------------------------------------


async def test_report_needs_authentication(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get(REPORT)
    assert response.status_code == 401, response.text
    assert "checks" not in response.text


async def test_report_is_for_platform_admins_only(app_client: httpx.AsyncClient, tenant: Tenant) -> None:
    for headers in (tenant.org_staff, tenant.company_staff):
        response = await app_client.get(REPORT, headers=headers)
        assert response.status_code == 403, response.text
        assert "checks" not in response.text


async def test_every_check_is_ok_with_the_real_processes(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await healthy(app_client, admin_headers)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["status"] == "ok", (name, check)
        assert check["latency_ms"] >= 0
    assert body["checks"]["worker"]["pollers"] >= 1
    assert body["checks"]["worker"]["task_queue"] == "simflow-test"


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
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    component: str,
    override: Any,
    failing: set[str],
) -> None:
    assert (await healthy(app_client, admin_headers)).status_code == 200  # everything else is up
    broken = settings.model_copy(update=override())
    async with api_for(broken) as client:
        response = await client.get(REPORT, headers=admin_headers)
    body = response.json()
    assert response.status_code == 503, body
    assert response.headers["content-type"].startswith("application/json")
    assert body["status"] == "degraded"
    assert {name for name, check in body["checks"].items() if check["status"] != "ok"} == failing, body
    assert body["checks"][component]["status"] == "error"
    assert body["checks"][component]["error"], body
    if component == "worker":
        assert broken.task_queue in body["checks"]["worker"]["error"]


async def test_report_is_cached_no_stripe_call_per_hit(
    app_client: httpx.AsyncClient, settings: Settings, admin_headers: dict[str, str], stripe_url: str
) -> None:
    assert (await healthy(app_client, admin_headers)).status_code == 200  # the worker's pollers are up
    async with api_for(settings.model_copy(update={"health_cache_s": 60.0})) as client:
        before = stripe_health_calls(stripe_url)
        sequential = [await client.get(REPORT, headers=admin_headers) for _ in range(10)]
        concurrent = await asyncio.gather(*(client.get(REPORT, headers=admin_headers) for _ in range(10)))
        assert stripe_health_calls(stripe_url) - before == 1, "20 reports within the cache window: one Stripe call"
    first = sequential[0]
    assert first.status_code == 200, first.text
    for response in (*sequential, *concurrent):
        assert response.status_code == 200, response.text
        assert response.json() == first.json()


async def test_report_is_checked_again_after_the_cache_window(
    app_client: httpx.AsyncClient, settings: Settings, admin_headers: dict[str, str], stripe_url: str
) -> None:
    assert (await healthy(app_client, admin_headers)).status_code == 200
    window_s = 0.5
    async with api_for(settings.model_copy(update={"health_cache_s": window_s})) as client:
        before = stripe_health_calls(stripe_url)
        assert (await client.get(REPORT, headers=admin_headers)).status_code == 200
        await asyncio.sleep(window_s + 0.3)
        assert (await client.get(REPORT, headers=admin_headers)).status_code == 200
        assert stripe_health_calls(stripe_url) - before == 2
