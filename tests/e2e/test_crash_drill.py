"""The short crash drill, at every landing: about 60 top-ups through the real API (a real worker process,
Temporal dev server, simulators and localstripe, random faults), the worker killed with SIGKILL 3 times while
top-ups are in flight. Every top-up ends terminal and the money invariants, computed from the outside
systems, hold. On the PostgreSQL run the drill's database is a PostgreSQL one.

The fault plan comes from a fixed seed, so every landing drills the same faults (the kill moments still vary
with timing); SIMFLOW_CRASH_DRILL_SEED=<seed> runs another plan.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.crash_drill import run_drill
from tests.conftest import _backend, _create_postgres_database, _drop_postgres_database

pytestmark = pytest.mark.each_backend

TOPUPS = 60
WORKER_KILLS = 3
DEFAULT_SEED = 181083


@pytest.fixture
def drill_database_url() -> Iterator[str | None]:
    """None (the drill's own SQLite file) by default; an empty PostgreSQL database on the PostgreSQL run."""
    if _backend() != "postgres":
        yield None
        return
    base = os.environ.get("SIMFLOW_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("SIMFLOW_TEST_POSTGRES_URL is not set")
    url = _create_postgres_database(base)
    yield url
    _drop_postgres_database(url)


@pytest.mark.timeout(420)
async def test_topups_survive_worker_sigkills(drill_database_url: str | None) -> None:
    seed = int(os.environ.get("SIMFLOW_CRASH_DRILL_SEED") or DEFAULT_SEED)
    outcome = await run_drill(
        topups=TOPUPS, worker_kills=WORKER_KILLS, server_kills=0, lines=8, seed=seed, database_url=drill_database_url
    )
    context = f"seed={seed}: {outcome.line()} statuses={outcome.statuses} violations={outcome.violations[:10]}"
    assert outcome.worker_kills == WORKER_KILLS, context
    assert outcome.topups == TOPUPS, context
    assert outcome.terminal == TOPUPS, context
    assert outcome.violations == [], context
    assert outcome.ok, context
