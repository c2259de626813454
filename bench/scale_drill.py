"""Scale-out drill (`make scale-drill`): two API processes and two workers on one PostgreSQL database, top-ups
spread over both APIs, then one worker and one API killed with SIGKILL while top-ups are in flight. Clients
whose request was cut by the API kill send it again, with the same Idempotency-Key, to the other API; the
killed processes stay down, so the survivors finish every top-up. Ends with the money invariants computed
from the outside systems and one line:

    scale_drill topups=300 api_kills=1 worker_kills=1 terminal=300 invariants=ok

    python -m bench.scale_drill [--topups 300] [--postgres-url URL] [--seed N] [--keep]

The drill creates its own database next to the one named by --postgres-url (default: the local server,
trust auth) and drops it at the end. The SNAIC simulator posts its callbacks to the API that stays up (a load
balancer would send them to either).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.crash_drill import FAULT_MENU, LATENCY
from bench.invariants import check_invariants
from bench.topup_world import STAFF_PASSWORD, build_world, provision_line
from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.models import TopUp
from infra.db import create_engine, create_sessionmaker
from infra.processes import free_port
from infra.secret_settings import with_generated_secrets
from infra.settings import Settings
from infra.stack import Stack, migrate

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
APIS = ("api", "api_2")  # the first one is killed
WORKERS = ("worker", "worker_2")  # the first one is killed


async def create_database(server_url: str) -> str:
    url = make_url(server_url)
    name = f"simflow_scale_drill_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class ScaleOutcome:
    topups: int
    api_kills: int
    worker_kills: int
    terminal: int
    ok: bool
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"scale_drill topups={self.topups} api_kills={self.api_kills} worker_kills={self.worker_kills} "
            f"terminal={self.terminal} invariants={'ok' if self.ok else 'broken'}"
        )


class ScaleDrill:
    def __init__(self, stack: Stack, settings: Settings, rng: random.Random, fault_rate: float) -> None:
        self.stack = stack
        self.settings = settings
        self.rng = rng
        self.fault_rate = fault_rate
        self.api_kills = 0
        self.worker_kills = 0
        self.accepted = 0
        self.in_flight_requests: Counter[str] = Counter()  # per API
        self.cut_by_kill = 0  # requests in flight on the API when it was killed, sent again to the other one
        self.routed_away = 0  # top-ups meant for the killed API, sent to the other one from the start
        self.accepted_by: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()

    def start_services(self) -> None:
        for name in WORKERS:
            self.stack.processes[name] = self.stack.worker_process(self.settings, name).start(timeout_s=120)
        for name in APIS:
            self.stack.processes[name] = self.stack.api_process(self.settings, name).start(timeout_s=120)

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

    def alive_apis(self) -> list[str]:
        return [name for name in APIS if self.stack.processes[name].alive()]

    async def submit(self, clients: dict[str, httpx.AsyncClient], headers: dict[str, str], n: int, line: str) -> None:
        """One top-up, sent to API n % 2; a request cut by a dead API goes to a live one, same key."""
        key = f"scale-{uuid.uuid4().hex}"
        body = {"data_gb": self.rng.randint(1, 3), "payment_method": self.rng.choice(["card", "wallet", "account"])}
        api = APIS[n % len(APIS)]
        for attempt in range(120):
            if not self.stack.processes[api].alive():
                self.routed_away += attempt == 0
                api = self.rng.choice(self.alive_apis())
            self.in_flight_requests[api] += 1
            try:
                response = await clients[api].post(
                    f"/api/v1/lines/{line}/recharges", json=body, headers={**headers, "Idempotency-Key": key}
                )
                if response.status_code in (200, 201):
                    self.accepted += 1
                    self.accepted_by[api] += 1
                    return
            except httpx.HTTPError:
                if not self.stack.processes[api].alive():
                    self.cut_by_kill += 1
            finally:
                self.in_flight_requests[api] -= 1
            await asyncio.sleep(1)
        raise RuntimeError(f"top-up {key} never accepted")

    async def killer(self, topups: int) -> None:
        """SIGKILLs the first worker after a quarter of the top-ups are accepted and the first API after
        half, each at a moment when it has work in flight."""
        while self.worker_kills == 0 or self.api_kills == 0:
            await asyncio.sleep(0.5)
            if self.worker_kills == 0 and self.accepted >= topups // 4:
                counts = await self.counts()
                in_flight = sum(n for status, n in counts.items() if status not in TERMINAL)
                if in_flight:
                    self.stack.processes[WORKERS[0]].kill()
                    self.worker_kills += 1
                    print(f"  kill -9 {WORKERS[0]} ({in_flight} top-ups in flight)", flush=True)
            if self.worker_kills and self.api_kills == 0 and self.accepted >= topups // 2:
                requests = self.in_flight_requests[APIS[0]]
                if requests:
                    self.stack.processes[APIS[0]].kill()
                    self.api_kills += 1
                    print(f"  kill -9 {APIS[0]} ({requests} requests in flight on it)", flush=True)

    async def run(self, topups: int, lines: int, concurrency: int, settle_s: float) -> ScaleOutcome:
        world = await build_world(self.settings, wallet_minor=10_000_000)
        line_ids = [await provision_line(world) for _ in range(lines)]
        for system, op, latency in LATENCY:
            self.inject(system, op, "latency", times=1_000_000, latency_ms=latency)
        clients = {name: httpx.AsyncClient(base_url=self.stack.url(name), timeout=60) for name in APIS}
        try:
            token = await clients[APIS[1]].post(
                "/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD}
            )
            headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
            killer = asyncio.create_task(self.killer(topups))
            semaphore = asyncio.Semaphore(concurrency)

            async def one(n: int) -> None:
                async with semaphore:
                    if self.rng.random() < self.fault_rate:
                        system, op, mode, _ = self.rng.choice(FAULT_MENU)
                        self.inject(system, op, mode)
                        self.faults_injected[f"{system}:{op}:{mode}"] += 1
                    await self.submit(clients, headers, n, line_ids[n % len(line_ids)])

            started = time.monotonic()
            await asyncio.gather(*(one(n) for n in range(topups)))
            print(f"  {topups} top-ups accepted in {time.monotonic() - started:.0f} s", flush=True)
            if not killer.done():  # every top-up was accepted before a kill could land
                killer.cancel()
        finally:
            for client in clients.values():
                await client.aclose()
        self.clear_faults()
        deadline = time.monotonic() + settle_s
        while True:
            counts = await self.counts()
            terminal = sum(n for s, n in counts.items() if s in TERMINAL)
            if terminal >= topups or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        report = await check_invariants(
            database_url=self.settings.database_url,
            localstripe_url=self.stack.url("localstripe"),
            stripe_api_key=self.settings.stripe_secret_key.get_secret_value(),
            ocs_base_url=self.stack.url("ocs"),
            ocs_tenant=self.settings.ocs_tenant,
            cfast_url=self.stack.url("cfast"),
            org_ids={world.org_id},
        )
        print(f"  statuses: {dict(counts)}")
        print(
            f"  accepted per API: {dict(self.accepted_by)}; cut by the API kill and sent again to the other API: "
            f"{self.cut_by_kill}; meant for the killed API, sent to the other one: {self.routed_away}"
        )
        print(f"  faults injected: {dict(self.faults_injected)}")
        print(f"  money per organisation: {report.money}")
        for violation in report.violations[:20]:
            print(f"  VIOLATION {violation}")
        return ScaleOutcome(
            topups=report.topups,
            api_kills=self.api_kills,
            worker_kills=self.worker_kills,
            terminal=terminal,
            # A run where a kill never landed did not drill anything: it does not count as a pass.
            ok=report.ok
            and report.topups == topups
            and terminal == topups
            and self.api_kills > 0
            and self.worker_kills > 0,
            violations=report.violations,
        )


async def main_async(args: argparse.Namespace) -> ScaleOutcome:
    var = Path(tempfile.mkdtemp(prefix="simflow-scale-drill-"))
    database_url = await create_database(args.postgres_url)
    stack = Stack.scratch(var)
    stack.database_url = database_url
    stack.ports["api_2"] = free_port()
    settings = stack.settings(with_generated_secrets(Settings(snaic_callback_sla_s=30, http_timeout_s=5)))
    settings = settings.model_copy(update={"public_base_url": stack.url(APIS[1])})  # SNAIC calls back the survivor
    print(f"scale drill: seed={args.seed} scratch={var} database={make_url(database_url).database}", flush=True)
    try:
        migrate(database_url)
        for proc in stack.infrastructure(settings):
            stack.processes[proc.name] = proc.start(timeout_s=120)
        drill = ScaleDrill(stack, settings, random.Random(args.seed), args.fault_rate)
        drill.start_services()
        outcome = await drill.run(args.topups, args.lines, args.concurrency, args.settle_s)
    finally:
        stack.stop()
        await drop_database(database_url)
        if args.keep:
            print(f"logs kept in {stack.logs}")
        else:
            shutil.rmtree(var, ignore_errors=True)
    print(outcome.line(), flush=True)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_drill")
    parser.add_argument("--topups", type=int, default=300)
    parser.add_argument("--lines", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of top-ups sent with one fault armed")
    parser.add_argument("--settle-s", type=float, default=600, help="how long to wait for every top-up to end")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("SIMFLOW_SCALE_DRILL_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and its logs")
    outcome = asyncio.run(main_async(parser.parse_args()))
    raise SystemExit(0 if outcome.ok else 1)


if __name__ == "__main__":
    main()
