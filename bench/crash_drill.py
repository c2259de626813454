"""Crash drill (`make crash-drill`): hundreds of top-ups through the real API under random fault injection,
while the worker is killed with SIGKILL mid-provisioning and the Temporal dev server is killed once.
Ends with every top-up terminal and the money invariants computed from the outside systems.

    python -m bench.crash_drill [--topups 200] [--worker-kills 10] [--server-kills 1] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select

from bench.invariants import check_invariants
from bench.topup_world import STAFF_PASSWORD, World, build_world, provision_line
from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.models import TopUp
from infra.db import create_engine, create_sessionmaker
from infra.processes import ManagedProcess
from infra.secret_settings import with_generated_secrets
from infra.settings import Settings
from infra.stack import Stack

# (simulator, operation, mode, expected effect on the top-up)
FAULT_MENU = [
    ("ocs", "APIerSv1.SetBalance", "error", "retried"),
    ("ocs", "APIerSv1.SetBalance", "lost_response", "retried"),
    ("ocs", "APIerSv1.SetBalance", "reject", "refunded"),
    ("stripe", "confirm_payment_intent", "lost_response", "retried"),
    ("stripe", "create_payment_intent", "error", "retried"),
    ("snaic", "add_one_off_option", "lost_response", "retried"),
    ("snaic", "complete_one_off_option", "reject", "refunded"),
    ("cfast", "add_one_off_article", "error", "retried"),
    ("cfast", "add_one_off_article", "lost_response", "retried"),
]
# Every provisioning call takes a little time, so kills land while activities are in flight.
LATENCY = [("ocs", "*", 60), ("snaic", "*", 40), ("cfast", "*", 40)]


@dataclass
class DrillOutcome:
    topups: int
    worker_kills: int
    server_kills: int
    terminal: int
    ok: bool
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"crash_drill topups={self.topups} worker_kills={self.worker_kills} server_kills={self.server_kills} "
            f"terminal={self.terminal} invariants={'ok' if self.ok else 'broken'}"
        )


class Drill:
    def __init__(self, stack: Stack, settings: Settings, rng: random.Random) -> None:
        self.stack = stack
        self.settings = settings
        self.rng = rng
        self.worker_kills = 0
        self.server_kills = 0
        self.in_flight_at_kill: list[int] = []
        self.submit_retries = 0
        self.faults_injected: Counter[str] = Counter()

    def sim_url(self, name: str) -> str:
        return self.stack.url("stripe_proxy" if name == "stripe" else name)

    def inject(self, system: str, op: str, mode: str, *, times: int = 1, latency_ms: int = 0) -> None:
        body = {"op": op, "mode": mode, "times": times, "latency_ms": latency_ms}
        httpx.post(f"{self.sim_url(system)}/_sim/faults", json=body, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        for system in ("ocs", "stripe", "snaic", "cfast"):
            httpx.delete(f"{self.sim_url(system)}/_sim/faults", timeout=5).raise_for_status()

    async def counts(self) -> Counter[str]:
        engine = create_engine(self.settings.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                rows = await session.execute(select(TopUp.status, func.count()).group_by(TopUp.status))
                return Counter({status: count for status, count in rows.all()})
        finally:
            await engine.dispose()

    def restart(self, name: str) -> None:
        factory = {"worker": self.stack.worker_process, "temporal": lambda _s: self.stack.temporal_process()}[name]
        proc: ManagedProcess = factory(self.settings)
        self.stack.processes[name] = proc.start(timeout_s=120)

    async def submit(self, http: httpx.AsyncClient, headers: dict[str, str], line_id: str) -> None:
        """One top-up; retried with the same key until the API answers (the server may be down)."""
        key = uuid.uuid4().hex
        body = {"data_gb": self.rng.randint(1, 3), "payment_method": self.rng.choice(["card", "wallet", "account"])}
        for attempt in range(120):
            try:
                response = await http.post(
                    f"/api/v1/lines/{line_id}/recharges", json=body, headers={**headers, "Idempotency-Key": key}
                )
                if response.status_code in (200, 201):
                    return
            except httpx.HTTPError:
                pass
            self.submit_retries += attempt == 0
            await asyncio.sleep(1)
        raise RuntimeError(f"top-up {key} never accepted")

    async def killer(self, total_worker_kills: int, total_server_kills: int, done: asyncio.Event) -> None:
        server_kill_after = max(1, total_worker_kills // 2)
        while self.worker_kills < total_worker_kills or self.server_kills < total_server_kills:
            await asyncio.sleep(self.rng.uniform(2.0, 6.0))  # spread the kills over the run
            counts = await self.counts()
            in_flight = sum(n for status, n in counts.items() if status not in TERMINAL)
            if in_flight == 0:
                if done.is_set():
                    return
                continue
            if self.server_kills < total_server_kills and self.worker_kills >= server_kill_after:
                self.stack.processes["temporal"].kill()
                self.server_kills += 1
                print(f"  kill -9 temporal dev server ({in_flight} top-ups in flight)", flush=True)
                await asyncio.sleep(2)
                self.restart("temporal")
                if not self.stack.processes["worker"].alive():
                    self.restart("worker")
                continue
            if self.worker_kills < total_worker_kills:
                self.stack.processes["worker"].kill()
                self.worker_kills += 1
                self.in_flight_at_kill.append(in_flight)
                print(f"  kill -9 worker #{self.worker_kills} ({in_flight} top-ups in flight)", flush=True)
                await asyncio.sleep(1)
                self.restart("worker")

    async def run(self, topups: int, worker_kills: int, server_kills: int, lines: int) -> DrillOutcome:
        world: World = await build_world(self.settings, wallet_minor=10_000_000)
        line_ids = [await provision_line(world) for _ in range(lines)]
        for system, op, latency in LATENCY:
            self.inject(system, op, "latency", times=1_000_000, latency_ms=latency)
        async with httpx.AsyncClient(base_url=self.stack.url("api"), timeout=60) as http:
            token = await http.post(
                "/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD}
            )
            headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
            done = asyncio.Event()
            killer = asyncio.create_task(self.killer(worker_kills, server_kills, done))
            semaphore = asyncio.Semaphore(8)

            async def one(n: int) -> None:
                async with semaphore:
                    if self.rng.random() < 0.25:
                        system, op, mode, _ = self.rng.choice(FAULT_MENU)
                        self.inject(system, op, mode)
                        self.faults_injected[f"{system}:{op}:{mode}"] += 1
                    await self.submit(http, headers, line_ids[n % len(line_ids)])

            started = time.monotonic()
            await asyncio.gather(*(one(n) for n in range(topups)))
            done.set()
            print(f"  {topups} top-ups accepted in {time.monotonic() - started:.0f} s", flush=True)
            await killer
        self.clear_faults()
        deadline = time.monotonic() + 300
        while True:
            counts = await self.counts()
            if sum(n for s, n in counts.items() if s in TERMINAL) >= topups or time.monotonic() > deadline:
                break
            if not self.stack.processes["worker"].alive():
                self.restart("worker")
            await asyncio.sleep(1)
        report = await check_invariants(
            database_url=self.settings.database_url,
            localstripe_url=self.stack.url("localstripe"),
            stripe_api_key=self.settings.stripe_secret_key.get_secret_value(),
            ocs_base_url=self.stack.url("ocs"),
            ocs_tenant=self.settings.ocs_tenant,
            cfast_url=self.stack.url("cfast"),
            org_ids={world.org_id},
        )
        terminal = sum(n for s, n in counts.items() if s in TERMINAL)
        print(f"  statuses: {dict(counts)}")
        print(f"  faults injected: {dict(self.faults_injected)}")
        print(f"  top-ups in flight at each worker kill: {self.in_flight_at_kill}")
        print(f"  money per organisation: {report.money}")
        for violation in report.violations[:20]:
            print(f"  VIOLATION {violation}")
        outcome = DrillOutcome(
            topups=report.topups,
            worker_kills=self.worker_kills,
            server_kills=self.server_kills,
            terminal=terminal,
            ok=report.ok and report.topups == topups and terminal == topups,
            statuses=dict(counts),
            violations=report.violations,
        )
        print(outcome.line(), flush=True)
        return outcome


async def run_drill(
    *,
    topups: int,
    worker_kills: int,
    server_kills: int,
    lines: int,
    seed: int,
    keep: bool = False,
    database_url: str | None = None,
) -> DrillOutcome:
    """The whole drill on a scratch stack (free ports, generated secrets), torn down at the end. The database
    is a scratch SQLite file unless `database_url` names an empty one (migrated here)."""
    var = Path(tempfile.mkdtemp(prefix="simflow-drill-"))
    stack = Stack.scratch(var)
    if database_url is not None:
        stack.database_url = database_url
    settings = stack.settings(with_generated_secrets(Settings(snaic_callback_sla_s=20, http_timeout_s=5)))
    print(f"crash drill: seed={seed} scratch={var}", flush=True)
    try:
        stack.start(settings)
        return await Drill(stack, settings, random.Random(seed)).run(topups, worker_kills, server_kills, lines)
    finally:
        stack.stop()
        if keep:
            print(f"logs kept in {stack.logs}")
        else:
            shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_drill")
    parser.add_argument("--topups", type=int, default=200)
    parser.add_argument("--worker-kills", type=int, default=10)
    parser.add_argument("--server-kills", type=int, default=1)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and its logs")
    args = parser.parse_args()
    outcome = asyncio.run(
        run_drill(
            topups=args.topups,
            worker_kills=args.worker_kills,
            server_kills=args.server_kills,
            lines=args.lines,
            seed=args.seed,
            keep=args.keep,
        )
    )
    raise SystemExit(0 if outcome.ok else 1)


if __name__ == "__main__":
    main()
