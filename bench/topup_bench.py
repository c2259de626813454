"""Benchmark (`make bench`, `simflow bench topup`): end-to-end top-ups through the API versus two baselines on
the same Temporal server and simulators, in one run: a bare workflow with the same number of no-op activities
(same mix of regular and local ones), at concurrency 1 and at saturation; and a minimal top-up doing only
the four external calls (card charge, OCS credit, SNAIC option and its answer, CFAST article) and one local
write, at saturation. Then a burst of top-ups drained to terminal states. Simulators answer with zero added
latency. The last line is the summary:

    topup_vs_bare_throughput_ratio=<x> topup_vs_minimal_throughput_ratio=<m> topup_p50_overhead_ms=<y>
    worker_cpu_ms_per_topup=<c> burst_1000_drain_s=<z> invariants=ok|broken

`worker_cpu_ms_per_topup`: the worker process's CPU time during the saturated top-up phase, divided by the
top-ups completed in it. `--profile PATH` samples the worker with py-spy over that phase (and the baselines'
worker over the minimal phase, into `PATH` with `.minimal` before the suffix), then prints the hottest
functions by own and by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.client import Client

from bench.bare import TASK_QUEUE
from bench.baseline_workflows import BareWorkflow, MinimalTopUp, MinimalTopUpWorkflow
from bench.invariants import check_invariants
from bench.profile_summary import hottest
from bench.topup_world import STAFF_PASSWORD, World, build_world, provision_line
from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.models import Company, Line, TopUp
from infra.db import create_engine, create_sessionmaker
from infra.processes import ManagedProcess
from infra.secret_settings import with_generated_secrets
from infra.settings import Settings
from infra.stack import Stack
from infra.temporal import connect_temporal


@dataclass
class Stats:
    label: str
    count: int
    wall_s: float
    latencies_s: list[float]
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process, during the run (with `stack`)

    @property
    def throughput(self) -> float:
        return self.count / self.wall_s

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def line(self) -> str:
        return (
            f"{self.label:<28} n={self.count:<5} throughput={self.throughput:7.2f}/s "
            f"p50={self.percentile(0.5) * 1000:8.1f} ms p99={self.percentile(0.99) * 1000:8.1f} ms"
        )


def rss_mb(proc: ManagedProcess) -> float:
    assert proc.process is not None
    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(proc: ManagedProcess) -> float:
    """User + system CPU time of the process so far (Linux /proc)."""
    if proc.process is None:
        return 0.0
    try:
        fields = Path(f"/proc/{proc.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    return {name: cpu_seconds(proc) for name, proc in stack.processes.items()}


def cpu_line(label: str, before: dict[str, float], after: dict[str, float], elapsed_s: float) -> str:
    """Where the CPU went during a run: seconds per process, busiest first, and the machine's share."""
    spent = sorted(((after[n] - before.get(n, 0.0), n) for n in after), reverse=True)
    parts = " ".join(f"{name}={seconds:.1f}s" for seconds, name in spent if seconds >= 0.05)
    busy = sum(seconds for seconds, _ in spent) / (elapsed_s * (os.cpu_count() or 1))
    return f"CPU during {label} ({elapsed_s:.0f} s, {busy:.0%} of {os.cpu_count()} cores): {parts}"


async def timed(
    label: str, count: int, concurrency: int, one: Callable[[int], Awaitable[None]], stack: Stack | None = None
) -> Stats:
    latencies: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def run(n: int) -> None:
        async with semaphore:
            started = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - started)

    before = cpu_snapshot(stack) if stack else {}
    bench_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(run(n) for n in range(count)))
    elapsed = time.perf_counter() - started
    spent: dict[str, float] = {}
    if stack is not None:
        after = cpu_snapshot(stack) | {"bench-client": time.process_time() - bench_before}
        print(cpu_line(label, before, after, elapsed), flush=True)
        spent = {name: after[name] - before.get(name, 0.0) for name in after}
    return Stats(label, count, elapsed, latencies, spent)


