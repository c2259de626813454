"""Renewal storm (`make renewal-storm`, `simflow bench renewal-storm`): N subscriptions due at the same
instant, renewed by their `SubscriptionWorkflow`s against the simulators and localstripe, on a stack of its
own. Half pay by the saved card (localstripe, off-session), half by the company's wallet.

Every subscription's first period ends today (its row is written so), and every workflow is started with a
start delay that ends at one instant T0: at T0 all N wake together, load their terms, find the period over
and renew (charge → OCS allowance → transaction → notice), then continue as new. Drained: every one of them
has continued as new. Then, in the same run, N bare workflows with the same activities (as many regular and
local no-op ones as one renewal ran) are started the same way, all due at one instant, and drained: the same
concurrency (all N at once, each worker allowing 200 activities and 100 workflow tasks at a time).

    renewal_storm subscriptions=<N> drained_s=<s> ratio_vs_bare=<x> errors=<e> invariants=ok|broken

`drained_s`: from T0 to the last renewal (starts running late past T0 are counted in it, and reported).
`ratio_vs_bare`: the storm's throughput over the bare workflows' (1.0: as fast as Temporal itself with no-op
activities). `errors`: subscription workflows failed, terminated or timed out, subscriptions not renewed or
in dunning, and activity attempts or workflow tasks that failed (retried or not) in the worker's log during
the storm.
`invariants`: R1–R5 of `bench.invariants.check_renewals` (each period charged once, each charge has its OCS
grant, its transaction and, by card or wallet, its paid receipt). `--profile PATH` samples the worker with
py-spy during the storm.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from temporalio.client import Client

from bench.bare import TASK_QUEUE
from bench.baseline_workflows import BareWorkflow
from bench.invariants import check_renewals
from bench.topup_bench import cpu_line, cpu_snapshot, on_scratch_stack, profiled, start_bare_worker
from bench.topup_world import World, add_renewing_plan, build_world, provision_lines, subscribe_lines
from domain.enums import PaymentMethod, SubscriptionStatus
from domain.models import Line, SimCard, Subscription
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from infra.stack import Stack
from infra.temporal import connect_temporal
from starters.subscriptions import start_subscription

PRICE_MINOR = 1500
METHODS = [PaymentMethod.CARD, PaymentMethod.WALLET]
# What the Temporal SDK logs for a failed activity attempt and for a failed workflow task.
FAILURE_MARKS = ("Completing activity as failed", "Failed activation on workflow", "activation on workflow with run ID")
CLOSED_BADLY = "ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut', 'Canceled')"


async def subscribed_world(settings: Settings, count: int) -> World:
    """An organisation with `count` lines in OCS, each subscribed to a plan whose first period ends today;
    the wallet holds enough for every renewal it pays."""
    world = await build_world(settings, wallet_minor=PRICE_MINOR * count + 10_000)
    plan_id = await add_renewing_plan(world, price_minor=PRICE_MINOR)
    lines = await provision_lines(world, count, plan_id=plan_id)
    await subscribe_lines(world, lines, plan_id, METHODS, due_on=datetime.now(UTC).date())
    return world


async def start_all(client: Client, settings: Settings, world: World, due_at: datetime) -> float:
    """Starts every subscription workflow of `world`, each delayed to `due_at`; the seconds the starts took."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = (
                await session.execute(
                    select(Line, SimCard.iccid).join(SimCard, SimCard.id == Line.sim_id).where(Line.id.in_(world.lines))
                )
            ).all()
    finally:
        await engine.dispose()
    semaphore = asyncio.Semaphore(50)
    started = time.perf_counter()

    async def start(line: Line, iccid: str) -> None:
        async with semaphore:
            delay = max(due_at - datetime.now(UTC), timedelta(0))
            await start_subscription(client, settings, line, iccid, start_delay=delay or None)

    await asyncio.gather(*(start(line, iccid) for line, iccid in rows))
    return time.perf_counter() - started


