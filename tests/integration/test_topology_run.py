"""The production topology run on this machine with the compose file's own environment, secrets and commands.

From docker-compose.yml it takes, for the one-shots (`postgresql-roles`, `temporal-setup`, `migrate`) and the
long-running services (`worker`, `api`, with their `deploy.replicas`): the `environment:`, the `secrets:` (written to
a temporary SIMFLOW_SECRETS_DIR under the compose file's file names, the Temporal PKI generated into
TEMPORAL_TLS_DIR under its names), and the `command:`. Only host names and ports are rewritten, after this mapping:

- postgresql:5432/simflow as simflow_app → with SIMFLOW_TEST_BACKEND=postgres, the test PostgreSQL: a fresh database
  and role of this run, made by the postgresql-roles one-shot (names suffixed: the server is shared); otherwise a
  SQLite file (no password: SIMFLOW_DATABASE_PASSWORD_FILE dropped), which still proves everything but the roles;
- temporal-frontend:7233 → a Temporal dev server behind a frontend that requires a client certificate signed by
  the generated CA (the compose TEMPORAL_TLS_* settings unchanged, certificate files at the compose file names);
- /run/secrets/<name> → the operator's file that compose would mount there;
- the operator's SIMFLOW_*_URL exports → the test session's simulators (CFAST, SNAIC, OCS, the Stripe proxy in
  front of localstripe); the public URL is the first API's;
- uvicorn --host 0.0.0.0 --port 8000 → --host 127.0.0.1 --port <free port>, one per replica.

Each process starts with a clean environment: nothing but what the compose file gives it (and PATH/PYTHONPATH).
The run: the setup one-shot registers the namespace and search attributes, migrate applies the schema (a second run
changes nothing), two workers and two APIs start (racing to create the schedules and the bootstrap admin), one
top-up goes through one API while the other receives the SNAIC callback, and the money invariants hold
(bench/invariants.py). Then a bounded load: 12 top-ups sent to both APIs at once while the first worker gets
SIGTERM, drains its running activities and starts again; all 12 complete and the invariants hold. It also fails
when the compose file sets a variable no process reads (a typo) or leaves out one the settings need.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

from bench.invariants import check_invariants
from bench.topup_world import STAFF_PASSWORD, build_world, provision_line
from domain.enums import TOPUP_TERMINAL_STATUSES
from domain.models import StaffUser
from infra.db import create_engine, create_sessionmaker
from infra.processes import ROOT, ManagedProcess, free_port, http_ready
from infra.secret_settings import SECRETS_BY_PROCESS
from infra.settings import Settings
from starters.schedules import SCHEDULE_IDS
from tests.compose_support import COMPOSE_FILE, interpolate, one_shot_command, secret_files_of
from tests.conftest import LOG_DIR, SmtpSink
from tests.unit._mtls import MtlsFrontend, Pki

pytestmark = pytest.mark.each_backend

BACKEND = os.environ.get("SIMFLOW_TEST_BACKEND", "sqlite")
POSTGRES_URL = os.environ.get("SIMFLOW_TEST_POSTGRES_URL", "")
APP_PROCESSES = ("migrate", "worker", "api")
# The SDK's environment configuration (temporalio.envconfig) reads these: the app's Temporal transport.
TEMPORAL_ENVCONFIG = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_CODEC_ENDPOINT",
    "TEMPORAL_CODEC_AUTH",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_PROFILE",
}
# Read by uvicorn (the API's command), not by the application.
UVICORN_VARIABLES = {"FORWARDED_ALLOW_IPS"}
# Settings with a development default that is wrong in production: the compose file must give each of them.
PRODUCTION_SETTINGS = {
    "database_url",
    "database_password",
    "temporal_address",
    "temporal_namespace",
    "temporal_ui_url",
    "public_base_url",
    "cfast_url",
    "snaic_url",
    "ocs_url",
    "stripe_api_base",
    "stripe_secret_key",
    "bootstrap_admin_email",
}


def setting_variables() -> dict[str, str]:
    """Every variable infra/settings.py reads (SIMFLOW_<NAME>, its aliases, and each one's _FILE), by field."""
    names: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None)
        for variable in [str(c).upper() for c in choices] if choices else [f"SIMFLOW_{name}".upper()]:
            names[variable] = names[variable + "_FILE"] = name
    return names


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


# --- static: the compose environment against the settings --------------------------------------------------


