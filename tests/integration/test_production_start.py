"""The production processes refuse a published or weak secret: `simflow api`, `simflow worker`, and the
commands the image and docker-compose run (`uvicorn api.app:create_app --factory`, `python worker.py`).

Each is started as a real process with a clean environment (no `SIMFLOW_*` variable but the ones the test
sets). With a former default, a short value, a value copied from the repository or no value at all, the
process exits before serving, and its output names every offending variable and none of the others (and
never prints a secret). With generated secrets the API serves `/healthz` and the worker polls a real
Temporal dev server."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.processes import ManagedProcess, free_port, http_ready, temporal_dev_server_process
from tests.conftest import LOG_DIR, migrate

ROOT = Path(__file__).resolve().parents[2]
SIMFLOW = str(Path(sys.executable).parent / "simflow")

# The values infra/settings.py shipped as defaults: public for good (repository history, old images).
FORMER_DEFAULTS = {
    "SIMFLOW_JWT_SECRET": "dev-only-change-me-in-production-0123456789",
    "SIMFLOW_SECRETS_KEY": "dev-only-secrets-key-change-me-in-production",
    "SIMFLOW_SNAIC_CALLBACK_SECRET": "snaic-dev-secret",
    "SIMFLOW_STRIPE_WEBHOOK_SECRET": "whsec_simflow",
    "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD": "Simflow-demo-2026!",
}
SHARED_SECRETS = (
    "SIMFLOW_JWT_SECRET",
    "SIMFLOW_SECRETS_KEY",
    "SIMFLOW_SNAIC_CALLBACK_SECRET",
    "SIMFLOW_STRIPE_WEBHOOK_SECRET",
)
API_SECRETS = (*SHARED_SECRETS, "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD")

API_COMMANDS = {
    "simflow api": lambda port: [SIMFLOW, "api", "--host", "127.0.0.1", "--port", str(port)],
    "uvicorn factory (image, compose)": lambda port: [
        *(sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ],
}
WORKER_COMMANDS = {
    "simflow worker": [SIMFLOW, "worker"],
    "python worker.py (compose)": [sys.executable, "worker.py"],
}


def generated_secrets() -> dict[str, str]:
    values = {name: secrets.token_urlsafe(32) for name in SHARED_SECRETS}
    return {**values, "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD": f"Adm-{secrets.token_urlsafe(12)}-9!"}


def repository_value() -> str:
    """A long line of the README: anyone who has the repository has it."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    return next(line.strip() for line in lines if len(line.strip()) >= 60)


def clean_environment(**variables: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIMFLOW_") and k != "TEMPORAL_ADDRESS"}
    return {**inherited, "PYTHONPATH": str(ROOT), **variables}


@pytest.fixture(scope="module")
def scratch_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('production-start') / 'simflow.db'}"
    migrate(url)
    return url


def run_until_exit(args: list[str], env: dict[str, str], timeout_s: float = 30) -> tuple[int, str]:
    """Runs the process; one still running after `timeout_s` started despite its secrets: a failure."""
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        output, _ = proc.communicate()
        pytest.fail(f"{args} still running after {timeout_s} s: it started with unsafe secrets\n{output.decode()}")
    return proc.returncode, output.decode(errors="replace")


def unsafe_mix() -> tuple[dict[str, str], set[str]]:
    """One of each kind of unsafe secret, the others generated: (environment, the variables to be named)."""
    good = generated_secrets()
    env = {
        **good,
        "SIMFLOW_JWT_SECRET": FORMER_DEFAULTS["SIMFLOW_JWT_SECRET"],  # former default
        "SIMFLOW_SECRETS_KEY": "short-key-2026",  # too short
        "SIMFLOW_STRIPE_WEBHOOK_SECRET": repository_value(),  # written in the repository
    }
    del env["SIMFLOW_SNAIC_CALLBACK_SECRET"]  # not set at all
    bad = {
        "SIMFLOW_JWT_SECRET",
        "SIMFLOW_SECRETS_KEY",
        "SIMFLOW_STRIPE_WEBHOOK_SECRET",
        "SIMFLOW_SNAIC_CALLBACK_SECRET",
    }
    return env, bad


