"""The secrets check the API and the worker run before starting, and the generated secrets of `simflow dev`.

Per variable: missing, too short, a former default or any value written in the repository is refused and
named; a generated value passes. `simflow dev` and the drills (infra/stack.py) generate their secrets once
per var/ directory, keep them in a file only the user can read, and hand them to the API and the worker
they start: those pass the same check."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest

from api.app import create_app
from infra.secret_settings import (
    API_SECRETS,
    WORKER_SECRETS,
    UnsafeSecrets,
    published_text,
    require_safe_secrets,
    unsafe_secrets,
)
from infra.settings import Settings
from infra.stack import Stack
from tests.conftest import TEST_SECRETS

ROOT = Path(__file__).resolve().parents[2]

FORMER_DEFAULTS = {
    "jwt_secret": "dev-only-change-me-in-production-0123456789",
    "secrets_key": "dev-only-secrets-key-change-me-in-production",
    "snaic_callback_secret": "snaic-dev-secret",
    "stripe_webhook_secret": "whsec_simflow",
    "bootstrap_admin_password": "Simflow-demo-2026!",
}


def good_settings(**overrides: str) -> Settings:
    return Settings(**{**TEST_SECRETS, "bootstrap_admin_password": f"Adm-{secrets.token_urlsafe(12)}-9!", **overrides})


def a_line_of(path: Path, min_length: int) -> str:
    return next(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) >= 60)[
        : max(min_length, 40)
    ]


def test_secret_variables() -> None:
    assert [s.variable for s in WORKER_SECRETS] == [
        "SIMFLOW_JWT_SECRET",
        "SIMFLOW_SECRETS_KEY",
        "SIMFLOW_SNAIC_CALLBACK_SECRET",
        "SIMFLOW_STRIPE_WEBHOOK_SECRET",
    ]
    assert [s.variable for s in API_SECRETS] == [
        *(s.variable for s in WORKER_SECRETS),
        "SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD",
    ]


def test_generated_secrets_pass() -> None:
    assert unsafe_secrets(good_settings(), API_SECRETS) == {}
    require_safe_secrets(good_settings(), "api")


def test_no_secret_is_shipped_as_a_default() -> None:
    problems = unsafe_secrets(Settings(), API_SECRETS)
    assert set(problems) == {s.variable for s in API_SECRETS}


@pytest.mark.parametrize("secret", API_SECRETS, ids=lambda s: s.variable)
def test_each_unsafe_kind_is_named(secret: object) -> None:
    from infra.secret_settings import SecretSetting

    assert isinstance(secret, SecretSetting)
    kinds = {
        "missing": "",
        "too short": "A1!" + "x" * (secret.min_length - 4),
        "former default": FORMER_DEFAULTS[secret.field],
        "in the README": a_line_of(ROOT / "README.md", secret.min_length),
        "in the compose file": a_line_of(ROOT / "docker-compose.yml", secret.min_length),
        "in a test": a_line_of(Path(__file__), secret.min_length),
    }
    for kind, value in kinds.items():
        problems = unsafe_secrets(good_settings(**{secret.field: value}), API_SECRETS)
        assert list(problems) == [secret.variable], (kind, problems)
        assert value == "" or value not in problems[secret.variable], "the message never repeats the secret"


def test_published_text_is_the_tree_without_local_state(tmp_path: Path) -> None:
    """What the repository publishes is read (code, docs, CI scripts, examples); what stays on one machine is
    not (var/, a developer's .env, caches), so a real secret kept there is not taken for a published one."""
    values = {name: secrets.token_urlsafe(24) for name in ("readme", "ci", "example", "var", "env", "venv", "idea")}
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    files = {
        "readme": "README.md",
        "ci": ".ci/run",
        "example": ".env.example",
        "var": "var/dev-secrets.json",
        "env": ".env",
        "venv": ".venv/lib/site.py",
        "idea": ".idea/workspace.xml",
    }
    for name, relative in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(f"KEY={values[name]}\n")
    text = published_text(tmp_path)
    assert {name for name, value in values.items() if value in text} == {"readme", "ci", "example"}


def test_refusal_names_every_variable_and_never_a_value() -> None:
    bad = good_settings(jwt_secret=FORMER_DEFAULTS["jwt_secret"], secrets_key="short")
    with pytest.raises(UnsafeSecrets) as refused:
        require_safe_secrets(bad, "worker")
    message = str(refused.value)
    assert "SIMFLOW_JWT_SECRET" in message and "SIMFLOW_SECRETS_KEY" in message
    assert "SIMFLOW_SNAIC_CALLBACK_SECRET" not in message
    assert FORMER_DEFAULTS["jwt_secret"] not in message
    assert refused.value.variables == ["SIMFLOW_JWT_SECRET", "SIMFLOW_SECRETS_KEY"]


def test_the_worker_does_not_need_the_bootstrap_password() -> None:
    require_safe_secrets(good_settings(bootstrap_admin_password=""), "worker")
    with pytest.raises(UnsafeSecrets, match="SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD"):
        require_safe_secrets(good_settings(bootstrap_admin_password=""), "api")


def test_the_app_factory_refuses_unsafe_settings() -> None:
    with pytest.raises(UnsafeSecrets, match="SIMFLOW_SNAIC_CALLBACK_SECRET"):
        create_app(good_settings(snaic_callback_secret=FORMER_DEFAULTS["snaic_callback_secret"]))


# --- simflow dev and the drills ---------------------------------------------------------------------------------


def test_development_secrets_are_generated_per_var_directory(tmp_path: Path) -> None:
    first = Stack.scratch(tmp_path / "a").settings(Settings())
    again = Stack.scratch(tmp_path / "a").settings(Settings())
    other = Stack.scratch(tmp_path / "b").settings(Settings())
    assert unsafe_secrets(first, API_SECRETS) == {}
    for secret in API_SECRETS:
        value = getattr(first, secret.field).get_secret_value()
        assert getattr(again, secret.field).get_secret_value() == value, "kept across restarts"
        assert getattr(other, secret.field).get_secret_value() != value, "another var/ has its own"
    stored = tmp_path / "a" / "dev-secrets.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_development_keeps_a_secret_set_explicitly(tmp_path: Path) -> None:
    chosen = secrets.token_urlsafe(32)
    settings = Stack.scratch(tmp_path).settings(Settings(jwt_secret=chosen))
    assert settings.jwt_secret.get_secret_value() == chosen


def test_the_processes_of_the_stack_receive_its_secrets(tmp_path: Path) -> None:
    stack = Stack.scratch(tmp_path)
    settings = stack.settings(Settings())
    for proc in (stack.api_process(settings), stack.worker_process(settings)):
        for secret in API_SECRETS:
            assert proc.env[secret.variable] == getattr(settings, secret.field).get_secret_value(), proc.name
    snaic = next(p for p in stack.infrastructure(settings) if p.name == "snaic")
    assert snaic.env["SNAIC_SIM_CALLBACK_SECRET"] == settings.snaic_callback_secret.get_secret_value()
