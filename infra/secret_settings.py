"""The secrets among the settings: the check the API and the worker pass before starting, and the
generated secrets of `simflow dev` and the drills.

No secret has a usable default (infra/settings.py leaves them empty). `simflow api`, `simflow worker`,
the app factory (`uvicorn api.app:create_app --factory`, the image's command) and `python worker.py`
refuse to start when a secret is missing, shorter than its minimum, or published: a value the settings once
shipped as a default, or any text written in the repository (README, compose file, tests, code…). The
refusal names each variable and never repeats a value.

`simflow dev` and the drills generate their secrets once per var/ directory (`dev-secrets.json`, readable
by the user only) and pass them to the processes they start, so the development processes go through the
same check as production ones.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SecretSetting:
    field: str
    min_length: int

    @property
    def variable(self) -> str:
        return f"SIMFLOW_{self.field.upper()}"


# HMAC and encryption keys: 32 characters at least (`secrets.token_urlsafe(32)` gives 43).
WORKER_SECRETS: tuple[SecretSetting, ...] = (
    SecretSetting("jwt_secret", 32),
    SecretSetting("secrets_key", 32),
    SecretSetting("snaic_callback_secret", 32),
    SecretSetting("stripe_webhook_secret", 32),
)
# The first platform admin's password, used by the API only; 12 characters like every staff password.
API_SECRETS: tuple[SecretSetting, ...] = (*WORKER_SECRETS, SecretSetting("bootstrap_admin_password", 12))
SECRETS_BY_PROCESS: dict[str, tuple[SecretSetting, ...]] = {"api": API_SECRETS, "worker": WORKER_SECRETS}
# Credentials of servers the development stack runs itself (the FTP of the file drops): generated with the others
# for `simflow dev` and the drills, but not required at start (in production they are the operator's servers').
DEVELOPMENT_SERVER_SECRETS: tuple[SecretSetting, ...] = (SecretSetting("ftp_password", 32),)
GENERATED_SECRETS = (*API_SECRETS, *DEVELOPMENT_SERVER_SECRETS)

# Values infra/settings.py shipped as defaults: public for good (repository history, released images).
FORMER_DEFAULTS = frozenset(
    {
        "dev-only-change-me-in-production-0123456789",
        "dev-only-secrets-key-change-me-in-production",
        "snaic-dev-secret",
        "whsec_simflow",
        "Simflow-demo-2026!",
    }
)

# What is not the repository's published text: local state (var/), environments, caches, build output, and
# local dotfiles (a developer's `.env` or IDE settings hold real secrets). Published dot folders are read.
_NOT_PUBLISHED_DIRS = frozenset({"var", "node_modules", "__pycache__", "build", "dist"})
_PUBLISHED_DOT_DIRS = frozenset({".ci", ".github"})
_PUBLISHED_DOTFILE_SUFFIXES = (".example", ".sample", ".template")
_MAX_FILE_BYTES = 8 * 1024 * 1024

DEV_SECRETS_FILE = "dev-secrets.json"


class UnsafeSecrets(RuntimeError):
    """A process was asked to start with a missing, short or published secret."""

    def __init__(self, process: str, problems: dict[str, str]) -> None:
        self.variables = list(problems)
        lines = "\n".join(f"  {variable} : {reason}" for variable, reason in problems.items())
        super().__init__(
            f"simflow {process} refuse de démarrer, secret(s) non sûr(s) :\n{lines}\n"
            "Générez chaque secret, par exemple : python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def _published_files(root: Path) -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [
            d
            for d in subdirectories
            if (d in _PUBLISHED_DOT_DIRS or not d.startswith("."))
            and d not in _NOT_PUBLISHED_DIRS
            and not d.endswith(".egg-info")
        ]
        for name in files:
            if not name.startswith(".") or name.endswith(_PUBLISHED_DOTFILE_SUFFIXES):
                yield Path(directory, name)


@lru_cache(maxsize=1)
def published_text(root: Path = ROOT) -> str:
    """Every text of the repository (or of the image's application tree), read once per process."""
    if not (root / "pyproject.toml").is_file():  # not a source tree (e.g. site-packages): nothing to read
        return ""
    parts = []
    for path in _published_files(root):
        try:
            if path.stat().st_size <= _MAX_FILE_BYTES:
                parts.append(path.read_bytes().decode("utf-8", errors="ignore"))
        except OSError:
            continue
    return "\n\0\n".join(parts)


def _problem(secret: SecretSetting, value: str) -> str | None:
    if not value:
        return "absent"
    if len(value) < secret.min_length:
        return f"trop court ({len(value)} caractères, {secret.min_length} au moins)"
    if value in FORMER_DEFAULTS:
        return "ancienne valeur par défaut, publiée"
    if value in published_text():
        return "valeur écrite dans le dépôt, publiée"
    return None


def unsafe_secrets(settings: Settings, which: Sequence[SecretSetting] = API_SECRETS) -> dict[str, str]:
    """{variable: reason} for each unsafe secret among `which`, in their order."""
    problems = {}
    for secret in which:
        value: SecretStr = getattr(settings, secret.field)
        problem = _problem(secret, value.get_secret_value())
        if problem is not None:
            problems[secret.variable] = problem
    return problems


def require_safe_secrets(settings: Settings, process: Literal["api", "worker"]) -> None:
    problems = unsafe_secrets(settings, SECRETS_BY_PROCESS[process])
    if problems:
        raise UnsafeSecrets(process, problems)


def development_secrets(var_dir: Path) -> dict[str, str]:
    """The generated secrets of a var/ directory: created on first use, the same afterwards (sessions, TOTP
    seeds and webhook secrets encrypted with them stay readable across restarts)."""
    path = var_dir / DEV_SECRETS_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    changed = False
    for secret in GENERATED_SECRETS:
        value = stored.get(secret.field)
        if not isinstance(value, str) or _problem(secret, value) is not None:
            stored[secret.field] = _generate(secret)
            changed = True
    if changed:
        var_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(stored, out, indent=2)
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    return {secret.field: stored[secret.field] for secret in GENERATED_SECRETS}


def _generate(secret: SecretSetting) -> str:
    if secret.field == "bootstrap_admin_password":
        # Printed at start and typed by hand: satisfies the staff password rule (cases, digit, symbol).
        return f"Dev-{secrets.token_urlsafe(12)}-7!"
    return secrets.token_urlsafe(32)


def with_development_secrets(settings: Settings, var_dir: Path) -> Settings:
    """`settings` with the var/ directory's generated secrets where none was set explicitly."""
    generated = development_secrets(var_dir)
    chosen = {field: SecretStr(value) for field, value in generated.items() if field not in settings.model_fields_set}
    return settings.model_copy(update=chosen)


def with_generated_secrets(settings: Settings) -> Settings:
    """`settings` with fresh random secrets, for a scratch stack (drills, benchmark): its API and workers never
    run with a published default, and nothing is kept on disk."""
    return settings.model_copy(update={secret.field: SecretStr(_generate(secret)) for secret in GENERATED_SECRETS})