@asynccontextmanager
async def profiled(proc: ManagedProcess, path: Path | None) -> AsyncIterator[None]:
    """py-spy samples `proc` while the block runs (nothing without `path`): `.svg` a flame graph, `.json`
    speedscope, anything else raw collapsed stacks, whose hottest functions are printed."""
    if path is None or proc.process is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/uv pip install py-spy")
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(path.suffix, "raw")
    command = [py_spy, "record", "--pid", str(proc.process.pid), "--output", str(path), "--format", fmt]
    recorder = subprocess.Popen(
        [*command, "--rate", "100", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        _, errors = recorder.communicate(timeout=60)
    if recorder.returncode not in (0, -signal.SIGINT) or not path.exists():
        print(f"py-spy failed ({recorder.returncode}): {errors.decode()[-500:]}", flush=True)
        return
    print(f"profile of {proc.name} written to {path}", flush=True)
    if fmt == "raw":
        print(hottest(path.read_text()), flush=True)


def with_stem_suffix(path: Path | None, suffix: str) -> Path | None:
    return None if path is None else path.with_name(f"{path.stem}.{suffix}{path.suffix}")


async def minimal_inputs(settings: Settings, world: World) -> list[MinimalTopUp]:
    """The ids the minimal top-up's calls need, per line of `world` (the top-up resolves them in an activity)."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            company = await session.get_one(Company, world.company_id)
            lines = (await session.execute(select(Line).where(Line.id.in_(world.lines)))).scalars()
            return [
                MinimalTopUp(
                    org_id=world.org_id,
                    line_id=line.id,
                    stripe_customer_id=company.stripe_customer_id or "",
                    stripe_payment_method_id=company.stripe_payment_method_id or "",
                    ocs_account=line.ocs_account or "",
                    snaic_line_id=line.snaic_line_id or "",
                    cfast_service_id=line.cfast_service_id or "",
                    snaic_callback_sla_s=settings.snaic_callback_sla_s,
                )
                for line in lines
            ]
    finally:
        await engine.dispose()


def _error_kind(error: BaseException) -> str:
    """A submit error's category: the HTTP status and problem title, or the exception type."""
    text = str(error)
    return text[:160] if text.startswith("recharge refused") else f"{type(error).__name__}: {text[:120]}"


async def terminal_count(settings: Settings, org_id: str) -> tuple[int, int, int]:
    """(top-ups written, terminal, completed) for the organisation."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(TopUp.status, func.count()).where(TopUp.org_id == org_id).group_by(TopUp.status)
            )
            counts = dict(rows.all())
    finally:
        await engine.dispose()
    terminal = sum(n for s, n in counts.items() if s in TERMINAL)
    return sum(counts.values()), terminal, counts.get("completed", 0)


def start_bare_worker(stack: Stack, settings: Settings) -> ManagedProcess:
    """The baselines' worker (`bench.bare`) on the stack's Temporal server and simulators."""
    bare_worker = ManagedProcess(
        "bare-worker",
        [sys.executable, "-m", "bench.bare"],
        ready=lambda: True,
        env=stack.environment(settings),
        log_path=stack.logs / "bare-worker.log",
    ).start()
    stack.processes["bare-worker"] = bare_worker
    return bare_worker


async def run_bench(stack: Stack, settings: Settings, args: argparse.Namespace) -> bool:
    # Simulators at zero added latency: SNAIC completes orders at once.
    httpx.post(f"{stack.url('snaic')}/_sim/config", json={"completion_delay_ms": 0}, timeout=5).raise_for_status()
    world = await build_world(settings)
    lines = [await provision_line(world) for _ in range(args.lines)]
    # The minimal baseline pays with another organisation's card: the invariants, scoped to the top-ups'
    # organisations, see none of its charges.
    minimal_world = await build_world(settings)
    for _ in range(args.lines):
        await provision_line(minimal_world)
    minimal_runs = await minimal_inputs(settings, minimal_world)
    client: Client = await connect_temporal(settings)
    bare_worker = start_bare_worker(stack, settings)
    # Idle connections dropped before uvicorn's 5 s keep-alive ends: else a request sent on a connection the
    # server is closing at that instant fails with a ReadError.
    limits = httpx.Limits(keepalive_expiry=1)
    async with httpx.AsyncClient(base_url=stack.url("api"), timeout=120, limits=limits) as http:
        token = await http.post("/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD})
        headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}

        async def submit(n: int) -> str:
            response = await http.post(
                f"/api/v1/lines/{lines[n % len(lines)]}/recharges",
                json={"data_gb": 1, "payment_method": "card"},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if response.status_code not in (200, 201):
                raise RuntimeError(f"recharge refused: {response.status_code} {response.text[:200]}")
            return str(response.json()["workflow_id"])

        completed_topups: list[str] = []

        async def topup(n: int) -> None:
            workflow_id = await submit(n)
            receipt = await client.get_workflow_handle(workflow_id).result()
            if receipt["status"] == "completed":
                completed_topups.append(workflow_id)

        # Warm-up, and the number of activities one top-up runs (the bare workflow runs as many).
        warm_id = await submit(0)
        await client.get_workflow_handle(warm_id).result()
        history = await client.get_workflow_handle(warm_id).fetch_history()
        regular = sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
        local = sum(
            1
            for e in history.events
            if e.HasField("marker_recorded_event_attributes")
            and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        )
        activities = regular + local
        print(
            f"one top-up runs {activities} activities ({regular} regular, {local} local database writes); "
            f"the bare workflow runs {activities} no-op activities: all regular, and in the same mix",
            flush=True,
        )

        def bare_of(shape: list[int]) -> Callable[[int], Awaitable[None]]:
            async def bare(_n: int) -> None:
                await client.execute_workflow(
                    BareWorkflow.run, args=shape, id=f"bare-{uuid.uuid4().hex}", task_queue=TASK_QUEUE
                )

            return bare

        async def minimal(n: int) -> None:
            status = await client.execute_workflow(
                MinimalTopUpWorkflow.run,
                minimal_runs[n % len(minimal_runs)],
                id=f"minimal-{uuid.uuid4().hex}",
                task_queue=TASK_QUEUE,
            )
            if status != "completed":
                raise RuntimeError(f"minimal top-up ended {status}")

        bare_regular, bare_mix = bare_of([activities, 0]), bare_of([regular, local])
        await bare_regular(0)
        await bare_mix(0)
        await minimal(0)
        n1, n2, c = args.sequential, args.saturated, args.saturation
        results = [
            await timed("top-up, concurrency 1", n1, 1, topup),
            await timed("bare same mix, concurrency 1", n1, 1, bare_mix),
        ]
        completed_topups.clear()
        async with profiled(stack.processes["worker"], args.profile):
            results.append(await timed(f"top-up, concurrency {c}", n2, c, topup, stack))
        saturated_completed = len(completed_topups)
        results.append(await timed(f"bare same mix, concurrency {c}", n2, c, bare_mix, stack))
        results.append(await timed("bare all regular, concurrency 1", n1, 1, bare_regular))
        results.append(await timed(f"bare all regular, concurrency {c}", n2, c, bare_regular))
        async with profiled(bare_worker, with_stem_suffix(args.profile, "minimal")):
            results.append(await timed(f"minimal top-up, concurrency {c}", n2, c, minimal, stack))
        for stats in results:
            print(stats.line(), flush=True)
        topup_cpu_ms = results[2].cpu_s.get("worker", 0.0) * 1000 / max(saturated_completed, 1)
        print(
            f"worker CPU per run at saturation: top-up {topup_cpu_ms:.0f} ms ({saturated_completed} completed), "
            f"bare same mix {results[3].cpu_s.get('bare-worker', 0.0) * 1000 / n2:.0f} ms, "
            f"minimal top-up {results[6].cpu_s.get('bare-worker', 0.0) * 1000 / n2:.0f} ms",
            flush=True,
        )
        print(
            f"against the all-regular bare workflow: throughput ratio "
            f"{results[2].throughput / results[5].throughput:.2f}, p50 overhead "
            f"{(results[0].percentile(0.5) - results[4].percentile(0.5)) * 1000:.0f} ms",
            flush=True,
        )
        print(f"worker RSS after steady runs: {rss_mb(stack.processes['worker']):.0f} MB", flush=True)

        # Burst: every top-up submitted at once (the HTTP client caps in-flight requests), then drained.
        burst_world = await build_world(settings)
        burst_lines = [await provision_line(burst_world) for _ in range(args.lines)]
        token = await http.post(
            "/api/v1/auth/token", data={"username": burst_world.staff_email, "password": STAFF_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
        lines = burst_lines
        started = time.perf_counter()
        semaphore = asyncio.Semaphore(100)

        async def submit_burst(n: int) -> None:
            async with semaphore:
                await submit(n)

        outcomes = await asyncio.gather(*(submit_burst(n) for n in range(args.burst)), return_exceptions=True)
        accepted_s = time.perf_counter() - started
        while True:  # drained when every top-up written (accepted or not answered in time) is terminal
            written, terminal, completed = await terminal_count(settings, burst_world.org_id)
            if terminal >= written or time.perf_counter() - started > args.burst_timeout:
                break
            await asyncio.sleep(0.5)
        drain_s = time.perf_counter() - started
        failures = sum(isinstance(o, BaseException) for o in outcomes)
        kinds = Counter(_error_kind(o) for o in outcomes if isinstance(o, BaseException))
        for kind, n in kinds.most_common(5):
            print(f"  submit error ×{n}: {kind}", flush=True)
        print(
            f"burst of {args.burst}: accepted in {accepted_s:.1f} s, drained in {drain_s:.1f} s "
            f"({args.burst / drain_s:.1f}/s), completed={completed}, submit errors={failures}",
            flush=True,
        )
        print(f"worker RSS after the burst: {rss_mb(stack.processes['worker']):.0f} MB", flush=True)

    report = await check_invariants(
        org_ids={world.org_id, burst_world.org_id},
        database_url=settings.database_url,
        localstripe_url=stack.url("localstripe"),
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=stack.url("ocs"),
        ocs_tenant=settings.ocs_tenant,
        cfast_url=stack.url("cfast"),
    )
    print(f"invariants: {report.summary()}", flush=True)
    for violation in report.violations[:20]:
        print(f"  VIOLATION {violation}")
    ratio = results[2].throughput / results[3].throughput
    minimal_ratio = results[2].throughput / results[6].throughput
    overhead_ms = (results[0].percentile(0.5) - results[1].percentile(0.5)) * 1000
    burst_ok = completed == args.burst and failures == 0
    verdict = "ok" if report.ok and burst_ok and saturated_completed == n2 else "broken"
    print(
        f"topup_vs_bare_throughput_ratio={ratio:.2f} topup_vs_minimal_throughput_ratio={minimal_ratio:.2f} "
        f"topup_p50_overhead_ms={overhead_ms:.0f} worker_cpu_ms_per_topup={topup_cpu_ms:.0f} "
        f"burst_{args.burst}_drain_s={drain_s:.1f} invariants={verdict}",
        flush=True,
    )
    return verdict == "ok"


async def on_scratch_stack(
    bench: Callable[[Stack, Settings, argparse.Namespace], Awaitable[bool]], args: argparse.Namespace
) -> bool:
    """Runs `bench` on a stack of its own (Temporal dev server, worker, API, simulators, localstripe, a
    SQLite database in a temporary directory), stopped afterwards; its logs kept with `args.keep`."""
    var = Path(tempfile.mkdtemp(prefix="simflow-bench-"))
    stack = Stack.scratch(var)
    settings = stack.settings(with_generated_secrets(Settings(http_timeout_s=10)))
    try:
        stack.start(settings)
        return await bench(stack, settings, args)
    finally:
        stack.stop()
        if args.keep:
            print(f"logs kept in {stack.logs}")
        else:
            shutil.rmtree(var, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> bool:
    return await on_scratch_stack(run_bench, args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.topup_bench")
    p.add_argument("--sequential", type=int, default=30, help="runs at concurrency 1")
    p.add_argument("--saturated", type=int, default=200, help="runs at saturation")
    p.add_argument("--saturation", type=int, default=32, help="concurrency at saturation")
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--burst-timeout", type=float, default=1800)
    p.add_argument("--lines", type=int, default=20)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--profile", type=Path, help="py-spy output of the saturated top-up phase (.svg, .json or raw)")
    return p


def main(argv: list[str] | None = None) -> None:
    ok = asyncio.run(main_async(parser().parse_args(argv)))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
