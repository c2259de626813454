"""Session-wide real parts: simulators and localstripe as HTTP servers, Temporal test servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.processes import ManagedProcess, free_port, localstripe_process, simulator_process

LOG_DIR = Path(os.environ.get("SIMFLOW_TEST_LOG_DIR", Path(__file__).resolve().parent.parent / "var" / "test-logs"))


def _start(proc: ManagedProcess) -> ManagedProcess:
    return proc.start(timeout_s=60)


@pytest.fixture(scope="session")
def snaic_callback_sink() -> Iterator[str]:
    """Where the SNAIC simulator posts order results when no API is under test: the API fixture overrides it."""
    yield os.environ.get("SIMFLOW_TEST_SNAIC_CALLBACK_URL", "")


@pytest.fixture(scope="session")
def cfast_url() -> Iterator[str]:
    port = free_port()
    proc = _start(simulator_process("cfast", port, log_dir=LOG_DIR))
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def snaic_url() -> Iterator[str]:
    port = free_port()
    proc = _start(simulator_process("snaic", port, log_dir=LOG_DIR))
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def ocs_base_url() -> Iterator[str]:
    port = free_port()
    proc = _start(simulator_process("ocs", port, log_dir=LOG_DIR))
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def ocs_url(ocs_base_url: str) -> str:
    return f"{ocs_base_url}/jsonrpc"


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = free_port()
    proc = _start(localstripe_process(port, log_dir=LOG_DIR))
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def stripe_url(localstripe_url: str) -> Iterator[str]:
    """The fault proxy in front of localstripe: what the Stripe SDK talks to."""
    port = free_port()
    proc = _start(
        simulator_process("stripe_proxy", port, env={"STRIPE_PROXY_UPSTREAM": localstripe_url}, log_dir=LOG_DIR)
    )
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def reset_simulator(base_url: str) -> None:
    httpx.post(f"{base_url}/_sim/reset", timeout=5).raise_for_status()


# --- database ---------------------------------------------------------------------------------


def _backend() -> str:
    return os.environ.get("SIMFLOW_TEST_BACKEND", "sqlite")


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


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database for the session: SQLite by default, PostgreSQL with SIMFLOW_TEST_BACKEND=postgres."""
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
