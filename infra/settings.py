"""All configuration, read once from the environment (prefix SIMFLOW_, plus TEMPORAL_ADDRESS)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    snaic_callback_secret: SecretStr = SecretStr("snaic-dev-secret")
    ocs_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['ocs']}/jsonrpc"
    ocs_tenant: str = "simflow"
    stripe_api_base: str = f"http://127.0.0.1:{DEFAULT_PORTS['stripe_proxy']}"
    stripe_secret_key: SecretStr = SecretStr("sk_test_simflow")
    stripe_webhook_secret: SecretStr = SecretStr("whsec_simflow")
    http_timeout_s: float = 10.0

    jwt_secret: SecretStr = SecretStr("dev-only-change-me-in-production-0123456789")
    jwt_ttl_minutes: int = 30
    bootstrap_admin_email: str = "admin@simflow.local"
    bootstrap_admin_password: SecretStr = SecretStr("Simflow-demo-2026!")

    snaic_callback_sla_s: int = 900
    # A poller long-polls for up to 60 s, so its last access can be that old while it is alive.
    worker_heartbeat_stale_s: int = 90


@lru_cache
def get_settings() -> Settings:
    return Settings()
