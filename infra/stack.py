"""The whole system as child processes: Temporal dev server, localstripe and its fault proxy, the CFAST,
SNAIC, OCS and SMS-gateway simulators, the mail sink, the FTP server of the file drops, the worker and the API.
Used by `simflow dev` (fixed ports, persistent files) and by the crash drill and benchmark (free ports, a scratch
folder). Its secrets are generated once per var/ directory (infra/secret_settings.py) and passed to the worker, the
API, the SNAIC simulator and the FTP server."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from infra.processes import (
    ROOT,
    ManagedProcess,
    free_port,
    ftp_server_process,
    http_ready,
    localstripe_process,
    simulator_process,
    smtp_sink_process,
    temporal_dev_server_process,
)
from infra.secret_settings import API_SECRETS, with_development_secrets
from infra.settings import DEFAULT_PORTS, Settings


def migrate(database_url: str) -> None:
    command = [sys.executable, "-m", "alembic", "-x", f"url={database_url}", "upgrade", "head"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)  # noqa: S603 - our own interpreter


@dataclass
class Stack:
    var_dir: Path
    ports: dict[str, int]
    database_url: str
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @classmethod
    def embedded_default(cls, database_url: str) -> Stack:
        return cls(var_dir=ROOT / "var", ports=dict(DEFAULT_PORTS), database_url=database_url)

    @classmethod
    def scratch(cls, var_dir: Path) -> Stack:
        return cls(
            var_dir=var_dir,
            ports={name: free_port() for name in DEFAULT_PORTS},
            database_url=f"sqlite+aiosqlite:///{var_dir / 'simflow.db'}",
        )

    @property
    def logs(self) -> Path:
        return self.var_dir / "logs"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def settings(self, base: Settings | None = None) -> Settings:
        """`base` pointed at this stack, with the var/ directory's generated secrets unless `base` sets them
        (scratch stacks set theirs: see `with_generated_secrets`)."""
        base = with_development_secrets(base or Settings(), self.var_dir)
        return base.model_copy(
            update={
                "database_url": self.database_url,
                "temporal_address": f"127.0.0.1:{self.ports['temporal']}",
                "temporal_ui_url": self.url("temporal_ui"),
                "public_base_url": self.url("api"),
                "cfast_url": self.url("cfast"),
                "snaic_url": self.url("snaic"),
                "ocs_url": f"{self.url('ocs')}/jsonrpc",
                "stripe_api_base": self.url("stripe_proxy"),
                "smtp_host": "127.0.0.1",
                "smtp_port": self.ports["smtp"],
                "sms_gateway_url": self.url("sms"),
                "ftp_host": "127.0.0.1",
                "ftp_port": self.ports["ftp"],
                "stripe_js_url": f"{self.url('localstripe')}/js.stripe.com/v3/",
            }
        )

    def environment(self, settings: Settings) -> dict[str, str]:
        """The variables that point a worker or API process at this stack, its secrets included."""
        secrets = {secret.variable: getattr(settings, secret.field).get_secret_value() for secret in API_SECRETS}
        return {
            **secrets,
            "SIMFLOW_DATABASE_URL": settings.database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "SIMFLOW_TEMPORAL_UI_URL": settings.temporal_ui_url,
            "SIMFLOW_PUBLIC_BASE_URL": settings.public_base_url,
            "SIMFLOW_CFAST_URL": settings.cfast_url,
            "SIMFLOW_SNAIC_URL": settings.snaic_url,
            "SIMFLOW_OCS_URL": settings.ocs_url,
            "SIMFLOW_STRIPE_API_BASE": settings.stripe_api_base,
            "SIMFLOW_SMTP_HOST": settings.smtp_host,
            "SIMFLOW_SMTP_PORT": str(settings.smtp_port),
            "SIMFLOW_SMS_GATEWAY_URL": settings.sms_gateway_url,
            "SIMFLOW_FTP_HOST": settings.ftp_host,
            "SIMFLOW_FTP_PORT": str(settings.ftp_port),
            "SIMFLOW_FTP_USERNAME": settings.ftp_username,
            "SIMFLOW_FTP_PASSWORD": settings.ftp_password.get_secret_value(),
            "SIMFLOW_STRIPE_JS_URL": settings.stripe_js_url,
            "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": settings.bootstrap_admin_email,
            "SIMFLOW_STRIPE_SECRET_KEY": settings.stripe_secret_key.get_secret_value(),
            "SIMFLOW_SNAIC_CALLBACK_SLA_S": str(settings.snaic_callback_sla_s),
        }

    def infrastructure(self, settings: Settings) -> list[ManagedProcess]:
        return [
            self.temporal_process(),
            localstripe_process(self.ports["localstripe"], log_dir=self.logs),
            simulator_process("cfast", self.ports["cfast"], log_dir=self.logs),
            simulator_process(
                "snaic",
                self.ports["snaic"],
                env={
                    "SNAIC_SIM_CALLBACK_URL": f"{settings.public_base_url}/api/v1/snaic/callback",
                    "SNAIC_SIM_CALLBACK_SECRET": settings.snaic_callback_secret.get_secret_value(),
                },
                log_dir=self.logs,
            ),
            simulator_process("ocs", self.ports["ocs"], log_dir=self.logs),
            simulator_process(
                "stripe_proxy",
                self.ports["stripe_proxy"],
                env={"STRIPE_PROXY_UPSTREAM": self.url("localstripe")},
                log_dir=self.logs,
            ),
            simulator_process("sms", self.ports["sms"], log_dir=self.logs),
            smtp_sink_process(self.ports["smtp_sink"], self.ports["smtp"], log_dir=self.logs),
            ftp_server_process(
                self.ports["ftp"],
                self.var_dir / "ftp",
                settings.ftp_username,
                settings.ftp_password.get_secret_value(),
                log_dir=self.logs,
            ),
        ]

    def temporal_process(self) -> ManagedProcess:
        return temporal_dev_server_process(
            self.ports["temporal"], self.ports["temporal_ui"], self.var_dir / "temporal" / "dev.db", log_dir=self.logs
        )

    def worker_process(self, settings: Settings, name: str = "worker") -> ManagedProcess:
        return ManagedProcess(
            name,
            [sys.executable, "worker.py"],
            ready=lambda: True,
            env=self.environment(settings),
            log_path=self.logs / f"{name}.log",
        )

    def api_process(self, settings: Settings, name: str = "api") -> ManagedProcess:
        """An API process listening on `self.ports[name]` (several APIs: one port entry each)."""
        port = str(self.ports.setdefault(name, free_port()))
        return ManagedProcess(
            name,
            [
                *(sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1"),
                *("--port", port, "--timeout-graceful-shutdown", str(settings.api_graceful_shutdown_s)),
            ],
            ready=http_ready(f"{self.url(name)}/healthz"),
            env=self.environment(settings),
            log_path=self.logs / f"{name}.log",
        )

    def start(self, settings: Settings, on_ready: object = None) -> None:
        """Migrates, then starts every process in dependency order (each waits for the previous)."""
        migrate(self.database_url)
        for proc in [*self.infrastructure(settings), self.worker_process(settings), self.api_process(settings)]:
            self.processes[proc.name] = proc.start(timeout_s=120)
            if callable(on_ready):
                on_ready(proc.name)

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
