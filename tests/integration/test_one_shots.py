"""The compose file's one-shot jobs, each run as a real process with its compose `entrypoint`/`command`, its scripts
(compose `configs`) and its environment, only the host names, ports and secret file paths rewritten to local ones:

- `migrate` (`python -m infra.migrate`) against a fresh PostgreSQL database (SIMFLOW_TEST_POSTGRES_URL) or SQLite;
- `postgresql-roles` against the test PostgreSQL, with role and database names of its own;
- `temporal-setup` (the temporal CLI) against a Temporal dev server behind a frontend that requires mTLS;
- `temporal-schema` with a stand-in `temporal-sql-tool` (the real one ships only in the admin-tools image).

For each: a second run after success changes nothing, a run interrupted midway is finished by the next one, and a
dependency that never comes ends the job after its bounded wait, with a non-zero exit and a message naming it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from infra.processes import ROOT, SEARCH_ATTRIBUTES, free_port
from tests.compose_support import (
    client_tls_files,
    one_shot_command,
    secret_files_of,
)
from tests.unit._mtls import MtlsFrontend, Pki

POSTGRES_URL = os.environ.get("SIMFLOW_TEST_POSTGRES_URL", "")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="SIMFLOW_TEST_POSTGRES_URL is not set")


def run(argv: list[str], env: dict[str, str], timeout_s: float = 180) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    return result, time.monotonic() - started


def base_environment() -> dict[str, str]:
    """The test's own environment without any setting that the compose environment should be the one to give."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SIMFLOW_", "TEMPORAL_", "PG"))}


def closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


# --- migrate ----------------------------------------------------------------------------------------------------


async def _admin(sql: str, *args: Any) -> Any:
    url = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
def fresh_database() -> Any:
    """A new empty database: on PostgreSQL when configured, else a SQLite file."""
    if not POSTGRES_URL:
        yield None
        return
    name = f"simflow_oneshot_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate_environment(services: dict[str, Any], tmp_path: Path, url: Any) -> tuple[dict[str, str], str]:
    """The migrate service's environment: the compose URL's host, port and database rewritten (documented mapping:
    postgresql:5432/simflow → the test server's fresh database), its password file kept as a file."""
    service = services["migrate"]
    password_file = tmp_path / "database_password"
    password_file.write_text(((url.password if url is not None else "") or "") + "\n", encoding="utf-8")
    env = secret_files_of(service, {name: password_file for name in service["secrets"]})
    env = {k: v for k, v in env.items() if k.startswith(("SIMFLOW_DATABASE", "SIMFLOW_MIGRATE"))}
    compose_url = make_url(env["SIMFLOW_DATABASE_URL"])
    if url is None:
        target = f"sqlite+aiosqlite:///{tmp_path / 'simflow.db'}"
        env.pop("SIMFLOW_DATABASE_PASSWORD_FILE")  # SQLite has no password
    else:
        # The role stays the test server's (the compose role `simflow_app` is created by postgresql-roles, run for
        # real below); the driver, host, port and database are the test's.
        target = compose_url.set(
            host=url.host, port=url.port or 5432, database=url.database, username=url.username, password=None
        ).render_as_string(hide_password=False)
        if not url.password:
            env.pop("SIMFLOW_DATABASE_PASSWORD_FILE")  # trust authentication: an empty file would mean no password
    return {**base_environment(), **env, "SIMFLOW_DATABASE_URL": target}, target


async def _tables(url: str) -> set[str]:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database=parsed.database
    )
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await conn.close()