@pytest.mark.parametrize("service", APP_PROCESSES)
def test_every_variable_the_compose_file_sets_is_read_by_the_process(service: str) -> None:
    """A typo (SIMFLOW_SNAIC_CALLBACK_SECRETS_FILE, TEMPORAL_TLS_CA_PATH…) would be ignored by the process and leave
    a development default in production."""
    env = raw_compose()["services"][service]["environment"]
    known = set(setting_variables()) | TEMPORAL_ENVCONFIG | (UVICORN_VARIABLES if service == "api" else set())
    unknown = sorted(set(env) - known)
    assert unknown == [], f"{service}: variables no process reads: {unknown}"


@pytest.mark.parametrize("service", APP_PROCESSES)
def test_every_setting_production_needs_is_given_by_the_compose_file(service: str) -> None:
    env = raw_compose()["services"][service]["environment"]
    fields_given = {setting_variables()[variable] for variable in env if variable in setting_variables()}
    needed = PRODUCTION_SETTINGS | {
        secret.field for secret in SECRETS_BY_PROCESS["api" if service == "api" else "worker"]
    }
    if service != "api":
        needed |= {secret.field for secret in SECRETS_BY_PROCESS["api"]}  # one environment for the three processes
    assert sorted(needed - fields_given) == [], f"{service}: settings left at their development default"


def test_the_typo_check_catches_a_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = raw_compose()
    broken["services"]["worker"]["environment"]["SIMFLOW_SNAIC_CALLBACK_SECRETS_FILE"] = "/run/secrets/x"
    monkeypatch.setattr(sys.modules[__name__], "raw_compose", lambda: broken)
    with pytest.raises(AssertionError, match="SIMFLOW_SNAIC_CALLBACK_SECRETS_FILE"):
        test_every_variable_the_compose_file_sets_is_read_by_the_process("worker")
    del broken["services"]["worker"]["environment"]["SIMFLOW_OCS_URL"]
    with pytest.raises(AssertionError, match="ocs_url"):
        test_every_setting_production_needs_is_given_by_the_compose_file("worker")


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class Topology:
    compose: dict[str, Any]
    secrets_dir: Path
    admin_email: str
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    api_urls: list[str] = field(default_factory=list)


def operator_environment(secrets_dir: Path, tls_dir: Path, urls: dict[str, str], admin_email: str) -> dict[str, str]:
    """What the operator exports before `docker compose up` (the compose file's header), pointed at this machine."""
    return {
        "SIMFLOW_SECRETS_DIR": str(secrets_dir),
        "TEMPORAL_TLS_DIR": str(tls_dir),
        "TEMPORAL_DB_PASSWORD": (secrets_dir / "temporal_db_password").read_text().strip(),
        "SIMFLOW_PUBLIC_BASE_URL": urls["public"],
        "SIMFLOW_TEMPORAL_UI_URL": "https://temporal.simflow.example.fr",
        "SIMFLOW_CFAST_URL": urls["cfast"],
        "SIMFLOW_SNAIC_URL": urls["snaic"],
        "SIMFLOW_OCS_URL": urls["ocs"],
        "SIMFLOW_STRIPE_API_BASE": urls["stripe"],
        "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": admin_email,
        # The local sink takes mail in clear on loopback; production keeps the compose default (STARTTLS).
        "SIMFLOW_SMTP_HOST": "127.0.0.1",
        "SIMFLOW_SMTP_PORT": urls["smtp_port"],
        "SIMFLOW_SMTP_SECURITY": "none",
        "SIMFLOW_MAIL_SENDER": "simflow <no-reply@topology.simflow>",
        "SIMFLOW_SMS_GATEWAY_URL": urls["sms"],
        "SIMFLOW_FTP_HOST": "127.0.0.1",  # nothing in this run makes drop folders
        "PYTHON_IMAGE_DIGEST": "sha256:" + "0" * 64,
    }


