"""End-to-end fixtures: a real Temporal dev server, the worker in-process, the API over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from infra.processes import venv_bin
from infra.settings import Settings
from infra.temporal import connect_temporal
from worker import build_worker
from workflows._search import ALL_KEYS

ADMIN_EMAIL = "admin@test.simflow"
ADMIN_PASSWORD = "Test-admin-password-1!"


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    from datetime import timedelta

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_bin("temporal"),
        dev_server_startup_timeout=timedelta(seconds=60),
        search_attributes=list(ALL_KEYS),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def settings(
    database_url: str, temporal_env: WorkflowEnvironment, cfast_url: str, snaic_url: str, ocs_url: str, stripe_url: str
) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue="simflow-test",
        cfast_url=cfast_url,
        snaic_url=snaic_url,
        ocs_url=ocs_url,
        stripe_api_base=stripe_url,
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        http_timeout_s=3.0,
    )


@pytest_asyncio.fixture(scope="session")
async def temporal_client(settings: Settings) -> Client:
    """A client configured like the product's (pydantic data converter), on the test server."""
    return await connect_temporal(settings)


@pytest_asyncio.fixture(scope="session")
async def worker(settings: Settings, temporal_client: Client) -> AsyncIterator[None]:
    async with build_worker(settings, temporal_client) as w:
        task = asyncio.create_task(w.run())
        yield
        await w.shutdown()
        await task


@pytest_asyncio.fixture(scope="session")
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            yield client


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    response = await client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest_asyncio.fixture(scope="session")
async def admin_headers(app_client: httpx.AsyncClient) -> dict[str, str]:
    return await login(app_client, ADMIN_EMAIL, ADMIN_PASSWORD)