def assert_refused(code: int, output: str, named: set[str], checked: tuple[str, ...], env: dict[str, str]) -> None:
    assert code != 0, output
    for variable in named:
        assert variable in output, (variable, output)
    for variable in set(checked) - named:
        assert variable not in output, (variable, output)
    for variable in checked:
        value = env.get(variable)
        if value and len(value) >= 8:
            assert value not in output, f"{variable}'s value is printed"


@pytest.mark.parametrize("command", sorted(API_COMMANDS))
def test_api_refuses_unsafe_secrets_naming_each_variable(command: str, scratch_database: str) -> None:
    secrets_env, bad = unsafe_mix()
    env = clean_environment(SIMFLOW_DATABASE_URL=scratch_database, **secrets_env)
    code, output = run_until_exit(API_COMMANDS[command](free_port()), env)
    assert_refused(code, output, bad, API_SECRETS, env)


def test_api_refuses_to_start_with_no_secret_configured(scratch_database: str) -> None:
    env = clean_environment(SIMFLOW_DATABASE_URL=scratch_database)
    code, output = run_until_exit(API_COMMANDS["uvicorn factory (image, compose)"](free_port()), env)
    assert_refused(code, output, set(API_SECRETS), API_SECRETS, env)


def test_api_refuses_the_former_demo_admin_password(scratch_database: str) -> None:
    secrets_env = {**generated_secrets(), "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD": "Simflow-demo-2026!"}
    env = clean_environment(SIMFLOW_DATABASE_URL=scratch_database, **secrets_env)
    code, output = run_until_exit(API_COMMANDS["simflow api"](free_port()), env)
    assert_refused(code, output, {"SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD"}, API_SECRETS, env)


@pytest.mark.parametrize("command", sorted(WORKER_COMMANDS))
def test_worker_refuses_unsafe_secrets_naming_each_variable(command: str, scratch_database: str) -> None:
    secrets_env, bad = unsafe_mix()
    # Temporal is never reached: the worker refuses before connecting.
    env = clean_environment(
        SIMFLOW_DATABASE_URL=scratch_database, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", **secrets_env
    )
    code, output = run_until_exit(WORKER_COMMANDS[command], env)
    assert_refused(code, output, bad, SHARED_SECRETS, env)
    assert "worker.started" not in output


def test_api_starts_with_generated_secrets(scratch_database: str) -> None:
    command = "simflow api"
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    env = {
        "SIMFLOW_DATABASE_URL": scratch_database,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # liveness never needs Temporal
        **generated_secrets(),
    }
    name = command.split()[0]
    proc = ManagedProcess(
        f"{name}-api", API_COMMANDS[command](port), ready=http_ready(url), env=env, log_path=LOG_DIR / f"{name}-api.log"
    ).start(timeout_s=60)
    try:
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server of this module's own: the worker creates its schedules there."""
    port = free_port()
    server = temporal_dev_server_process(
        port, free_port(), tmp_path_factory.mktemp("temporal") / "dev.db", log_dir=LOG_DIR / "production-start"
    ).start(timeout_s=60)
    yield f"127.0.0.1:{port}"
    server.stop()


def test_worker_starts_with_generated_secrets(scratch_database: str, temporal_address: str, tmp_path: Path) -> None:
    command = "python worker.py (compose)"
    log = tmp_path / "worker.log"
    env = {"SIMFLOW_DATABASE_URL": scratch_database, "TEMPORAL_ADDRESS": temporal_address, **generated_secrets()}
    proc = ManagedProcess(
        "worker", WORKER_COMMANDS[command], ready=lambda: b"worker.started" in log.read_bytes(), env=env, log_path=log
    ).start(timeout_s=60)
    assert proc.alive()
    proc.stop()
    assert proc.process is not None and proc.process.returncode == 0, log.read_text()
