"""First usage end to end: a SIM `ready_for_activation` after its activation becomes `active` on its first
usage — read from the operator's AccountStatus file (`simflow import-account-status`, workflow
`account-status/{org}/{sha256}`) or seen in the OCS by the `first-usage-scan` — with one journal entry and
one `sim_card.first_usage` event delivered to the organisation's webhook endpoint, once per SIM.

The usage workflows run on a worker of their own whose webhook sender may reach the loopback receiver; the
activations run on the session worker, with SNAIC's callbacks reaching the API over HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.usage import UsageActivities
from domain.enums import SimStatus
from domain.models import AccountStatusImport, Line, SimCard, SimChange, WebhookDelivery, WebhookEndpoint
from domain.security import SecretBox
from domain.services.lines import aware
from domain.usage_contracts import ApplyAccountStatus, FirstUsageScan
from domain.webhooks import new_signing_secret
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.ocs import OcsClient
from starters.account_status import import_account_status_file
from starters.webhooks import emit_event
from tests.api._support import random_iccid
from tests.e2e.lifecycle_support import Tenant, clear_faults, db_all, db_one, keep_history, make_tenant, ocs_debit
from tests.e2e.topup_support import ApiServer, serve_api
from workflows._search import BUSINESS_STATUS
from workflows.account_status import AccountStatusImportWorkflow, workflow_id
from workflows.first_usage import FirstUsageScanWorkflow
from workflows.sim_activation import SimActivationWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

pytestmark = pytest.mark.usefixtures("worker", "usage_worker")
ROOT = Path(__file__).resolve().parents[2]
HEADER = "iccid;msisdn;status;data_used_bytes;data_remaining_bytes;last_usage_at"
MB = 1024 * 1024
ALLOWANCE = 5 * 1024 * MB  # the tenant's MOB_5GO plan


# --- a webhook receiver on loopback ------------------------------------------------------------------


@dataclass
class Receiver:
    port: int
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def first_usages(self, iccid: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                b
                for b in self.bodies
                if b.get("type") == "sim_card.first_usage" and b["data"]["sim_card"]["iccid"] == iccid
            ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Receiver(port=server.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.bodies.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def usage_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "task_queue": "simflow-test-usage",
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_retry_initial_s": 0.2,
            "webhook_timeout_s": 3.0,
        }
    )


@pytest_asyncio.fixture(scope="module")
async def usage_worker(usage_settings: Settings, temporal_client: Client) -> AsyncIterator[None]:
    from worker import build_worker

    async with build_worker(usage_settings, temporal_client) as w:
        task = asyncio.create_task(w.run())
        yield
        await w.shutdown()
        await task


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest.fixture(autouse=True)
def no_faults(snaic_url: str, ocs_base_url: str, cfast_url: str) -> Iterator[None]:
    yield
    clear_faults(snaic_url, ocs_base_url, cfast_url)


@pytest_asyncio.fixture
async def tenant(
    live_api: ApiServer,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    receiver: Receiver,
) -> Tenant:
    """An organisation with three SIMs and a validated webhook endpoint subscribed to first usages."""
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=3)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            session.add(
                WebhookEndpoint(
                    org_id=tenant.org_id,
                    url=receiver.url(),
                    secret_encrypted=SecretBox(settings.secrets_key.get_secret_value()).seal(new_signing_secret()),
                    events=["sim_card.first_usage"],
                    validated_at=datetime.now(UTC),
                    created_by="test",
                )
            )
    finally:
        await engine.dispose()
    return tenant


async def activate(client: httpx.AsyncClient, temporal: Client, tenant: Tenant, iccid: str) -> str:
    """Activates the SIM through the API; returns its line id once the SIM is `ready_for_activation`."""
    response = await client.post(
        f"/api/v1/sims/{iccid}/activation",
        json={"company_id": tenant.company_id, "plan_id": tenant.plan_id},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    handle = temporal.get_workflow_handle_for(SimActivationWorkflow.run, accepted["workflow_id"])
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.status == "ready_for_activation"
    return str(accepted["line_id"])


async def sim(settings: Settings, iccid: str) -> SimCard:
    card: SimCard = await db_one(settings, select(SimCard).where(SimCard.iccid == iccid))
    return card


async def journal(settings: Settings, iccid: str) -> list[tuple[str, str | None, str | None, str]]:
    card = await sim(settings, iccid)
    rows = await db_all(settings, select(SimChange).where(SimChange.sim_id == card.id).order_by(SimChange.id))
    return [(r.field, r.old_value, r.new_value, r.actor) for r in rows]


async def deliveries(settings: Settings, iccid: str) -> list[WebhookDelivery]:
    return await db_all(settings, select(WebhookDelivery).where(WebhookDelivery.event_id == f"first-usage:{iccid}"))


async def delivered(temporal: Client, settings: Settings, receiver: Receiver, iccid: str) -> dict[str, Any]:
    """The one delivery of the SIM's first-usage event, awaited until the receiver has it."""
    [row] = await deliveries(settings, iccid)
    assert row.event_type == "sim_card.first_usage" and row.workflow_id
    result = await asyncio.wait_for(
        temporal.get_workflow_handle_for(WebhookDeliveryWorkflow.run, row.workflow_id).result(), 60
    )
    assert result.delivered, result
    [body] = receiver.first_usages(iccid)
    return body


