"""All configuration, read once from the environment (prefix SIMFLOW_, plus TEMPORAL_ADDRESS)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.security import MsisdnIndex

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
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMFLOW_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/simflow.db"

    temporal_address: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['temporal']}",
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "SIMFLOW_TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = "default"
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
    http_timeout_s: float = 10.0

    jwt_secret: SecretStr = SecretStr("")
    jwt_ttl_minutes: int = 30
    bootstrap_admin_email: str = "admin@simflow.local"
    bootstrap_admin_password: SecretStr = SecretStr("")

    # --- Security (tenancy, authentication, audit, outgoing webhooks) ---
    # Key material for secrets kept at rest (TOTP seeds, webhook signing secrets) and keyed hashes.
    secrets_key: SecretStr = SecretStr("")
    refresh_ttl_days: int = 14
    login_max_failures: int = 5
    login_lock_minutes: int = 30
    password_reset_ttl_minutes: int = 60
    # Rate limits (per API process): failed logins per client IP, 2FA codes per account, top-up creations.
    rate_limit_window_s: int = 60
    rate_limit_login_failures_per_ip: int = 20
    rate_limit_otp_per_account: int = 5
    rate_limit_topups_per_principal: int = 600
    rate_limit_topups_per_line: int = 100
    api_key_touch_interval_s: int = 60
    # Webhook targets that may resolve to loopback/private addresses (local development and tests only),
    # as host names, IP addresses or CIDR networks.
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    webhook_timeout_s: float = 5.0
    webhook_retry_initial_s: float = 30.0

    snaic_callback_sla_s: int = 900
    # How long a top-up's charge (card, or CFAST on account) is retried under its key when its outcome is unknown.
    topup_charge_window_s: int = 600
    topup_submit_timeout_s: float = 30.0
    auto_topup_scan_s: int = 300
    # How often the OCS is read for the first usage of SIMs `ready_for_activation` (`first-usage-scan`).
    first_usage_scan_s: int = 900
    # A poller long-polls for up to 60 s, so its last access can be that old while it is alive.
    worker_heartbeat_stale_s: int = 90
    # The health report (`GET /api/v1/health`) is reused for this long: no round of checks per request.
    health_cache_s: float = 5.0

    # --- Deploys: SIGTERM lets work in flight finish, a little under the orchestrator's stop grace period ---
    # The worker stops polling and lets running activities finish for this long (compose: 60 s grace).
    worker_graceful_shutdown_s: float = 55.0
    # `simflow api` (uvicorn --timeout-graceful-shutdown): in-flight requests finish, a recharge waits up to
    # `topup_submit_timeout_s` for its payment outcome.
    api_graceful_shutdown_s: int = 35

    def msisdn_hash(self, msisdn: str | None) -> str | None:
        """The `MsisdnHash` search attribute of a line number (keyed by `secrets_key`), None without a number."""
        return MsisdnIndex(self.secrets_key.get_secret_value()).of(msisdn) if msisdn else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
