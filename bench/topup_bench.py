"""Benchmark (`make bench`, `simflow bench topup`): end-to-end top-ups through the API versus a bare Temporal
workflow with the same number of no-op activities, measured in one run on the same Temporal server, at
concurrency 1 and at saturation; then a burst of top-ups drained to terminal states. Simulators answer
with zero added latency. The last line is the summary:

    topup_vs_bare_throughput_ratio=<x> topup_p50_overhead_ms=<y> burst_1000_drain_s=<z> invariants=ok|broken
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.client import Client

from bench.bare import TASK_QUEUE, BareWorkflow
from bench.invariants import check_invariants
from bench.topup_world import STAFF_PASSWORD, build_world, provision_line
from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.models import TopUp
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
    if stack is not None:
        after = cpu_snapshot(stack) | {"bench-client": time.process_time() - bench_before}
        print(cpu_line(label, before, after, elapsed), flush=True)
    return Stats(label, count, elapsed, latencies)


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


async def run_bench(stack: Stack, settings: Settings, args: argparse.Namespace) -> bool:
    # Simulators at zero added latency: SNAIC completes orders at once.
    httpx.post(f"{stack.url('snaic')}/_sim/config", json={"completion_delay_ms": 0}, timeout=5).raise_for_status()
    world = await build_world(settings)
    lines = [await provision_line(world) for _ in range(args.lines)]
    client: Client = await connect_temporal(settings)
    bare_worker = ManagedProcess(
        "bare-worker",
        [sys.executable, "-m", "bench.bare"],
        ready=lambda: True,
        env=stack.environment(settings),
        log_path=stack.logs / "bare-worker.log",
    ).start()
    stack.processes["bare-worker"] = bare_worker
    async with httpx.AsyncClient(base_url=stack.url("api"), timeout=120) as http:
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

        async def topup(n: int) -> None:
            workflow_id = await submit(n)
            await client.get_workflow_handle(workflow_id).result()

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

        bare_regular, bare_mix = bare_of([activities, 0]), bare_of([regular, local])
        await bare_regular(0)
        await bare_mix(0)
        n1, n2, c = args.sequential, args.saturated, args.saturation
        results = [
            await timed("top-up, concurrency 1", n1, 1, topup),
            await timed("bare same mix, concurrency 1", n1, 1, bare_mix),
            await timed(f"top-up, concurrency {c}", n2, c, topup, stack),
            await timed(f"bare same mix, concurrency {c}", n2, c, bare_mix, stack),
            await timed("bare all regular, concurrency 1", n1, 1, bare_regular),
            await timed(f"bare all regular, concurrency {c}", n2, c, bare_regular),
        ]
        for stats in results:
            print(stats.line(), flush=True)
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
    overhead_ms = (results[0].percentile(0.5) - results[1].percentile(0.5)) * 1000
    burst_ok = completed == args.burst and failures == 0
    verdict = "ok" if report.ok and burst_ok else "broken"
    print(
        f"topup_vs_bare_throughput_ratio={ratio:.2f} topup_p50_overhead_ms={overhead_ms:.0f} "
        f"burst_{args.burst}_drain_s={drain_s:.1f} invariants={verdict}",
        flush=True,
    )
    return verdict == "ok"


async def main_async(args: argparse.Namespace) -> bool:
    var = Path(tempfile.mkdtemp(prefix="simflow-bench-"))
    stack = Stack.scratch(var)
    settings = stack.settings(with_generated_secrets(Settings(http_timeout_s=10)))
    try:
        stack.start(settings)
        return await run_bench(stack, settings, args)
    finally:
        stack.stop()
        if args.keep:
            print(f"logs kept in {stack.logs}")
        else:
            shutil.rmtree(var, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.topup_bench")
    p.add_argument("--sequential", type=int, default=30, help="runs at concurrency 1")
    p.add_argument("--saturated", type=int, default=200, help="runs at saturation")
    p.add_argument("--saturation", type=int, default=32, help="concurrency at saturation")
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--burst-timeout", type=float, default=1800)
    p.add_argument("--lines", type=int, default=20)
    p.add_argument("--keep", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    ok = asyncio.run(main_async(parser().parse_args(argv)))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
