"""The migration one-shot (`python -m infra.migrate`, `simflow migrate`, compose's `migrate` service).

1. Waits for the database, bounded: one connection attempt after another, with exponential backoff (1 s, 2 s,
   4 s… at most 10 s apart) for at most `SIMFLOW_MIGRATE_WAIT_S` seconds. A database that never answers ends
   the job with exit code 2 and one line naming the server and the last error (never the password).
2. Takes a PostgreSQL advisory lock, so two jobs started at once (a deploy retried while the first still runs)
   apply the migrations once: the second waits, then finds the schema at head.
3. Runs `alembic upgrade head`. Each run is one transaction on PostgreSQL (transactional DDL): an interrupted
   run leaves the schema where it was, and the next run starts again from there. A run at head changes nothing.
   A connection lost during the upgrade (the server restarting, a backend terminated) rolled that transaction
   back: the job waits for the database again and starts over, within the same `SIMFLOW_MIGRATE_WAIT_S`.

Exit codes: 0 done (or nothing to do), 2 database unreachable, 1 a migration failed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.db import create_engine, is_sqlite
from infra.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
# A fixed key of pg_advisory_lock: "simflow migrations".
MIGRATION_LOCK_KEY = 0x5F3F_0001
EXIT_UNREACHABLE = 2
EXIT_FAILED = 1


class DatabaseUnreachable(RuntimeError):
    pass


def server_of(url: str) -> str:
    """The database as an operator names it in a message: no password."""
    parsed = make_url(url)
    if is_sqlite(url):
        return f"sqlite file {parsed.database}"
    return f"{parsed.username or ''}@{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def backoff_delays(wait_s: float, first_s: float = 1.0, cap_s: float = 10.0) -> Callable[[float], float | None]:
    """The pause before the next attempt, given the time spent so far; None once `wait_s` is used up."""

    state = {"delay": first_s}

    def next_delay(elapsed: float) -> float | None:
        remaining = wait_s - elapsed
        if remaining <= 0:
            return None
        delay = min(state["delay"], cap_s, remaining)
        state["delay"] = min(state["delay"] * 2, cap_s)
        return delay

    return next_delay


async def _probe(url: str, connect_timeout_s: float) -> None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with asyncio.timeout(connect_timeout_s):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def wait_for_database(url: str, wait_s: float, log: Callable[[str], None]) -> int:
    """Connects until the database answers; the number of attempts it took. Raises DatabaseUnreachable."""
    return asyncio.run(await_database(url, wait_s, log))


async def await_database(
    url: str, wait_s: float, log: Callable[[str], None], job: str = "migrate", setting: str = "SIMFLOW_MIGRATE_WAIT_S"
) -> int:
    """`wait_for_database` inside a running event loop (the API's start, for its bootstrap admin): `job` and the
    `setting` that bounds the wait name themselves in the messages."""
    started = time.monotonic()
    next_delay = backoff_delays(wait_s)
    attempt = 0
    while True:
        attempt += 1
        try:
            await _probe(url, connect_timeout_s=min(10.0, max(wait_s, 1.0)))
            return attempt
        except Exception as exc:  # any failure to connect is retried, then reported
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        delay = next_delay(time.monotonic() - started)
        if delay is None:
            raise DatabaseUnreachable(
                f"{job}: database {server_of(url)} unreachable after {attempt} attempts in "
                f"{time.monotonic() - started:.0f} s ({setting}={wait_s:g}); last error: {reason}"
            )
        log(f"{job}: database {server_of(url)} not ready (attempt {attempt}: {reason}); retrying in {delay:.0f} s")
        await asyncio.sleep(delay)


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    # env.py reads the URL from `-x url=…`: the same URL as the wait, the password included.
    config.cmd_opts = type("Options", (), {"x": [f"url={url}"]})()
    return config


async def _revision(connection: AsyncConnection) -> str | None:
    has_table = await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version"))
    if not has_table:
        return None
    return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def _upgrade(url: str) -> tuple[str | None, str | None]:
    """`alembic upgrade head`, on PostgreSQL while holding the advisory lock on a connection of its own; the
    revision before (read under the lock) and after."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    locked = not is_sqlite(url)
    try:
        async with engine.connect() as connection:
            if locked:
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                before = await _revision(connection)
                await connection.commit()  # no snapshot held while alembic works on its own connection
                await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
                after = await _revision(connection)
                await connection.commit()
            finally:
                if locked and not connection.invalidated:  # a lost session has released its lock already
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        return before, after
    finally:
        await engine.dispose()


def lost_connection(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is the connection going away, not a failing migration: SQLAlchemy's
    invalidated connection, a socket error, or a PostgreSQL SQLSTATE of class 08 (connection exception) or 57P
    (operator intervention: shutdown, terminated backend)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, PendingRollbackError):  # the connection was invalidated inside its transaction
            return True
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(("08", "57P")):
            return True
        if type(current).__name__ == "ConnectionDoesNotExistError":  # asyncpg: the socket closed mid-query
            return True
        current = current.__cause__ or current.__context__
    return False


def run(settings: Settings, log: Callable[[str], None], error: Callable[[str], None]) -> int:
    """Progress goes to `log`, the reason of a non-zero exit to `error`."""
    url = settings.database_url
    started = time.monotonic()
    while True:
        try:
            remaining = settings.migrate_wait_s - (time.monotonic() - started)
            attempts = wait_for_database(url, max(remaining, 0.0), log)
        except DatabaseUnreachable as unreachable:
            error(str(unreachable))
            return EXIT_UNREACHABLE
        try:
            before, after = asyncio.run(_upgrade(url))
            break
        except Exception as exc:  # reported, non-zero exit: compose restarts the job
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if lost_connection(exc) and time.monotonic() - started < settings.migrate_wait_s:
                log(f"migrate: connection to {server_of(url)} lost during the upgrade ({reason}); starting again")
                continue
            error(f"migrate: failed on {server_of(url)}: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
    outcome = "already at head, nothing to do" if before == after else f"upgraded {before or 'empty'} -> {after}"
    log(f"migrate: {server_of(url)} {outcome} (database answered after {attempts} attempt(s))")
    return 0


def main() -> None:
    sys.exit(
        run(
            get_settings(),
            log=lambda line: print(line, flush=True),
            error=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )


if __name__ == "__main__":
    main()
