"""`simflow` command line: the embedded default (`simflow dev`), the worker, the API, SIM import."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from infra.settings import DEFAULT_PORTS, get_settings
from infra.stack import Stack

app = typer.Typer(help="simflow — moteur d'opérations pour opérateurs mobiles en marque blanche", no_args_is_help=True)
console = Console()
# Ctrl-C, `kill`/`make` stopping us, the terminal closed: each stops the whole stack.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@app.command()
def dev() -> None:
    """Start the whole system on its embedded default: Temporal dev server, simulators, localstripe,
    worker and API, with demo data. Ctrl-C stops everything."""
    from infra.secret_settings import DEV_SECRETS_FILE

    started = time.monotonic()
    base = get_settings()
    stack = Stack.embedded_default(base.database_url)
    secrets_file = stack.var_dir / DEV_SECRETS_FILE
    if (stack.var_dir / "simflow.db").exists() and not secrets_file.exists():
        console.print(
            f"[red]{stack.var_dir} a été créé avec les anciens secrets publiés (comptes, sessions, graines TOTP) : "
            "supprimez-le (make clean) puis relancez make run.[/]"
        )
        raise typer.Exit(1)
    settings = stack.settings(base)

    def on_signal(signum: int, _frame: object) -> None:
        # Once: make forwards its SIGTERM to us on top of the process group's, and an impatient second Ctrl-C
        # must not interrupt the stop below (that would leave the stack's processes running, orphaned).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        console.print("[bold]simflow[/] — démarrage de l'environnement embarqué…")
        stack.start(settings, on_ready=lambda name: console.print(f"  {name} prêt"))
        from api.demo_data import DEMO_END_USER_EMAIL, demo_end_user_password, load_demo_data

        summary = asyncio.run(load_demo_data(settings))
        elapsed = time.monotonic() - started
        api_url = stack.url("api")
        console.print(f"\n[bold green]simflow est prêt[/] en {elapsed:.1f} s — {summary}")
        console.print(f"  Portail        {api_url}/portal")
        console.print(f"  API (OpenAPI)  {api_url}/docs")
        console.print(f"  Santé          {api_url}/healthz (détail : {api_url}/api/v1/health, administrateur)")
        console.print(f"  Temporal UI    {settings.temporal_ui_url}")
        console.print(f"  Mails envoyés  {stack.url('smtp_sink')}/ (SMTP 127.0.0.1:{settings.smtp_port})")
        console.print(
            f"  FTP des dépôts ftp://127.0.0.1:{settings.ftp_port} ({settings.ftp_username}, {stack.var_dir}/ftp/)"
        )
        password = settings.bootstrap_admin_password.get_secret_value()
        console.print(f"  Connexion      {settings.bootstrap_admin_email} / {password}", markup=False)
        end_user = f"{DEMO_END_USER_EMAIL} / {demo_end_user_password(settings)}"
        console.print(f"  Espace client  {api_url}/self-care — {end_user}", markup=False)
        console.print(f"  Secrets        {secrets_file} (générés pour ce répertoire)")
        console.print(f"  Journaux       {stack.logs}/\nCtrl-C pour tout arrêter.")
        while all(p.alive() for p in stack.processes.values()):
            time.sleep(1)
        dead = [p.name for p in stack.processes.values() if not p.alive()]
        console.print(f"[red]arrêt : processus terminé(s) : {', '.join(dead)}[/]")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # the terminal or the pipe may be gone already
            console.print("\narrêt de simflow…")
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()


def refuse_unsafe_secrets(process: Literal["api", "worker"]) -> None:
    """Exit code 1 with the list of unsafe secrets (variables only, never a value)."""
    from infra.secret_settings import UnsafeSecrets, require_safe_secrets

    try:
        require_safe_secrets(get_settings(), process)
    except UnsafeSecrets as refused:
        Console(stderr=True, soft_wrap=True).print(str(refused), style="red", markup=False, highlight=False)
        raise typer.Exit(code=1) from None


@app.command()
def worker() -> None:
    """Run the Temporal worker (refuses a missing, short or published secret)."""
    refuse_unsafe_secrets("worker")
    from worker import main

    main()


@app.command()
def api(host: str = "127.0.0.1", port: int = DEFAULT_PORTS["api"]) -> None:
    """Run the API and portal (refuses a missing, short or published secret)."""
    refuse_unsafe_secrets("api")
    import uvicorn

    # SIGTERM: stop accepting, let in-flight requests (a recharge waiting on its payment) finish first.
    graceful_s = get_settings().api_graceful_shutdown_s
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, timeout_graceful_shutdown=graceful_s)


@app.command()
def migrate() -> None:
    """Bring the database schema to head: waits for the database (bounded, SIMFLOW_MIGRATE_WAIT_S), applies
    the missing migrations once (a run at head changes nothing). Exit 2: database unreachable."""
    from infra.migrate import main

    main()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context, scenario: str = typer.Argument("topup", help="topup | renewal-storm")) -> None:
    """Benchmark against a bare Temporal workflow (same activity count): `topup`, the end-to-end top-up;
    `renewal-storm`, N subscriptions due at the same instant (`--subscriptions N`, default 10,000)."""
    if scenario == "topup":
        from bench.topup_bench import main
    elif scenario == "renewal-storm":
        from bench.renewal_storm import main
    else:
        raise typer.BadParameter("'topup' or 'renewal-storm'", param_hint="scenario")
    main(list(ctx.args))


@app.command("audit-verify")
def audit_verify(
    database_url: str = typer.Option(None, help="Database URL (default: SIMFLOW_DATABASE_URL)"),
) -> None:
    """Verify the audit log's hash chain: every row, in order, and the chain head. Exit code 1 if broken."""
    import asyncio

    from domain.audit import verify_chain
    from infra.db import create_engine, create_sessionmaker
    from infra.settings import get_settings

    async def run() -> tuple[bool, int, int | None, str | None]:
        engine = create_engine(database_url or get_settings().database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                report = await verify_chain(session)
        finally:
            await engine.dispose()
        return report.ok, report.rows, report.first_bad_id, report.reason

    ok, rows, bad_id, reason = asyncio.run(run())
    if ok:
        typer.echo(f"audit log OK: {rows} rows, chain intact")
        return
    typer.echo(f"audit log BROKEN after {rows} valid rows (row {bad_id}): {reason}", err=True)
    raise typer.Exit(code=1)


@app.command("import-sims")
def import_sims(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="CSV iccid;imsi;puk1;puk2;…"),
    org: str = typer.Option(..., "--org", help="organisation (id ou slug)"),
    errors: Path | None = typer.Option(None, "--errors", help="rapport d'erreurs (défaut : FICHIER.erreurs.csv)"),
) -> None:
    """Import the operator's SIM order file (validation per row, duplicates, known carrier) with a progress
    bar; rejected rows go to an error report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from domain.errors import DomainError
    from domain.services.sim_files import FileImport, import_sims_file
    from infra.db import create_engine, create_sessionmaker

    async def run_import() -> FileImport:
        engine = create_engine(get_settings().database_url)
        try:
            return await import_sims_file(
                create_sessionmaker(engine),
                file,
                org,
                errors_path=errors,
                on_total=lambda total: progress.update(task, total=total),
                on_rows=lambda rows: progress.advance(task, rows),
            )
        finally:
            await engine.dispose()

    with Progress(
        TextColumn("[bold]import des SIM"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("import", total=None)
        try:
            result = asyncio.run(run_import())
        except DomainError as exc:
            console.print(f"[red]refusé[/] : {exc}")
            raise typer.Exit(code=2) from exc
    summary = result.summary
    console.print(
        f"{result.rows} lignes en {result.seconds:.1f} s pour « {result.org_name} » : "
        f"[green]{summary.accepted} acceptées[/], [red]{summary.rejected} rejetées[/] (lot {summary.batch})"
    )
    if result.errors_path is not None:
        console.print(f"rapport d'erreurs : {result.errors_path}")


@app.command("import-account-status")
def import_account_status(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        readable=True,
        help="CSV iccid;msisdn;status;data_used_bytes;data_remaining_bytes;last_usage_at",
    ),
    org: str = typer.Option(..., "--org", help="organisation (id ou slug)"),
) -> None:
    """Apply the operator's AccountStatus file to the organisation's SIMs (workflow
    `account-status/{org}/{sha256}`, once per file): usage recorded, first usage → SIM `active` and
    `sim_card.first_usage` published; unknown ICCIDs and invalid rows are reported."""
    from domain.errors import DomainError
    from starters.account_status import import_account_status_file

    try:
        outcome = asyncio.run(import_account_status_file(get_settings(), file, org))
    except DomainError as exc:
        console.print(f"[red]refusé[/] : {exc}")
        raise typer.Exit(code=2) from exc
    result = outcome.result
    if outcome.duplicate:
        console.print(f"[yellow]fichier déjà importé[/] ({outcome.workflow_id}) : rien n'a été modifié.")
    console.print(
        f"{result.rows} lignes pour « {outcome.org_name} » : [green]{result.applied} appliquées[/], "
        f"{result.activated} SIM activée(s) (première utilisation), {result.unknown} ICCID inconnu(s), "
        f"[red]{result.errors} en erreur[/]"
    )
    shown = 20
    for problem in outcome.problems[:shown]:
        console.print(f"  ligne {problem['row']} — {problem['iccid']} — {problem['field']} : {problem['reason']}")
    if len(outcome.problems) > shown:
        console.print(f"  … et {len(outcome.problems) - shown} autre(s) (table account_status_imports)")


if __name__ == "__main__":
    app()