def write_secrets(secrets_dir: Path, tls_dir: Path, pki: Pki, raw: dict[str, Any]) -> None:
    """The operator's directories, with the compose file's file names: generated secrets (mode 0400), the Stripe
    key of localstripe, and the generated PKI."""
    secrets_dir.mkdir(mode=0o700)
    tls_dir.mkdir()
    pki_files = {
        "ca.pem": pki.ca,
        "frontend.pem": pki.server_cert,
        "frontend-key.pem": pki.server_key,
        "internode.pem": pki.server_cert,
        "internode-key.pem": pki.server_key,
        "client.pem": pki.client_cert,
        "client-key.pem": pki.client_key,
    }
    for spec in raw["secrets"].values():
        directory, _, name = spec["file"].rpartition("/")
        if directory.startswith("${SIMFLOW_SECRETS_DIR"):
            value = "sk_test_topology" if name == "stripe_secret_key" else secrets.token_urlsafe(32)
            (secrets_dir / name).write_text(value + "\n", encoding="utf-8")
            (secrets_dir / name).chmod(0o400)
        else:
            assert directory.startswith("${TEMPORAL_TLS_DIR"), spec
            (tls_dir / name).write_bytes(pki_files[name].read_bytes())


def container_environment(compose: dict[str, Any], service: str) -> dict[str, str]:
    """The service's environment as its process sees it: /run/secrets/<name> is the file compose mounts there."""
    spec = compose["services"][service]
    files = {name: Path(compose["secrets"][name]["file"]) for name in spec["secrets"]}
    return secret_files_of(spec, files)


