"""Migrations match the models and round-trip, on SQLite or, with SIMFLOW_TEST_BACKEND=postgres, PostgreSQL.

Alembic runs in a subprocess (`python -m alembic -x url=…`), exactly as `make migrations-check` and the test
database fixture run it. The round trip uses a database of its own so the session database is left alone.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import make_url

from infra.db import create_engine

pytestmark = pytest.mark.each_backend

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_TIMEOUT_S = 120


async def alembic(url: str, *args: str) -> str:
    """Runs `alembic -x url=URL ARGS…` and returns its output; fails the test with the output on error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-x",
        f"url={url}",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=ALEMBIC_TIMEOUT_S)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"alembic {' '.join(args)} failed:\n{text}"
    return text


async def tables(url: str) -> set[str]:
    def names(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(names)
    finally:
        await engine.dispose()


async def _admin_connection(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )


@pytest_asyncio.fixture
async def empty_database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A brand-new, empty database of the backend under test (dropped afterwards on PostgreSQL)."""
    if os.environ.get("SIMFLOW_TEST_BACKEND", "sqlite") != "postgres":
        yield f"sqlite+aiosqlite:///{tmp_path / 'round-trip.db'}"
        return
    base = os.environ.get("SIMFLOW_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("SIMFLOW_TEST_POSTGRES_URL is not set")
    name = f"simflow_migrations_{uuid.uuid4().hex[:10]}"
    conn = await _admin_connection(base)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await _admin_connection(base)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_models_and_migrations_agree_on_the_session_database(database_url: str) -> None:
    output = await alembic(database_url, "check")
    assert "No new upgrade operations detected" in output


async def test_downgrade_to_base_then_upgrade_to_head(empty_database_url: str) -> None:
    url = empty_database_url
    await alembic(url, "upgrade", "head")
    head = await alembic(url, "current")
    schema = await tables(url)
    assert {"organisations", "companies", "sim_cards", "update_records"} <= schema

    await alembic(url, "downgrade", "base")
    assert await tables(url) <= {"alembic_version"}, "downgrade to base left tables behind"
    assert "(head)" not in await alembic(url, "current")

    await alembic(url, "upgrade", "head")
    assert await tables(url) == schema
    assert await alembic(url, "current") == head
    await alembic(url, "check")


async def test_single_head() -> None:
    output = await alembic("sqlite+aiosqlite:///:memory:", "heads")
    assert len([line for line in output.splitlines() if "(head)" in line]) == 1, output