def renewed(org_id: str) -> str:
    """The subscription workflows of `org_id` that renewed: their renewing run continued as new."""
    return f"WorkflowType = 'SubscriptionWorkflow' AND ExecutionStatus = 'ContinuedAsNew' AND OrgId = '{org_id}'"


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def drain(client: Client, query: str, expected: int, due_at: datetime, timeout_s: float) -> float:
    """Seconds from `due_at` until `query` counts `expected` workflows (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while await count(client, query) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return (datetime.now(UTC) - due_at).total_seconds()


def lead_time(n: int, lead_s: float | None) -> timedelta:
    """Time left for the starts before T0: twice the ~10 ms a start took on the shared 2-core machine, and 10 s."""
    return timedelta(seconds=lead_s if lead_s is not None else 10 + n * 0.02)


async def one_renewal_shape(client: Client, world: World) -> tuple[int, int]:
    """(regular, local) activities of one subscription's renewing run: the run it continued as new from."""
    workflow_id = f"subscription/{world.org_id}/{world.lines[0]}"
    current = await client.get_workflow_handle(workflow_id).fetch_history()
    started = current.events[0].workflow_execution_started_event_attributes
    history = await client.get_workflow_handle(workflow_id, run_id=started.continued_execution_run_id).fetch_history()
    regular = sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
    local = sum(
        1
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )
    return regular, local


async def not_renewed(settings: Settings, org_id: str) -> int:
    """Subscriptions of `org_id` still on their first period, or in dunning."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            query = select(func.count()).where(
                Subscription.org_id == org_id,
                (Subscription.period < 1) | (Subscription.status != SubscriptionStatus.ACTIVE),
            )
            return int((await session.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def failed_attempts(log: Path, offset: int) -> int:
    """Failed activity attempts and workflow tasks the worker logged after `offset`."""
    if not log.exists():
        return 0
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return sum(text.count(mark) for mark in FAILURE_MARKS)


async def timed_phase(label: str, stack: Stack, run: Callable[[], Awaitable[float]]) -> tuple[float, dict[str, float]]:
    """`run`'s drain time, and the CPU each process of the stack spent meanwhile (starts included)."""
    before, started = cpu_snapshot(stack), time.perf_counter()
    drained_s = await run()
    after = cpu_snapshot(stack)
    print(cpu_line(label, before, after, time.perf_counter() - started), flush=True)
    return drained_s, {name: after[name] - before.get(name, 0.0) for name in after}