def clean_environment(env: dict[str, str]) -> dict[str, str]:
    """Nothing inherited but what runs a process: the compose environment decides everything else."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE"}
    return {**{k: v for k, v in os.environ.items() if k in keep}, "PYTHONPATH": str(ROOT), **env}


def run_one_shot(argv: list[str], env: dict[str, str], name: str) -> str:
    result = subprocess.run(
        argv, cwd=ROOT, env=clean_environment(env), capture_output=True, text=True, timeout=300, check=False
    )
    (LOG_DIR / "topology").mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "topology" / f"{name}.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def database_for_the_run(compose: dict[str, Any], tmp_path: Path, suffix: str) -> tuple[URL | None, dict[str, str]]:
    """PostgreSQL: the postgresql-roles one-shot, run for real, creates this run's least-privilege role and
    database (names suffixed); the app's URL is then the compose one with host, port, role and database rewritten.
    SQLite: a file."""
    if BACKEND != "postgres":
        return None, {}
    if not POSTGRES_URL:
        pytest.skip("SIMFLOW_TEST_BACKEND=postgres without SIMFLOW_TEST_POSTGRES_URL")
    server = make_url(POSTGRES_URL)
    names = {"APP_DB_ROLE": f"simflow_app_{suffix}", "APP_DB": f"simflow_{suffix}"}
    names |= {"TEMPORAL_DB_ROLE": f"temporal_{suffix}", "TEMPORAL_DB": f"temporal_{suffix}"}
    names |= {"TEMPORAL_VISIBILITY_DB": f"temporal_visibility_{suffix}"}
    (Path(compose["secrets"]["postgres_password"]["file"])).chmod(0o600)
    Path(compose["secrets"]["postgres_password"]["file"]).write_text((server.password or "") + "\n")
    env = {
        **container_environment(compose, "postgresql-roles"),
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "PGUSER": server.username or "postgres",
        **names,
    }
    run_one_shot(one_shot_command(compose, "postgresql-roles", tmp_path), env, "postgresql-roles")
    return server, names


def drop_run_database(server: URL, names: dict[str, str]) -> None:
    env = {**os.environ, "PGHOST": server.host or "127.0.0.1", "PGPORT": str(server.port or 5432)}
    env["PGPASSWORD"] = server.password or ""
    for statement in (
        *(
            f'DROP DATABASE IF EXISTS "{names[k]}" WITH (FORCE)'
            for k in ("APP_DB", "TEMPORAL_DB", "TEMPORAL_VISIBILITY_DB")
        ),
        *(f'DROP ROLE IF EXISTS "{names[k]}"' for k in ("APP_DB_ROLE", "TEMPORAL_DB_ROLE")),
    ):
        subprocess.run(
            ["psql", "-U", server.username or "postgres", "-d", "postgres", "-c", statement],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


def rewrite_database_url(url: str, server: URL | None, names: dict[str, str], tmp_path: Path) -> str:
    compose_url = make_url(url)
    assert (compose_url.host, compose_url.port, compose_url.database) == ("postgresql", 5432, "simflow"), url
    if server is None:
        return f"sqlite+aiosqlite:///{tmp_path / 'simflow.db'}"
    return compose_url.set(
        host=server.host or "127.0.0.1",
        port=server.port or 5432,
        username=names["APP_DB_ROLE"],
        database=names["APP_DB"],
    ).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    mtls_frontend: MtlsFrontend,
    cfast_url: str,
    snaic_url: str,
    ocs_url: str,
    stripe_url: str,
    smtp_sink: SmtpSink,
    sms_url: str,
) -> Iterator[Topology]:
    tmp_path = tmp_path_factory.mktemp("topology")
    suffix = uuid.uuid4().hex[:8]
    raw = raw_compose()
    secrets_dir, tls_dir = tmp_path / "secrets", tmp_path / "temporal-tls"
    write_secrets(secrets_dir, tls_dir, pki, raw)
    urls = {
        "cfast": cfast_url,
        "snaic": snaic_url,
        "ocs": ocs_url,
        "stripe": stripe_url,
        "smtp_port": str(smtp_sink.smtp_port),
        "sms": sms_url,
    }
    admin_email = f"admin-{suffix}@topology.simflow"
    # The public URL is the first API's: the SNAIC simulator posts its callbacks there (a load balancer's job).
    first_port = free_port()
    compose = interpolate(
        raw,
        operator_environment(secrets_dir, tls_dir, {**urls, "public": f"http://127.0.0.1:{first_port}"}, admin_email),
    )
    server, names = database_for_the_run(compose, tmp_path, suffix)
    processes: dict[str, ManagedProcess] = {}
    try:
        # The Temporal namespace and search attributes, by the production one-shot, through mTLS.
        setup_env = {
            **container_environment(compose, "temporal-setup"),
            "TEMPORAL_ADDRESS": mtls_frontend.address,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        run_one_shot(one_shot_command(compose, "temporal-setup", tmp_path), setup_env, "temporal-setup")

        envs = {}
        for service in APP_PROCESSES:
            env = container_environment(compose, service)
            env["SIMFLOW_DATABASE_URL"] = rewrite_database_url(env["SIMFLOW_DATABASE_URL"], server, names, tmp_path)
            if server is None:
                env.pop("SIMFLOW_DATABASE_PASSWORD_FILE")  # SQLite: no password
            env["TEMPORAL_ADDRESS"] = mtls_frontend.address
            envs[service] = env
        topology = Topology(
            compose=compose,
            secrets_dir=secrets_dir,
            admin_email=admin_email,
            envs=envs,
            processes=processes,
        )
        # migrate: its compose command, twice (the second changes nothing).
        migrate = [sys.executable if part == "python" else part for part in compose["services"]["migrate"]["command"]]
        first = run_one_shot(migrate, envs["migrate"], "migrate")
        assert "upgraded empty ->" in first, first
        second = run_one_shot(migrate, envs["migrate"], "migrate-again")
        assert "already at head, nothing to do" in second, second

        # The workers and the APIs, every replica at once, as compose starts them once migrate and temporal-setup
        # are done: each worker creates the schedules, each API the bootstrap admin, at the same moment.
        log_dir = LOG_DIR / "topology"
        worker_command = [
            sys.executable if part == "python" else part for part in compose["services"]["worker"]["command"]
        ]
        for n in range(int(compose["services"]["worker"]["deploy"]["replicas"])):
            log = log_dir / f"worker-{n}.log"
            log.unlink(missing_ok=True)
            processes[f"worker-{n}"] = ManagedProcess(
                f"worker-{n}",
                worker_command,
                ready=lambda log=log: log.exists() and b"worker.started" in log.read_bytes(),
                env=clean_environment(envs["worker"]),
                log_path=log,
            )
        for n in range(int(compose["services"]["api"]["deploy"]["replicas"])):
            port = first_port if n == 0 else free_port()
            command = list(compose["services"]["api"]["command"])
            command[command.index("--host") + 1] = "127.0.0.1"
            command[command.index("--port") + 1] = str(port)
            command = [sys.executable, "-m", *command] if command[0] == "uvicorn" else command
            url = f"http://127.0.0.1:{port}"
            (log_dir / f"api-{n}.log").unlink(missing_ok=True)
            processes[f"api-{n}"] = ManagedProcess(
                f"api-{n}",
                command,
                ready=http_ready(f"{url}/healthz"),
                env=clean_environment(envs["api"]),
                log_path=log_dir / f"api-{n}.log",
            )
            topology.api_urls.append(url)
        with ThreadPoolExecutor(max_workers=len(processes)) as pool:
            for started in [pool.submit(proc.start, 120) for proc in processes.values()]:
                started.result()
        yield topology
    finally:
        for proc in reversed(list(processes.values())):
            proc.stop(grace_s=60)
        if server is not None:
            drop_run_database(server, names)


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a process given `env` reads (files included), without touching this process's environment."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(("SIMFLOW_", "TEMPORAL_"))}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(env)
        return Settings()
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


async def drive_one_topup(topology: Topology, settings: Settings, snaic_url: str, localstripe_url: str) -> None:
    world = await build_world(settings)
    line_id = await provision_line(world)
    first, second = topology.api_urls[0], topology.api_urls[-1]
    # SNAIC posts its order results to the public URL (the first API), signed with the compose secret.
    config = {
        "callback_url": f"{settings.public_base_url}/api/v1/snaic/callback",
        "callback_secret": settings.snaic_callback_secret.get_secret_value(),
        "callbacks_enabled": True,
        "completion_delay_ms": 20,
    }
    httpx.post(f"{snaic_url}/_sim/config", json=config, timeout=5).raise_for_status()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            token = await http.post(
                f"{second}/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD}
            )
            headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
            response = await http.post(
                f"{second}/api/v1/lines/{line_id}/recharges",
                json={"data_gb": 1, "payment_method": "card"},
                headers={**headers, "Idempotency-Key": f"topology-{uuid.uuid4().hex}"},
            )
            assert response.status_code in (200, 201), response.text
            recharge_id = response.json()["recharge_id"]
            deadline = asyncio.get_running_loop().time() + 120
            while True:  # read through the other API: both serve the same state
                body = (await http.get(f"{first}/api/v1/recharges/{recharge_id}", headers=headers)).json()
                if body["status"] in TOPUP_TERMINAL_STATUSES:
                    break
                assert asyncio.get_running_loop().time() < deadline, f"still {body['status']} after 120 s"
                await asyncio.sleep(0.2)
            assert body["status"] == "completed", body
    finally:
        httpx.delete(f"{snaic_url}/_sim/config", timeout=5).raise_for_status()
    report = await check_invariants(
        database_url=settings.database_url,
        localstripe_url=localstripe_url,
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=settings.ocs_url.removesuffix("/jsonrpc"),
        ocs_tenant=settings.ocs_tenant,
        cfast_url=settings.cfast_url,
        org_ids={world.org_id},
    )
    assert report.ok, report.violations
    assert report.by_status == {"completed": 1}, report.summary()


async def bootstrap_admins(database_url: str, email: str) -> int:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            count = await session.scalar(select(func.count()).select_from(StaffUser).where(StaffUser.email == email))
            return int(count or 0)
    finally:
        await engine.dispose()


async def schedule_ids(settings: Settings, environ: dict[str, str]) -> list[str]:
    from infra.temporal import connect_temporal

    client = await connect_temporal(settings, environ)
    return sorted([schedule.id async for schedule in await client.list_schedules()])


def test_one_topup_through_the_compose_topology(topology: Topology, snaic_url: str, localstripe_url: str) -> None:
    """Two APIs and two workers started with the compose commands and environment (mTLS to Temporal, secrets from
    files, the least-privilege role on PostgreSQL) take one card top-up to `completed`; the invariants hold; the
    bootstrap admin and the schedules exist once although each replica created them."""
    settings = settings_from(topology.envs["api"])
    assert settings.stripe_secret_key.get_secret_value() == "sk_test_topology", "read from its file"
    for name, proc in topology.processes.items():
        assert proc.alive(), f"{name} died"
    asyncio.run(drive_one_topup(topology, settings, snaic_url, localstripe_url))
    assert asyncio.run(bootstrap_admins(settings.database_url, topology.admin_email)) == 1
    worker_env = topology.envs["worker"]
    ids = asyncio.run(schedule_ids(settings_from(worker_env), worker_env))
    assert ids == sorted(SCHEDULE_IDS), ids
    for name, proc in topology.processes.items():
        assert proc.alive(), f"{name} died during the run"


LOAD_TOPUPS = 12


async def drive_load_with_a_worker_restart(
    topology: Topology, settings: Settings, snaic_url: str, localstripe_url: str
) -> dict[str, int]:
    """LOAD_TOPUPS top-ups on as many lines, sent alternately to each API replica at once; while they run, the
    first worker gets SIGTERM (as compose sends on a deploy: it drains its activities within its grace period)
    and starts again. Every top-up must end `completed`, with the money invariants intact."""
    world = await build_world(settings)
    line_ids = [await provision_line(world) for _ in range(LOAD_TOPUPS)]
    # A slower SNAIC keeps top-ups in flight when the worker is told to stop.
    config = {
        "callback_url": f"{settings.public_base_url}/api/v1/snaic/callback",
        "callback_secret": settings.snaic_callback_secret.get_secret_value(),
        "callbacks_enabled": True,
        "completion_delay_ms": 400,
    }
    httpx.post(f"{snaic_url}/_sim/config", json=config, timeout=5).raise_for_status()
    worker = topology.processes["worker-0"]
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            apis = topology.api_urls
            token = await http.post(
                f"{apis[0]}/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD}
            )
            headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}

            async def submit(n: int, line_id: str) -> str:
                response = await http.post(
                    f"{apis[n % len(apis)]}/api/v1/lines/{line_id}/recharges",
                    json={"data_gb": 1, "payment_method": "card"},
                    headers={**headers, "Idempotency-Key": f"topology-load-{line_id}"},
                )
                assert response.status_code in (200, 201), response.text
                return str(response.json()["recharge_id"])

            recharge_ids = await asyncio.gather(*(submit(n, line_id) for n, line_id in enumerate(line_ids)))
            await asyncio.to_thread(worker.stop, 60)  # SIGTERM, then wait for the drain
            assert worker.process is not None and worker.process.returncode == 0, "the worker did not drain cleanly"
            assert worker.log_path is not None
            restarted_log = worker.log_path.with_name("worker-0-restarted.log")
            restarted_log.unlink(missing_ok=True)
            worker.log_path = restarted_log
            worker.ready = lambda: restarted_log.exists() and b"worker.started" in restarted_log.read_bytes()
            await asyncio.to_thread(worker.start, 120)

            statuses: dict[str, str] = {}
            deadline = asyncio.get_running_loop().time() + 180
            while len(statuses) < len(recharge_ids):
                for n, recharge_id in enumerate(recharge_ids):
                    if recharge_id in statuses:
                        continue
                    body = (
                        await http.get(f"{apis[(n + 1) % len(apis)]}/api/v1/recharges/{recharge_id}", headers=headers)
                    ).json()
                    if body["status"] in TOPUP_TERMINAL_STATUSES:
                        statuses[recharge_id] = body["status"]
                assert asyncio.get_running_loop().time() < deadline, f"{len(statuses)} terminal after 180 s"
                await asyncio.sleep(0.3)
    finally:
        httpx.delete(f"{snaic_url}/_sim/config", timeout=5).raise_for_status()
    report = await check_invariants(
        database_url=settings.database_url,
        localstripe_url=localstripe_url,
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=settings.ocs_url.removesuffix("/jsonrpc"),
        ocs_tenant=settings.ocs_tenant,
        cfast_url=settings.cfast_url,
        org_ids={world.org_id},
    )
    assert report.ok, report.violations
    return dict(report.by_status)


def test_a_bounded_load_across_replicas_survives_a_worker_stopped_midway(
    topology: Topology, snaic_url: str, localstripe_url: str
) -> None:
    settings = settings_from(topology.envs["api"])
    by_status = asyncio.run(drive_load_with_a_worker_restart(topology, settings, snaic_url, localstripe_url))
    assert by_status == {"completed": LOAD_TOPUPS}, by_status
    for name, proc in topology.processes.items():
        assert proc.alive(), f"{name} died during the run"


async def test_api_replicas_starting_together_create_the_bootstrap_admin_once(database_url: str) -> None:
    """Each API replica creates the bootstrap admin at start. Two starting at the same moment both find no admin
    and insert it; the loser of the unique email used to fail its start (`uq_staff_users_email`, exit code 3)."""
    from api.app import ensure_bootstrap_admin

    email = f"admin-{uuid.uuid4().hex[:8]}@replicas.simflow"
    settings = Settings(
        database_url=database_url, bootstrap_admin_email=email, bootstrap_admin_password=secrets.token_urlsafe(16)
    )
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(ensure_bootstrap_admin(create_sessionmaker(engine), settings) for engine in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    assert await bootstrap_admins(database_url, email) == 1
