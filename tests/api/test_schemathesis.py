"""The whole OpenAPI under schemathesis with every check (`--checks all`, one worker), as an integrator would
run it: the real API served by uvicorn on a free port, on a database of its own, authenticated as an
organisation's administrator who logs in with a password, and as a platform admin on the platform's own
operations (tests/api/schemathesis_hooks.py).

Every phase runs (explicit examples, coverage, fuzzing, stateful links), positive and negative data: no
server error, every status code, header and body documented, schema-valid data accepted and schema-invalid
data rejected, every operation enforcing authentication, 405 answers carrying `Allow`. Bounded
(`MAX_EXAMPLES` per operation) and seeded, so the run is the same on every machine and stays in `make test`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from domain.enums import StaffRole
from domain.models import InvoiceCounter, Organisation, StaffUser
from domain.security import hash_password
from domain.services.companies import create_company
from infra.db import create_engine, create_sessionmaker
from infra.processes import ManagedProcess, free_port, http_ready, venv_bin
from infra.settings import Settings
from tests.api._support import VALID_SIRET
from tests.conftest import LOG_DIR, _backend, _create_postgres_database, _drop_postgres_database, migrate

pytestmark = pytest.mark.each_backend

MAX_EXAMPLES = 10
# One worker: schemathesis' workers are threads, and CPython 3.11 can fail a `compile`/`ast.parse` run by
# two threads at once ("AST constructor recursion depth mismatch"), which hypothesis does while generating.
WORKERS = 1
SEED = 20260
RUN_TIMEOUT_S = 900
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    platform_email: str
    org_admin_email: str
    password: str


def _organisation_admin(database_url: str, password: str) -> str:
    """An organisation with one company, and its administrator (every permission): the integrator's view.
    The organisation-scoped operations need no `org_id` from them (a platform admin must name one)."""

    async def create() -> str:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine).begin() as session:
                org = Organisation(name="Intégrateur fuzz", slug=f"fuzz-{uuid.uuid4().hex[:8]}")
                session.add(org)
                await session.flush()
                session.add(InvoiceCounter(org_id=org.id, last_number=0))
                await create_company(
                    session,
                    org_id=org.id,
                    name="Entreprise fuzz",
                    siret=VALID_SIRET,
                    vat_number=None,
                    is_virtual=False,
                    billing_email=None,
                    address=None,
                )
                email = f"fuzz-org-admin-{uuid.uuid4().hex[:8]}@test.simflow"
                session.add(
                    StaffUser(
                        email=email,
                        full_name="Fuzz",
                        password_hash=hash_password(password),
                        role=StaffRole.ORG_STAFF,
                        org_id=org.id,
                        permissions=["*"],
                    )
                )
            return email
        finally:
            await engine.dispose()

    return asyncio.run(create())


def settings_env(settings: Settings) -> dict[str, str]:
    """The `SIMFLOW_*` environment that makes another process read exactly these settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"SIMFLOW_{name.upper()}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


@pytest.fixture(scope="module")
def fuzz_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the run's own: what the fuzzer creates never reaches the other tests."""
    if _backend() == "postgres":
        base = os.environ.get("SIMFLOW_TEST_POSTGRES_URL")
        if not base:
            pytest.skip("SIMFLOW_TEST_POSTGRES_URL is not set")
        url = _create_postgres_database(base)
        migrate(url)
        yield url
        _drop_postgres_database(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'simflow.db'}"
        migrate(url)
        yield url


class FuzzWorker:
    """A worker on the run's task queue, in a thread of its own: the workflows the run starts (company
    synchronisation, bulk operations) run against the simulators, and their progress queries answer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="fuzz-worker", daemon=True)

    async def _run(self) -> None:
        from infra.temporal import connect_temporal
        from worker import build_worker

        client = await connect_temporal(self.settings)
        async with build_worker(self.settings, client) as worker, worker:
            self.started.set()
            while not self.stop.is_set():
                await asyncio.sleep(0.2)

    def __enter__(self) -> FuzzWorker:
        self.thread.start()
        assert self.started.wait(60), "the run's worker did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)


@pytest.fixture(scope="module")
def live_api(settings: Settings, fuzz_database_url: str) -> Iterator[LiveApi]:
    """The API under uvicorn and a worker, with the session's Temporal and simulators, their own database
    and task queue."""
    platform_email = f"fuzz-admin-{uuid.uuid4().hex[:8]}@test.simflow"
    password = f"Fuzz-{uuid.uuid4().hex}!A1"
    org_admin_email = _organisation_admin(fuzz_database_url, password)
    fuzz_settings = settings.model_copy(
        update={
            "database_url": fuzz_database_url,
            "task_queue": f"simflow-fuzz-{uuid.uuid4().hex[:8]}",
            "bootstrap_admin_email": platform_email,
            "bootstrap_admin_password": password,
            # The run calls the password-checking operations (password change, 2FA) with wrong passwords
            # as the admin: the lockout they lead to is tested in test_security_auth.py, not left to end
            # the run's session.
            "login_max_failures": 1_000_000,
            "login_account_free_failures": 1_000_000,
        }
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        name="fuzz-api",
        args=[
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        ready=http_ready(f"{base_url}/openapi.json"),
        env={**settings_env(fuzz_settings), "SIMFLOW_PUBLIC_BASE_URL": base_url},
        log_path=LOG_DIR / "schemathesis-api.log",
    ).start(timeout_s=60)
    with FuzzWorker(fuzz_settings):
        yield LiveApi(base_url, platform_email, org_admin_email, password)
    proc.stop()


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_api_contract_with_every_check(live_api: LiveApi, tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.json"
    command = [
        venv_bin("schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_api.base_url}/openapi.json",
        "--checks",
        "all",
        # The health report describes the surrounding processes (503 while one is down: its contract, not an
        # error of the API).
        "--exclude-path",
        "/api/v1/health",
        "--workers",
        str(WORKERS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--continue-on-failure",
        "--no-color",
        "--output-truncate",
        "false",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "SIMFLOW_FUZZ_BASE_URL": live_api.base_url,
        "SIMFLOW_FUZZ_PLATFORM_EMAIL": live_api.platform_email,
        "SIMFLOW_FUZZ_ORG_ADMIN_EMAIL": live_api.org_admin_email,
        "SIMFLOW_FUZZ_PASSWORD": live_api.password,
    }
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "schemathesis-run.txt").write_text(run.stdout + run.stderr)
    summary = json.loads(report.read_text())
    failures = {f["title"]: f["count"] for f in summary["failures"]}
    print(
        f"\nschemathesis operations={summary['operations']['tested']}/{summary['operations']['selected']}"
        f" test_cases={summary['test_cases']['generated']} failures={failures} errors={summary['errors']}"
        f" running_time={summary['running_time']}"
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert summary["operations"]["tested"] == summary["operations"]["selected"] >= 40
    assert not summary["failures"] and not summary["errors"]
