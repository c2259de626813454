"""All configuration, read once from the environment (prefix SIMFLOW_, plus TEMPORAL_ADDRESS).

Any setting can instead come from a file: `SIMFLOW_<NAME>_FILE=/run/secrets/…` reads the file's content
(one trailing newline dropped), as the official images do for `POSTGRES_PASSWORD_FILE`. Compose and
Kubernetes mount secrets as files, so they stay out of the process environment (`docker inspect`,
`/proc/<pid>/environ`, crash reports). Setting both `SIMFLOW_<NAME>` and `SIMFLOW_<NAME>_FILE` is refused.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from domain.security import MsisdnIndex

FILE_SUFFIX = "_FILE"


def variable_names(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from (its aliases, or SIMFLOW_<NAME>)."""
    choices = getattr(field.validation_alias, "choices", None)
    return [str(c).upper() for c in choices] if choices else [f"SIMFLOW_{name}".upper()]


class FileVariables(PydanticBaseSettingsSource):
    """`SIMFLOW_<NAME>_FILE`: the setting's value is the content of that file."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for variable in variable_names(field_name, field):
            path = os.environ.get(variable + FILE_SUFFIX)
            if path:
                if os.environ.get(variable):
                    raise ValueError(f"{variable} and {variable}{FILE_SUFFIX} are both set: keep one")
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except OSError as exc:
                    raise ValueError(f"{variable}{FILE_SUFFIX}: cannot read {path} ({exc.strerror})") from None
                # A field read through aliases takes its value under an alias, as from the environment.
                key = variable if getattr(field.validation_alias, "choices", None) else field_name
                return text.removesuffix("\n").removesuffix("\r"), key, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


# Ports of the embedded default (make run); tests pick free ports instead.
DEFAULT_PORTS = {
    "api": 8000,
    "temporal": 7233,
    "temporal_ui": 8233,
    "cfast": 8101,
    "snaic": 8102,
    "ocs": 8103,
    "stripe_proxy": 8104,
    "localstripe": 8420,
    "smtp_sink": 8105,  # the development mail sink's page (GET /, GET /messages)
    "smtp": 8025,  # … and its SMTP port
    "sms": 8106,
    "ftp": 8021,  # the development FTP server of the operator's file drops (pyftpdlib)
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMFLOW_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, FileVariables(settings_cls), dotenv_settings, file_secret_settings

    database_url: str = "sqlite+aiosqlite:///var/simflow.db"
    # When set, replaces the password of `database_url`: the URL is configuration, the password a secret
    # (`SIMFLOW_DATABASE_PASSWORD_FILE` in production).
    database_password: SecretStr = SecretStr("")
    # Connections each process may hold on PostgreSQL: pool_size + max_overflow. The production budget
    # (README, docker-compose.yml) multiplies it by the replica counts.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # The migration one-shot (`python -m infra.migrate`) waits this long for the database, with backoff, then
    # fails with exit code 2 and the reason.
    migrate_wait_s: float = 120.0
    # Each API process, at start, waits this long for the database (same backoff) before creating the bootstrap
    # admin, then fails naming the server and the last error: a replica restarted while PostgreSQL restarts.
    api_database_wait_s: float = 60.0

    temporal_address: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['temporal']}",
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "SIMFLOW_TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = "default"
    # TLS (mTLS client certificate), API key and Temporal Cloud come from the SDK's environment configuration
    # (`temporalio.envconfig`: TEMPORAL_TLS_*, TEMPORAL_API_KEY, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE),
    # read by infra/temporal.py; the address and the namespace above win over the profile's.
    temporal_ui_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['temporal_ui']}"
    task_queue: str = "simflow"

    public_base_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['api']}"

    cfast_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['cfast']}"
    cfast_health_path: str = "/_sim/health"
    snaic_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['snaic']}"
    snaic_health_path: str = "/_sim/health"
    # Secrets have no usable default: the API and the worker refuse to start without safe values
    # (infra/secret_settings.py); `simflow dev` and the tests generate their own.
    snaic_callback_secret: SecretStr = SecretStr("")
    ocs_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['ocs']}/jsonrpc"
    ocs_tenant: str = "simflow"
    stripe_api_base: str = f"http://127.0.0.1:{DEFAULT_PORTS['stripe_proxy']}"
    stripe_secret_key: SecretStr = SecretStr("sk_test_simflow")
    stripe_webhook_secret: SecretStr = SecretStr("")
    # Stripe.js as the portal's card form loads it, and the publishable key it is given. Production: Stripe's
    # own script. Development and tests: localstripe's stand-in (`{localstripe}/js.stripe.com/v3/`), which
    # confirms SetupIntents against that localstripe.
    stripe_js_url: str = "https://js.stripe.com/v3/"
    stripe_publishable_key: str = "pk_test_simflow"
    http_timeout_s: float = 10.0

    jwt_secret: SecretStr = SecretStr("")
    jwt_ttl_minutes: int = 30
    bootstrap_admin_email: str = "admin@simflow.local"
    bootstrap_admin_password: SecretStr = SecretStr("")

    # --- Security (tenancy, authentication, audit, outgoing webhooks) ---
    # Key material for secrets kept at rest (TOTP seeds, webhook signing secrets) and keyed hashes.
    secrets_key: SecretStr = SecretStr("")
    refresh_ttl_days: int = 14
    # Wrong passwords lock one (account, client address) pair: `login_max_failures` within
    # `login_lock_minutes` refuse that address for that account until the oldest of them is that old.
    login_max_failures: int = 5
    login_lock_minutes: int = 30
    # On one account from any address: beyond this many failures within `login_lock_minutes`, each attempt
    # waits (429) 1 s, 2 s, 4 s… after the previous failure, at most `login_account_max_delay_s`.
    login_account_free_failures: int = 10
    login_account_max_delay_s: int = 60
    password_reset_ttl_minutes: int = 60
    # Rate limits (kept in the database, shared by every API process): failed logins per client IP, password
    # reset requests per client IP (per 15 windows), 2FA codes per account, top-up creations.
    rate_limit_window_s: int = 60
    rate_limit_login_failures_per_ip: int = 20
    rate_limit_password_resets_per_ip: int = 10
    rate_limit_otp_per_account: int = 5
    rate_limit_topups_per_principal: int = 600
    rate_limit_topups_per_line: int = 100
    api_key_touch_interval_s: int = 60
    # Request bodies are refused beyond these sizes (413) before authentication and parsing: every route,
    # and the routes that take a file (`api.limits.UPLOAD_PATHS`, files of at most 5 MiB plus the form).
    max_request_body_bytes: int = 1024 * 1024
    max_upload_body_bytes: int = 6 * 1024 * 1024
    # Webhook targets that may resolve to loopback/private addresses (local development and tests only),
    # as host names, IP addresses or CIDR networks.
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    webhook_timeout_s: float = 5.0
    webhook_retry_initial_s: float = 30.0

    # --- Outgoing mail and SMS (the outbox relay, workflows/outbox_relay.py) ---
    # SMTP server the relay sends through: the development sink by default (`simflow dev`, tests).
    # `smtp_security`: "none", "starttls" (STARTTLS after connecting, port 587) or "tls" (implicit TLS, 465).
    # The password is a secret: `SIMFLOW_SMTP_PASSWORD_FILE` in production.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = DEFAULT_PORTS["smtp"]
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_s: float = 30.0
    # The From of every mail; its domain also names the stable Message-ID of each outbox row.
    mail_sender: str = "simflow <no-reply@simflow.local>"
    sms_gateway_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['sms']}"
    sms_sender: str = "SIMFLOW"
    # The relay sends at most `outbox_batch_size` rows per pass and waits `outbox_poll_s` when nothing is left;
    # a claimed row is reserved for `outbox_lease_s` (longer than one send), then another relay may take it.
    outbox_poll_s: float = 5.0
    outbox_batch_size: int = 50
    outbox_lease_s: int = 300

    # --- The operator FTP of the integrators' file drops (seed 002 §8: AccountStatus, CDRs, SIM orders) ---
    # `simflow dev` and the tests run a local pyftpdlib server with a generated password. The password is a secret:
    # `SIMFLOW_FTP_PASSWORD_FILE` in production.
    ftp_host: str = "127.0.0.1"
    ftp_port: int = DEFAULT_PORTS["ftp"]
    ftp_username: str = "simflow"
    ftp_password: SecretStr = SecretStr("")
    ftp_timeout_s: float = 30.0

    snaic_callback_sla_s: int = 900
    # How long a top-up's charge (card, or CFAST on account) is retried under its key when its outcome is unknown.
    topup_charge_window_s: int = 600
    topup_submit_timeout_s: float = 30.0
    auto_topup_scan_s: int = 300
    # How often the OCS is read for the first usage of SIMs `ready_for_activation` (`first-usage-scan`).
    first_usage_scan_s: int = 900
    renewal_reconcile_s: int = 86400  # the renewal reconciler's Schedule: daily
    # A poller long-polls for up to 60 s, so its last access can be that old while it is alive.
    worker_heartbeat_stale_s: int = 90
    # The health report (`GET /api/v1/health`) is reused for this long: no round of checks per request.
    health_cache_s: float = 5.0

    @model_validator(mode="after")
    def _database_password_into_url(self) -> Settings:
        password = self.database_password.get_secret_value()
        if password:
            url = make_url(self.database_url).set(password=password)
            self.database_url = url.render_as_string(hide_password=False)
        return self

    # --- Deploys: SIGTERM lets work in flight finish, a little under the orchestrator's stop grace period ---
    # The worker stops polling and lets running activities finish for this long (compose: 60 s grace).
    worker_graceful_shutdown_s: float = 55.0
    # `simflow api` (uvicorn --timeout-graceful-shutdown): in-flight requests finish, a recharge waits up to
    # `topup_submit_timeout_s` for its payment outcome.
    api_graceful_shutdown_s: int = 35

    # --- Integrator onboarding (workflows/onboarding.py, seed 002) ---
    # Platform staff mailbox for reminders of staff steps, the platform SLA alert and transfers to refund.
    onboarding_staff_email: str = "onboarding@simflow.local"
    onboarding_reminder_after_s: int = 3 * 24 * 3600
    onboarding_max_reminders: int = 3
    onboarding_platform_sla_s: int = 14 * 24 * 3600
    onboarding_sim_batch_size: int = 10
    # How long the first-login link of the integrator's staff invitation stays valid.
    onboarding_invitation_ttl_s: int = 7 * 24 * 3600

    def msisdn_hash(self, msisdn: str | None) -> str | None:
        """The `MsisdnHash` search attribute of a line number (keyed by `secrets_key`), None without a number."""
        return MsisdnIndex(self.secrets_key.get_secret_value()).of(msisdn) if msisdn else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
