"""Settings from files (`SIMFLOW_<NAME>_FILE`), the way compose and Kubernetes hand secrets to a container, and
the database password kept apart from the database URL."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from infra.secret_settings import require_safe_secrets
from infra.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SIMFLOW_") or name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_secret_comes_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = secrets.token_urlsafe(32)
    # Files written by `echo`, an editor or a secret store end with a newline: it is not part of the secret.
    monkeypatch.setenv("SIMFLOW_JWT_SECRET_FILE", write(tmp_path / "jwt", value + "\n"))
    settings = Settings()
    assert settings.jwt_secret.get_secret_value() == value


def test_every_secret_of_a_process_from_files_passes_the_start_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {}
    for field in ("jwt_secret", "secrets_key", "snaic_callback_secret", "stripe_webhook_secret"):
        values[field] = secrets.token_urlsafe(32)
        monkeypatch.setenv(f"SIMFLOW_{field.upper()}_FILE", write(tmp_path / field, values[field]))
    monkeypatch.setenv("SIMFLOW_BOOTSTRAP_ADMIN_PASSWORD_FILE", write(tmp_path / "admin", secrets.token_urlsafe(16)))
    settings = Settings()
    require_safe_secrets(settings, "api")  # raises UnsafeSecrets otherwise
    assert {field: getattr(settings, field).get_secret_value() for field in values} == values


def test_plain_settings_and_aliases_come_from_files_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS_FILE", write(tmp_path / "address", "temporal-frontend:7233\n"))
    monkeypatch.setenv("SIMFLOW_DB_POOL_SIZE_FILE", write(tmp_path / "pool", "7"))
    settings = Settings()
    assert settings.temporal_address == "temporal-frontend:7233"
    assert settings.db_pool_size == 7


def test_a_variable_set_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMFLOW_JWT_SECRET", secrets.token_urlsafe(32))
    monkeypatch.setenv("SIMFLOW_JWT_SECRET_FILE", write(tmp_path / "jwt", secrets.token_urlsafe(32)))
    with pytest.raises(ValueError, match="SIMFLOW_JWT_SECRET and SIMFLOW_JWT_SECRET_FILE"):
        Settings()


def test_a_missing_file_is_refused_with_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMFLOW_SECRETS_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="SIMFLOW_SECRETS_KEY_FILE: cannot read"):
        Settings()


def test_the_database_password_joins_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "p@ss:w/rd?" + secrets.token_urlsafe(16)  # not URL-safe: it must be encoded, not pasted
    monkeypatch.setenv("SIMFLOW_DATABASE_URL", "postgresql+asyncpg://simflow_app@postgresql:5432/simflow")
    monkeypatch.setenv("SIMFLOW_DATABASE_PASSWORD_FILE", write(tmp_path / "db", password + "\n"))
    url = make_url(Settings().database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "simflow_app",
        password,
        "postgresql",
        5432,
        "simflow",
    )


def test_without_a_database_password_the_url_is_kept() -> None:
    assert Settings(database_url="sqlite+aiosqlite:///var/x.db").database_url == "sqlite+aiosqlite:///var/x.db"


def test_a_bad_value_in_a_file_is_a_validation_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMFLOW_DB_POOL_SIZE_FILE", write(tmp_path / "pool", "many"))
    with pytest.raises(ValidationError):
        Settings()
