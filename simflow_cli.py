"""`simflow` command line: the embedded default (`simflow dev`), the worker, the API, SIM import."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import typer
from rich.console import Console

from infra.processes import (
    ROOT,
    ManagedProcess,
    http_ready,
    localstripe_process,
    simulator_process,
    temporal_dev_server_process,
)
from infra.settings import DEFAULT_PORTS, get_settings

app = typer.Typer(help="simflow — moteur d'opérations pour opérateurs mobiles en marque blanche", no_args_is_help=True)
console = Console()

VAR = ROOT / "var"


def _migrate(database_url: str) -> None:
    command = [sys.executable, "-m", "alembic", "-x", f"url={database_url}", "upgrade", "head"]
    subprocess.run(command, cwd=ROOT, check=True)  # noqa: S603 - our own interpreter and arguments


@app.command()
def dev() -> None:
    """Start the whole system on its embedded default: Temporal dev server, simulators, localstripe,
    worker and API, with demo data. Ctrl-C stops everything."""
    started = time.monotonic()
    settings = get_settings()
    logs = VAR / "logs"
    env = {"SIMFLOW_DATABASE_URL": settings.database_url}
    os.environ.update(env)
    processes: list[ManagedProcess] = []

    def stop_all(*_: object) -> None:
        for proc in reversed(processes):
            proc.stop()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        console.print("[bold]simflow[/] — démarrage de l'environnement embarqué…")
        _migrate(settings.database_url)
        console.print(f"  base de données migrée ({settings.database_url})")
        localstripe_port = DEFAULT_PORTS["localstripe"]
        to_start = [
            temporal_dev_server_process(
                DEFAULT_PORTS["temporal"], DEFAULT_PORTS["temporal_ui"], VAR / "temporal" / "dev.db", log_dir=logs
            ),
            localstripe_process(localstripe_port, log_dir=logs),
            simulator_process("cfast", DEFAULT_PORTS["cfast"], log_dir=logs),
            simulator_process(
                "snaic",
                DEFAULT_PORTS["snaic"],
                env={
                    "SNAIC_SIM_CALLBACK_URL": f"{settings.public_base_url}/api/v1/snaic/callback",
                    "SNAIC_SIM_CALLBACK_SECRET": settings.snaic_callback_secret.get_secret_value(),
                },
                log_dir=logs,
            ),
            simulator_process("ocs", DEFAULT_PORTS["ocs"], log_dir=logs),
            simulator_process(
                "stripe_proxy",
                DEFAULT_PORTS["stripe_proxy"],
                env={"STRIPE_PROXY_UPSTREAM": f"http://127.0.0.1:{localstripe_port}"},
                log_dir=logs,
            ),
        ]
        for proc in to_start:
            processes.append(proc)
            proc.start(timeout_s=120)
            console.print(f"  {proc.name} prêt")
        worker = ManagedProcess(
            "worker", [sys.executable, "worker.py"], ready=lambda: True, env=env, log_path=logs / "worker.log"
        )
        processes.append(worker.start())
        api = ManagedProcess(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(DEFAULT_PORTS["api"]),
            ],
            ready=http_ready(f"http://127.0.0.1:{DEFAULT_PORTS['api']}/openapi.json"),
            env=env,
            log_path=logs / "api.log",
        )
        processes.append(api.start(timeout_s=120))
        from infra.demo_data import load_demo_data

        summary = asyncio.run(load_demo_data(settings))
        elapsed = time.monotonic() - started
        console.print(f"\n[bold green]simflow est prêt[/] en {elapsed:.1f} s — {summary}")
        console.print(f"  Portail        http://127.0.0.1:{DEFAULT_PORTS['api']}/portal")
        console.print(f"  API (OpenAPI)  http://127.0.0.1:{DEFAULT_PORTS['api']}/docs")
        console.print(f"  Santé          http://127.0.0.1:{DEFAULT_PORTS['api']}/healthz")
        console.print(f"  Temporal UI    {settings.temporal_ui_url}")
        password = settings.bootstrap_admin_password.get_secret_value()
        console.print(f"  Connexion      {settings.bootstrap_admin_email} / {password}")
        console.print(f"  Journaux       {logs}/\nCtrl-C pour tout arrêter.")
        while all(p.alive() for p in processes):
            time.sleep(1)
        dead = [p.name for p in processes if not p.alive()]
        console.print(f"[red]arrêt : processus terminé(s) : {', '.join(dead)}[/]")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("\narrêt de simflow…")
    finally:
        stop_all()


@app.command()
def worker() -> None:
    """Run the Temporal worker."""
    from worker import main

    main()


@app.command()
def api(host: str = "127.0.0.1", port: int = DEFAULT_PORTS["api"]) -> None:
    """Run the API and portal."""
    import uvicorn

    uvicorn.run("api.app:create_app", factory=True, host=host, port=port)


if __name__ == "__main__":
    app()