def account_status_file(path: Path, rows: list[str]) -> Path:
    """What the operator drops: UTF-8 with BOM, CRLF, a trailing blank line."""
    path.write_bytes(("\ufeff" + "\r\n".join([HEADER, *rows]) + "\r\n\r\n").encode("utf-8"))
    return path


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SIMFLOW_DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "SIMFLOW_TASK_QUEUE": settings.task_queue,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "simflow"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- AccountStatus file ------------------------------------------------------------------------------


async def test_account_status_file_activates_on_first_usage_once_and_respects_tenancy(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    usage_settings: Settings,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    used, idle = tenant.iccids[0], tenant.iccids[1]
    for iccid in (used, idle):
        await activate(app_client, temporal_client, tenant, iccid)
    other = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    foreign = other.iccids[0]
    await activate(app_client, temporal_client, other, foreign)
    foreign_before = await sim(settings, foreign)
    foreign_journal = await journal(settings, foreign)
    assert (await sim(settings, used)).status is SimStatus.READY_FOR_ACTIVATION

    unknown = random_iccid()
    bad = used[:-1] + str((int(used[-1]) + 1) % 10)  # Luhn
    path = account_status_file(
        tmp_path / "AccountStatus_20250301_10.csv",
        [
            f"{used};;active;{10 * MB};{ALLOWANCE - 10 * MB};2025-03-01T10:12:00+01:00",
            f"{idle};;active;0;{ALLOWANCE};",
            f"{foreign};;active;{50 * MB};{ALLOWANCE - 50 * MB};2025-03-01T10:40:00+01:00",
            f"{unknown};;active;{MB};0;",
            f"{bad};;active;1;;",
        ],
    )
    completed = await asyncio.to_thread(
        run_cli, usage_settings, "import-account-status", str(path), "--org", tenant.org_id
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "5 lignes" in completed.stdout and "2 appliquées" in completed.stdout, completed.stdout
    assert "1 SIM activée(s)" in completed.stdout and "2 ICCID inconnu(s)" in completed.stdout, completed.stdout

    # The SIM with usage is active, once, journalled; the other one recorded its usage and stays ready.
    card = await sim(settings, used)
    assert card.status is SimStatus.ACTIVE
    assert (card.remaining_bytes, card.month_usage_bytes) == (ALLOWANCE - 10 * MB, 10 * MB)
    assert card.first_usage_at is not None and card.first_usage_published_at is not None
    assert aware(card.first_usage_at) == datetime(2025, 3, 1, 9, 12, tzinfo=UTC)  # the operator's time
    status_changes = [j for j in await journal(settings, used) if j[0] == "status"]
    assert status_changes[-1] == ("status", "ready_for_activation", "active", f"account-status:{path.name}")
    idle_card = await sim(settings, idle)
    assert idle_card.status is SimStatus.READY_FOR_ACTIVATION and idle_card.remaining_bytes == ALLOWANCE
    assert idle_card.first_usage_at is None

    # Tenancy: another organisation's SIM named in the file is reported like an unknown one, untouched.
    foreign_after = await sim(settings, foreign)
    assert foreign_after.status is SimStatus.READY_FOR_ACTIVATION
    assert (foreign_after.remaining_bytes, foreign_after.month_usage_bytes, foreign_after.first_usage_at) == (
        foreign_before.remaining_bytes,
        foreign_before.month_usage_bytes,
        None,
    )
    assert await journal(settings, foreign) == foreign_journal
    assert await deliveries(settings, foreign) == []

    record = await db_one(settings, select(AccountStatusImport).where(AccountStatusImport.org_id == tenant.org_id))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record.sha256, record.status, record.workflow_id) == (
        sha256,
        "completed",
        workflow_id(tenant.org_id, sha256),
    )
    assert (record.rows, record.applied, record.activated, record.unknown, record.errors) == (5, 2, 1, 2, 1)
    assert [(p["row"], p["iccid"], p["field"]) for p in record.problems] == [
        (4, foreign, "iccid"),
        (5, unknown, "iccid"),
        (6, bad, "iccid"),
    ]
    assert record.problems[0]["reason"] == record.problems[1]["reason"]  # nothing tells the SIM exists

    # One first-usage event, delivered once, signed for the organisation.
    body = await delivered(temporal_client, usage_settings, receiver, used)
    assert body["id"] == f"first-usage:{used}" and body["org_id"] == tenant.org_id
    assert body["data"]["sim_card"]["status"] == "active" and body["data"]["sim_card"]["msisdn"]
    assert body["data"]["first_usage_at"].startswith("2025-03-01T09:12:00")
    handle = temporal_client.get_workflow_handle_for(AccountStatusImportWorkflow.run, record.workflow_id)
    described = await handle.describe()
    assert described.status is WorkflowExecutionStatus.COMPLETED
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "completed"
    first = await handle.result()
    assert (first.rows, first.applied, first.activated, first.unknown, first.errors, first.published) == (
        5,
        2,
        1,
        2,
        1,
        1,
    )
    await keep_history(handle, "AccountStatusImportWorkflow", "first_usage")

    # The same file again (even renamed): nothing more happens.
    journals = {i: await journal(settings, i) for i in (used, idle, foreign)}
    again = await import_account_status_file(
        usage_settings, path.rename(tmp_path / "copie.csv"), tenant.org_id, client=temporal_client
    )
    assert again.duplicate and again.workflow_id == record.workflow_id
    assert (again.result.applied, again.result.activated, again.result.unknown) == (2, 1, 2)
    assert {i: await journal(settings, i) for i in (used, idle, foreign)} == journals
    assert len(await deliveries(settings, used)) == 1
    assert (
        await db_one(
            settings,
            select(func.count()).select_from(AccountStatusImport).where(AccountStatusImport.org_id == tenant.org_id),
        )
        == 1
    )
    assert len(receiver.first_usages(used)) == 1

    # A file the organisation cannot read at all is refused before anything is stored.
    broken = tmp_path / "broken.csv"
    broken.write_text("iccid,data_used_bytes\n", encoding="utf-8")
    refused = await asyncio.to_thread(
        run_cli, usage_settings, "import-account-status", str(broken), "--org", tenant.org_id
    )
    assert refused.returncode == 2 and "colonnes manquantes" in refused.stdout


async def test_an_interrupted_import_resumes_after_its_last_committed_chunk(
    tenant: Tenant, settings: Settings, usage_settings: Settings, temporal_client: Client
) -> None:
    """The cursor moves with each chunk's transaction: an attempt that starts again (worker lost after a
    commit) applies only the rows after it, and a closed import answers its counts without applying."""
    first, second, third = tenant.iccids
    content = "\r\n".join(
        [HEADER, *(f"{iccid};;active;0;{n * MB};" for n, iccid in enumerate((first, second, third), start=1))]
    ).encode()
    engine = create_engine(settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            record = AccountStatusImport(
                org_id=tenant.org_id,
                sha256=hashlib.sha256(content).hexdigest(),
                filename="interrupted.csv",
                content=content,
                workflow_id="account-status/test/interrupted",
                next_row=1,  # the first chunk was committed by the lost attempt…
                applied=1,
                problems=[],
                created_by="test",
            )
            session.add(record)
        async with OcsClient(usage_settings.ocs_url, usage_settings.ocs_tenant, 3.0) as ocs:
            activities = UsageActivities(sessionmaker, ocs, usage_settings, emit_event)
            env = ActivityEnvironment(client=temporal_client)
            beats: list[Any] = []
            env.on_heartbeat = lambda *details: beats.append(details)
            data = ApplyAccountStatus(org_id=tenant.org_id, import_id=record.id, actor="test-resume", chunk_rows=1)
            result = await env.run(activities.apply_account_status, data)
            again = await env.run(activities.apply_account_status, data)
            stranger = ApplyAccountStatus(org_id=uuid.uuid4().hex, import_id=record.id, actor="x", chunk_rows=1)
            with pytest.raises(ApplicationError, match="not found"):
                await env.run(activities.apply_account_status, stranger)
    finally:
        await engine.dispose()
    assert (result.rows, result.applied, result.activated, result.unknown, result.errors) == (3, 3, 0, 0, 0)
    assert again == result
    assert beats == [(2,), (3,)]  # one heartbeat per chunk applied
    cards = {c.iccid: c for c in await db_all(settings, select(SimCard).where(SimCard.iccid.in_(tenant.iccids)))}
    assert cards[first].remaining_bytes is None  # …and is not applied again
    assert (cards[second].remaining_bytes, cards[third].remaining_bytes) == (2 * MB, 3 * MB)


# --- first usage in the OCS --------------------------------------------------------------------------


async def test_ocs_scan_activates_on_consumed_data_once(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    usage_settings: Settings,
    receiver: Receiver,
    ocs_url: str,
) -> None:
    from starters.schedules import ensure_schedules
    from workflows.first_usage import SCHEDULE_ID

    used, idle = tenant.iccids[0], tenant.iccids[1]
    line_id = await activate(app_client, temporal_client, tenant, used)
    await activate(app_client, temporal_client, tenant, idle)
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    ocs_debit(ocs_url, line.ocs_account or "", 25 * MB)  # the SIM's first data session, rated by the OCS

    scan_id = f"{SCHEDULE_ID}-test-{uuid.uuid4().hex[:8]}"
    scan = FirstUsageScan(org_id=tenant.org_id, batch_size=1)  # one SIM per page: the cursor is exercised
    handle = await temporal_client.start_workflow(
        FirstUsageScanWorkflow.run,
        scan,
        id=scan_id,
        task_queue=usage_settings.task_queue,
        execution_timeout=timedelta(minutes=2),
    )
    result = await handle.result()
    assert (result.checked, result.activated, result.published) == (2, 1, 1)
    await keep_history(handle, "FirstUsageScanWorkflow", "one_of_two_used")

    card = await sim(settings, used)
    assert card.status is SimStatus.ACTIVE and card.remaining_bytes == ALLOWANCE - 25 * MB
    assert card.remaining_days is not None and 28 <= card.remaining_days <= 30
    assert card.first_usage_at is not None and card.first_usage_published_at is not None
    status_changes = [j for j in await journal(settings, used) if j[0] == "status"]
    assert status_changes[-1] == ("status", "ready_for_activation", "active", "ocs:first-usage-scan")
    idle_card = await sim(settings, idle)
    assert idle_card.status is SimStatus.READY_FOR_ACTIVATION and idle_card.remaining_bytes == ALLOWANCE
    body = await delivered(temporal_client, usage_settings, receiver, used)
    assert body["data"]["sim_card"]["iccid"] == used

    # Scanning again finds nothing new: no journal entry, no event.
    entries = await journal(settings, used)
    second = await temporal_client.execute_workflow(
        FirstUsageScanWorkflow.run,
        scan,
        id=f"{scan_id}-2",
        task_queue=usage_settings.task_queue,
        execution_timeout=timedelta(minutes=2),
    )
    assert (second.checked, second.activated, second.published) == (1, 0, 0)
    assert await journal(settings, used) == entries
    assert len(await deliveries(settings, used)) == 1

    # The worker creates the schedule that runs the scan; creating it twice is harmless.
    await ensure_schedules(temporal_client, usage_settings)
    await ensure_schedules(temporal_client, usage_settings)
    schedule = temporal_client.get_schedule_handle(SCHEDULE_ID)
    try:
        described = await schedule.describe()
        assert described.schedule.spec.intervals[0].every == timedelta(seconds=usage_settings.first_usage_scan_s)
        action = described.schedule.action
        assert getattr(action, "workflow", None) == "FirstUsageScanWorkflow"
    finally:
        await schedule.delete()  # other modules' SIMs are not this test's to scan