async def run_storm(stack: Stack, settings: Settings, args: argparse.Namespace) -> bool:
    n = args.subscriptions
    client = await connect_temporal(settings)
    start_bare_worker(stack, settings)

    # Warm-up: one subscription renewed at once, and the activities one renewal runs.
    warm = await subscribed_world(settings, 1)
    await start_all(client, settings, warm, datetime.now(UTC))
    await drain(client, renewed(warm.org_id), 1, datetime.now(UTC), 60)
    regular, local = await one_renewal_shape(client, warm)
    print(
        f"one renewal runs {regular + local} activities ({regular} regular, {local} local); "
        f"the bare workflow runs as many no-op ones in the same mix",
        flush=True,
    )
    await client.execute_workflow(
        BareWorkflow.run, args=[regular, local], id=f"storm-bare-warm-{uuid.uuid4().hex}", task_queue=TASK_QUEUE
    )

    built = time.perf_counter()
    world = await subscribed_world(settings, n)
    print(
        f"{n} subscriptions due today ({', '.join(m.value for m in METHODS)} in turn), "
        f"built in {time.perf_counter() - built:.1f} s",
        flush=True,
    )

    due_at = datetime.now(UTC) + lead_time(n, args.lead_s)
    worker_log = stack.logs / "worker.log"
    log_offset = worker_log.stat().st_size if worker_log.exists() else 0

    async def storm() -> float:
        start_s = await start_all(client, settings, world, due_at)
        late_s = (datetime.now(UTC) - due_at).total_seconds()
        print(
            f"storm: {n} workflows started in {start_s:.1f} s"
            + (f", the last {late_s:.1f} s after T0 (raise --lead-s)" if late_s > 0 else ", all before T0"),
            flush=True,
        )
        return await drain(client, renewed(world.org_id), n, due_at, args.timeout)

    async with profiled(stack.processes["worker"], args.profile):
        storm_s, storm_cpu = await timed_phase("the storm", stack, storm)
    closed_badly = f"WorkflowType = 'SubscriptionWorkflow' AND OrgId = '{world.org_id}' AND {CLOSED_BADLY}"
    bad_workflows = await count(client, closed_badly)
    unrenewed = await not_renewed(settings, world.org_id)
    attempts_failed = failed_attempts(worker_log, log_offset)
    errors = bad_workflows + unrenewed + attempts_failed
    print(
        f"storm drained in {storm_s:.1f} s from T0 ({n / storm_s:.1f} renewals/s): workflows closed badly "
        f"{bad_workflows}, not renewed {unrenewed}, failed attempts and workflow tasks {attempts_failed}; "
        f"worker CPU {storm_cpu.get('worker', 0.0) * 1000 / n:.0f} ms per renewal",
        flush=True,
    )

    bare_due = datetime.now(UTC) + lead_time(n, args.lead_s)
    run_prefix = f"storm-bare-{uuid.uuid4().hex[:8]}"
    completed_bare = "WorkflowType = 'BareWorkflow' AND ExecutionStatus = 'Completed'"
    bare_before = await count(client, completed_bare)

    async def bare() -> float:
        semaphore = asyncio.Semaphore(50)

        async def start(k: int) -> None:
            async with semaphore:
                delay = max(bare_due - datetime.now(UTC), timedelta(0))
                await client.start_workflow(
                    BareWorkflow.run,
                    args=[regular, local],
                    id=f"{run_prefix}-{k}",
                    task_queue=TASK_QUEUE,
                    start_delay=delay or None,
                )

        await asyncio.gather(*(start(k) for k in range(n)))
        return await drain(client, completed_bare, bare_before + n, bare_due, args.timeout)

    bare_s, bare_cpu = await timed_phase("the bare storm", stack, bare)
    ratio = bare_s / storm_s  # the same N: the throughputs' ratio is the drain times' inverse
    print(
        f"bare storm drained in {bare_s:.1f} s from T0 ({n / bare_s:.1f}/s); bare worker CPU "
        f"{bare_cpu.get('bare-worker', 0.0) * 1000 / n:.0f} ms per workflow",
        flush=True,
    )

    checked = time.perf_counter()
    report = await check_renewals(
        org_ids={warm.org_id, world.org_id},
        database_url=settings.database_url,
        localstripe_url=stack.url("localstripe"),
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=stack.url("ocs"),
        ocs_tenant=settings.ocs_tenant,
        cfast_url=stack.url("cfast"),
    )
    print(f"invariants ({time.perf_counter() - checked:.1f} s): {report.summary()}", flush=True)
    for violation in report.violations[:20]:
        print(f"  VIOLATION {violation}")
    verdict = "ok" if report.ok and report.renewals == n + 1 else "broken"
    print(
        f"renewal_storm subscriptions={n} drained_s={storm_s:.1f} ratio_vs_bare={ratio:.2f} "
        f"errors={errors} invariants={verdict}",
        flush=True,
    )
    return verdict == "ok" and errors == 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.renewal_storm")
    p.add_argument("--subscriptions", type=int, default=10_000, help="subscriptions due at the same instant")
    p.add_argument("--lead-s", type=float, help="seconds between the first start and T0 (default 10 + 20 ms each)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds to wait for each drain")
    p.add_argument("--keep", action="store_true", help="keep the stack's logs")
    p.add_argument("--profile", type=Path, help="py-spy output of the worker during the storm (.svg, .json or raw)")
    return p


def main(argv: list[str] | None = None) -> None:
    ok = asyncio.run(on_scratch_stack(run_storm, parser().parse_args(argv)))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