def test_migrate_applies_once_and_a_second_run_is_a_no_op(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path, fresh_database: Any
) -> None:
    argv = one_shot_command(compose, "migrate", tmp_path)
    assert argv == ["python", "-m", "infra.migrate"]
    argv = [sys.executable, *argv[1:]]
    env, _ = migrate_environment(services, tmp_path, fresh_database)
    first, _ = run(argv, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"upgraded empty -> \w+", first.stdout), first.stdout
    second, _ = run(argv, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already at head, nothing to do" in second.stdout


@pytest.mark.skipif(not POSTGRES_URL, reason="two jobs at once and transactional DDL: PostgreSQL only")
def test_two_migrate_jobs_at_once_apply_the_migrations_once(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path, fresh_database: Any
) -> None:
    env, _ = migrate_environment(services, tmp_path, fresh_database)
    argv = [sys.executable, "-m", "infra.migrate"]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert sum("upgraded empty" in output for output in outputs) == 1, outputs
    assert sum("already at head" in output for output in outputs) == 1, outputs


@pytest.mark.skipif(not POSTGRES_URL, reason="transactional DDL: PostgreSQL only")
def test_migrate_killed_midway_leaves_nothing_and_the_next_run_finishes(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path, fresh_database: Any
) -> None:
    """SIGKILL while the migration transaction is open (seen in pg_stat_activity): the database is left as it was
    (no table at all), and the next run applies everything."""
    env, target = migrate_environment(services, tmp_path, fresh_database)
    argv = [sys.executable, "-m", "infra.migrate"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    query = (
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND xact_start IS NOT NULL "
        "AND state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + 60
    while asyncio.run(_admin(query, fresh_database.database))[0]["n"] == 0:
        assert proc.poll() is None, "the migration ended before it could be interrupted"
        assert time.monotonic() < deadline, "no migration transaction seen"
        time.sleep(0.02)
    time.sleep(0.2)  # in the middle of the DDL
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.5)  # the server notices the closed connection and rolls back
    assert asyncio.run(_tables(target)) == set(), "an interrupted run left part of the schema"
    result, _ = run(argv, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upgraded empty" in result.stdout
    assert "alembic_version" in asyncio.run(_tables(target))


@pytest.mark.skipif(not POSTGRES_URL, reason="transactional DDL: PostgreSQL only")
def test_migrate_whose_connection_is_lost_midway_starts_over_and_finishes(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path, fresh_database: Any
) -> None:
    """The server drops the migration's connections while its transaction is open (pg_terminate_backend, as a
    restart does): the job itself waits for the database again and applies everything, exit 0."""
    env, target = migrate_environment(services, tmp_path, fresh_database)
    argv = [sys.executable, "-m", "infra.migrate"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The migration's own transaction once it has written (DDL gives it a transaction id), not the connection that
    # holds the advisory lock: killing that one after the upgrade's commit would find nothing to start over.
    in_transaction = (
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_xid IS NOT NULL "
        "AND state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + 60
    while not (pids := [row["pid"] for row in asyncio.run(_admin(in_transaction, fresh_database.database))]):
        assert proc.poll() is None, "the migration ended before it could be interrupted"
        assert time.monotonic() < deadline, "no migration transaction seen"
        time.sleep(0.02)
    for pid in pids:  # in the middle of the DDL
        asyncio.run(_admin("SELECT pg_terminate_backend($1)", pid))
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, output
    assert "lost during the upgrade" in output and "starting again" in output, output
    assert re.search(r"upgraded empty -> \w+", output), output
    assert "alembic_version" in asyncio.run(_tables(target))


def test_migrate_with_the_database_down_gives_up_after_its_bounded_wait(services: dict[str, Any]) -> None:
    port = closed_port()
    env = {
        **base_environment(),
        "SIMFLOW_DATABASE_URL": f"postgresql+asyncpg://simflow_app@127.0.0.1:{port}/simflow",
        "SIMFLOW_MIGRATE_WAIT_S": "4",
    }
    result, elapsed = run([sys.executable, "-m", "infra.migrate"], env, timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert elapsed < 30, f"the wait is bounded by SIMFLOW_MIGRATE_WAIT_S=4, took {elapsed:.0f} s"
    assert f"database simflow_app@127.0.0.1:{port}/simflow unreachable after" in result.stderr
    assert "SIMFLOW_MIGRATE_WAIT_S=4" in result.stderr and "ConnectionRefusedError" in result.stderr
    assert len(re.findall(r"not ready \(attempt \d+", result.stdout)) >= 2, "it retried before giving up"


def test_api_start_with_the_database_down_gives_up_after_its_bounded_wait() -> None:
    """The bootstrap admin is created by each API replica at start (a second replica, or a second start, finds it
    there: tests/integration/test_topology_run.py). Before it, the replica waits for the database, bounded by
    SIMFLOW_API_DATABASE_WAIT_S, then exits naming the server and the last error."""
    from infra.secret_settings import API_SECRETS, with_generated_secrets
    from infra.settings import Settings

    port = closed_port()
    generated = with_generated_secrets(Settings())
    env = {
        **base_environment(),
        **{secret.variable: getattr(generated, secret.field).get_secret_value() for secret in API_SECRETS},
        "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "admin@example.fr",
        "SIMFLOW_DATABASE_URL": f"postgresql+asyncpg://simflow_app@127.0.0.1:{port}/simflow",
        "SIMFLOW_API_DATABASE_WAIT_S": "3",
    }
    argv = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(free_port())]
    result, elapsed = run(argv, env, timeout_s=90)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert elapsed < 45, f"bounded by SIMFLOW_API_DATABASE_WAIT_S=3, took {elapsed:.0f} s"
    assert f"api: database simflow_app@127.0.0.1:{port}/simflow unreachable after" in output, output
    assert "SIMFLOW_API_DATABASE_WAIT_S=3" in output and "ConnectionRefusedError" in output
    assert "not ready (attempt 1" in output, "it retried before giving up"
    assert "Application startup failed" in output


# --- postgresql-roles -------------------------------------------------------------------------------------------


def roles_environment(services: dict[str, Any], tmp_path: Path, suffix: str) -> tuple[dict[str, str], dict[str, str]]:
    """The postgresql-roles one-shot's environment, PGHOST/PGPORT/PGUSER rewritten to the test server, secret
    files to local ones, and role and database names of this test (the script's defaults are the production
    names)."""
    url = make_url(POSTGRES_URL)
    files = {}
    for secret, value in (
        ("postgres_password", url.password or ""),
        ("temporal_db_password", secrets.token_urlsafe(24)),
        ("simflow_database_password", secrets.token_urlsafe(24)),
    ):
        files[secret] = tmp_path / secret
        files[secret].write_text(value + "\n", encoding="utf-8")
    env = secret_files_of(services["postgresql-roles"], files)
    names = {
        "TEMPORAL_DB_ROLE": f"t_role_{suffix}",
        "APP_DB_ROLE": f"a_role_{suffix}",
        "TEMPORAL_DB": f"t_db_{suffix}",
        "TEMPORAL_VISIBILITY_DB": f"t_vis_{suffix}",
        "APP_DB": f"a_db_{suffix}",
    }
    env.update(PGHOST=url.host or "127.0.0.1", PGPORT=str(url.port or 5432), PGUSER=url.username or "postgres", **names)
    passwords = {
        "temporal": files["temporal_db_password"].read_text().strip(),
        "app": files["simflow_database_password"].read_text().strip(),
    }
    return {**base_environment(), **env}, {**names, **{f"password:{k}": v for k, v in passwords.items()}}


def psql(user: str, password: str, database: str, sql: str) -> subprocess.CompletedProcess[str]:
    url = make_url(POSTGRES_URL)
    env = {**base_environment(), "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432)}
    return subprocess.run(
        ["psql", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", database, "-tAc", sql],
        env={**env, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def superuser(sql: str) -> str:
    url = make_url(POSTGRES_URL)
    result = psql(url.username or "postgres", url.password or "", "postgres", sql)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_postgres
def test_roles_one_shot_creates_least_privilege_roles_and_a_second_run_is_a_no_op(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path
) -> None:
    suffix = secrets.token_hex(4)
    env, names = roles_environment(services, tmp_path, suffix)
    argv = one_shot_command(compose, "postgresql-roles", tmp_path)
    temporal, app = names["TEMPORAL_DB_ROLE"], names["APP_DB_ROLE"]
    databases = (names["TEMPORAL_DB"], names["TEMPORAL_VISIBILITY_DB"], names["APP_DB"])
    state_query = (
        f"SELECT string_agg(format('%s:%s:%s', oid, rolname, rolconnlimit), ',' ORDER BY rolname) FROM pg_roles "
        f"WHERE rolname IN ('{temporal}', '{app}') UNION ALL "
        f"SELECT string_agg(format('%s:%s:%s', oid, datname, datacl), ',' ORDER BY datname) FROM pg_database "
        f"WHERE datname IN ('{databases[0]}', '{databases[1]}', '{databases[2]}')"
    )
    try:
        first, _ = run(argv, env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"roles {temporal} and {app} ready" in first.stdout
        t_pw, a_pw = names["password:temporal"], names["password:app"]
        assert psql(temporal, t_pw, names["TEMPORAL_DB"], "CREATE TABLE t (i int)").returncode == 0
        assert psql(temporal, t_pw, names["TEMPORAL_VISIBILITY_DB"], "SELECT 1").returncode == 0
        assert psql(app, a_pw, names["APP_DB"], "CREATE TABLE a (i int)").returncode == 0
        refused = psql(app, a_pw, names["TEMPORAL_DB"], "SELECT 1")
        assert refused.returncode != 0 and "CONNECT privilege" in refused.stderr
        refused = psql(temporal, t_pw, names["APP_DB"], "SELECT 1")
        assert refused.returncode != 0 and "CONNECT privilege" in refused.stderr
        refused = psql(app, a_pw, names["APP_DB"], "CREATE DATABASE nope")
        assert refused.returncode != 0 and "permission denied" in refused.stderr
        limits = superuser(
            f"SELECT rolname, rolconnlimit, rolsuper FROM pg_roles WHERE rolname IN ('{temporal}', '{app}')"
        ).split()
        assert sorted(limits) == sorted([f"{app}|100|f", f"{temporal}|100|f"])
        state = superuser(state_query)

        second, _ = run(argv, env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert superuser(state_query) == state, "a second run changed roles or databases"
        # The tables created in between are still there: nothing was dropped or recreated.
        assert psql(app, a_pw, names["APP_DB"], "SELECT count(*) FROM a").stdout.strip() == "0"
    finally:
        for database in databases:
            superuser(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (temporal, app):
            superuser(f'DROP ROLE IF EXISTS "{role}"')


@needs_postgres
def test_roles_one_shot_finishes_what_an_interrupted_run_left(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path
) -> None:
    """An earlier run stopped after its first role and database (and with an old password): the next run creates
    the rest and sets the password from the file."""
    suffix = secrets.token_hex(4)
    env, names = roles_environment(services, tmp_path, suffix)
    temporal, app = names["TEMPORAL_DB_ROLE"], names["APP_DB_ROLE"]
    databases = (names["TEMPORAL_DB"], names["TEMPORAL_VISIBILITY_DB"], names["APP_DB"])
    try:
        superuser(f"CREATE ROLE \"{temporal}\" LOGIN PASSWORD 'an-old-password'")
        superuser(f'CREATE DATABASE "{names["TEMPORAL_DB"]}" OWNER "{temporal}"')
        password_query = f"SELECT rolpassword FROM pg_authid WHERE rolname = '{temporal}'"
        old_hash = superuser(password_query)
        result, _ = run(one_shot_command(compose, "postgresql-roles", tmp_path), env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert psql(temporal, names["password:temporal"], names["TEMPORAL_DB"], "SELECT 1").returncode == 0
        # Set again from the file (the test server may trust local connections: compare the stored hashes).
        assert superuser(password_query) not in ("", old_hash)
        assert psql(app, names["password:app"], names["APP_DB"], "SELECT 1").returncode == 0
        assert psql(temporal, names["password:temporal"], names["TEMPORAL_VISIBILITY_DB"], "SELECT 1").returncode == 0
        refused = psql(app, names["password:app"], names["TEMPORAL_DB"], "SELECT 1")
        assert refused.returncode != 0 and "CONNECT privilege" in refused.stderr
    finally:
        for database in databases:
            superuser(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (temporal, app):
            superuser(f'DROP ROLE IF EXISTS "{role}"')


def test_roles_one_shot_with_postgresql_down_gives_up_after_its_bounded_wait(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path
) -> None:
    files = {name: tmp_path / name for name in services["postgresql-roles"]["secrets"]}
    for path in files.values():
        path.write_text("unused\n", encoding="utf-8")
    port = closed_port()
    env = {
        **base_environment(),
        **secret_files_of(services["postgresql-roles"], files),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port),
        "RETRY_FOR_S": "3",
    }
    result, elapsed = run(one_shot_command(compose, "postgresql-roles", tmp_path), env, timeout_s=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 30, f"bounded by RETRY_FOR_S=3, took {elapsed:.0f} s"
    assert re.search(r"gave up after \d+ attempts in \d+ s \(RETRY_FOR_S=3\): pg_isready", result.stderr), result.stderr
    assert "CREATE" not in result.stdout + result.stderr


# --- temporal-setup ---------------------------------------------------------------------------------------------


def setup_environment(services: dict[str, Any], pki: Pki, address: str, namespace: str) -> dict[str, str]:
    return {
        **base_environment(),
        **{key: str(value) for key, value in services["temporal-setup"]["environment"].items()},
        **client_tls_files(pki),
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": namespace,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def registered_attributes(env: dict[str, str]) -> str:
    return subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "operator", "search-attribute", "list", "--output", "json"],
        env={**env, "TEMPORAL_NAMESPACE": env["TEMPORAL_NAMESPACE"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_setup_one_shot_registers_namespace_and_search_attributes_once(
    compose: dict[str, Any], services: dict[str, Any], mtls_frontend: MtlsFrontend, pki: Pki, tmp_path: Path
) -> None:
    """The one-shot's script with its compose environment, through a frontend that requires mTLS (the temporal CLI
    reads the same TEMPORAL_TLS_* variables as the application). A run stopped after two search attributes is
    finished by the next; a run after success registers nothing."""
    argv = one_shot_command(compose, "temporal-setup", tmp_path)
    env = setup_environment(services, pki, mtls_frontend.address, f"simflow-{uuid.uuid4().hex[:8]}")
    partial = {**env, "SEARCH_ATTRIBUTES": "OrgId CompanyId"}  # as if stopped after the second attribute
    result, _ = run(argv, partial)
    assert result.returncode == 0, result.stdout + result.stderr
    result, _ = run(argv, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"namespace {env['TEMPORAL_NAMESPACE']} already exists" in result.stdout
    assert "search attribute OrgId already registered" in result.stdout
    assert "search attribute MsisdnHash already registered" not in result.stdout, "registered by this run"
    again, _ = run(argv, env)
    assert again.returncode == 0, again.stdout + again.stderr
    for name in SEARCH_ATTRIBUTES:
        assert f"search attribute {name} already registered" in again.stdout, again.stdout
    assert "simflow-app" in mtls_frontend.client_names
    listing = registered_attributes(env)
    for name in SEARCH_ATTRIBUTES:
        assert re.search(rf'"{name}"\s*:\s*"(INDEXED_VALUE_TYPE_)?KEYWORD"', listing, re.IGNORECASE), (name, listing)


def test_setup_one_shot_with_the_frontend_down_gives_up_after_its_bounded_wait(
    compose: dict[str, Any], services: dict[str, Any], pki: Pki, tmp_path: Path
) -> None:
    env = {**setup_environment(services, pki, f"127.0.0.1:{closed_port()}", "simflow"), "RETRY_FOR_S": "3"}
    result, elapsed = run(one_shot_command(compose, "temporal-setup", tmp_path), env, timeout_s=90)
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 45, f"bounded by RETRY_FOR_S=3 and 10 s per call, took {elapsed:.0f} s"
    assert re.search(r"gave up after \d+ attempts .*: t operator cluster health", result.stderr), result.stderr
    assert "namespace" not in result.stdout


def test_setup_one_shot_waits_for_a_frontend_that_comes_late(
    compose: dict[str, Any], services: dict[str, Any], temporal_dev_server: str, pki: Pki, tmp_path: Path
) -> None:
    """The frontend starts accepting 4 s after the job: the job retries, then succeeds."""
    import threading

    frontend: list[MtlsFrontend] = []
    host, _, port = temporal_dev_server.rpartition(":")
    late_port = closed_port()

    def open_late() -> None:
        time.sleep(4)
        frontend.append(MtlsFrontend(pki, (host, int(port)), port=late_port))

    threading.Thread(target=open_late, daemon=True).start()
    env = setup_environment(services, pki, f"127.0.0.1:{late_port}", f"late-{uuid.uuid4().hex[:8]}")
    try:
        result, _ = run(one_shot_command(compose, "temporal-setup", tmp_path), env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "attempt 1 failed" in result.stderr and "t operator cluster health" in result.stderr
        assert f"namespace {env['TEMPORAL_NAMESPACE']} ready" in result.stdout
    finally:
        for started in frontend:
            started.close()


# --- temporal-schema --------------------------------------------------------------------------------------------


def stand_in_sql_tool(directory: Path, failures: int) -> Path:
    """A `temporal-sql-tool` that fails `failures` times (the database not reachable yet), then succeeds, and logs
    each call: the script's control flow runs for real, the tool itself needs the admin-tools image."""
    tool = directory / "bin" / "temporal-sql-tool"
    tool.parent.mkdir()
    tool.write_text(
        "#!/bin/sh\n"
        f'count=$(cat "{directory}/calls" 2>/dev/null | wc -l)\n'
        f'echo "$SQL_PASSWORD $*" >> "{directory}/calls"\n'
        f'if [ "$count" -lt {failures} ]; then echo "dial tcp: connection refused" >&2; exit 1; fi\n',
        encoding="utf-8",
    )
    tool.chmod(0o755)
    return tool.parent


@pytest.mark.parametrize("failures", [0, 2])
def test_schema_one_shot_retries_each_step_until_the_database_answers(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path, failures: int
) -> None:
    password = tmp_path / "temporal_db_password"
    password.write_text("the-temporal-password\n", encoding="utf-8")
    bin_dir = stand_in_sql_tool(tmp_path, failures)
    env = {
        **base_environment(),
        **secret_files_of(services["temporal-schema"], {"temporal_db_password": password}),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    result, _ = run(one_shot_command(compose, "temporal-schema", tmp_path), env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "temporal schemas ready" in result.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 4 + failures
    assert all(call.startswith("the-temporal-password --db temporal") for call in calls), "password from the file"
    assert calls[failures:] == [
        "the-temporal-password --db temporal setup-schema -v 0.0",
        "the-temporal-password --db temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned",
        "the-temporal-password --db temporal_visibility setup-schema -v 0.0",
        "the-temporal-password --db temporal_visibility update-schema -d "
        "/etc/temporal/schema/postgresql/v12/visibility/versioned",
    ]


def test_schema_one_shot_with_the_database_down_gives_up_after_its_bounded_wait(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path
) -> None:
    password = tmp_path / "temporal_db_password"
    password.write_text("pw\n", encoding="utf-8")
    bin_dir = stand_in_sql_tool(tmp_path, failures=1_000)
    env = {
        **base_environment(),
        **secret_files_of(services["temporal-schema"], {"temporal_db_password": password}),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RETRY_FOR_S": "3",
    }
    result, elapsed = run(one_shot_command(compose, "temporal-schema", tmp_path), env, timeout_s=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 20
    assert re.search(
        r"gave up after \d+ attempts in \d+ s \(RETRY_FOR_S=3\): temporal-sql-tool --db temporal setup-schema",
        result.stderr,
    ), result.stderr
    assert "temporal schemas ready" not in result.stdout


def test_simflow_migrate_is_the_same_one_shot(tmp_path: Path) -> None:
    simflow = str(Path(sys.executable).parent / "simflow")
    env = {**base_environment(), "SIMFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'simflow.db'}"}
    first, _ = run([simflow, "migrate"], env)
    assert first.returncode == 0 and "upgraded empty ->" in first.stdout, first.stdout + first.stderr
    again, _ = run([simflow, "migrate"], env)
    assert again.returncode == 0 and "already at head" in again.stdout, again.stdout + again.stderr
