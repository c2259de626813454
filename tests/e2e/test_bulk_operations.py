"""Bulk operations end to end (seed 000 "Opérations en masse"): a parent workflow, one child per SIM with
bounded concurrency, live progress, a per-SIM report exported as CSV; and the 1,000-SIM activation whose
duration is measured (printed, and written to var/bench/bulk_activation_1000.json)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client

from domain.enums import LineStatus, SimStatus
from domain.identifiers import iccid_with_check_digit
from domain.models import Line, SimCard, SimMessage
from infra.settings import Settings
from tests.e2e.lifecycle_support import (
    Tenant,
    clear_faults,
    db_all,
    keep_history,
    make_tenant,
    ocs_debit,
    snaic_lines,
)
from tests.e2e.topup_support import ApiServer, serve_api
from workflows.bulk import BulkOperationWorkflow

pytestmark = pytest.mark.usefixtures("worker")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest.fixture(autouse=True)
def no_faults(snaic_url: str, ocs_base_url: str, cfast_url: str) -> Iterator[None]:
    yield
    clear_faults(snaic_url, ocs_base_url, cfast_url)


@pytest_asyncio.fixture
async def tenant(
    live_api: ApiServer, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> Tenant:
    return await make_tenant(app_client, admin_headers, temporal_client, sims=12, range_size=100)


async def run_bulk(
    client: httpx.AsyncClient, temporal: Client, tenant: Tenant, kind: str, iccids: list[str], **params: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/bulk-operations",
        json={"kind": kind, "iccids": iccids, "params": params, "max_concurrency": 5},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    await asyncio.wait_for(
        temporal.get_workflow_handle_for(BulkOperationWorkflow.run, body["workflow_id"]).result(), 120
    )
    final = await client.get(f"/api/v1/bulk-operations/{body['id']}", headers=tenant.headers)
    result: dict[str, Any] = final.json()
    return result


async def report(client: httpx.AsyncClient, tenant: Tenant, bulk_id: str) -> list[dict[str, str]]:
    response = await client.get(f"/api/v1/bulk-operations/{bulk_id}/report.csv", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=";"))


async def test_bulk_activate_suspend_edit_usage_and_cancel(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
) -> None:
    sims = tenant.iccids[:10]
    unknown = iccid_with_check_digit("893300000000000000")
    activated = await run_bulk(
        app_client,
        temporal_client,
        tenant,
        "activate",
        [*sims, unknown],
        company_id=tenant.company_id,
        plan_id=tenant.plan_id,
    )
    assert (activated["status"], activated["total"], activated["succeeded"]) == ("completed", 11, 10)
    assert activated["skipped"] == 1
    rows = await report(app_client, tenant, activated["id"])
    assert [r["iccid"] for r in rows] == [*sims, unknown]
    assert {r["resultat"] for r in rows[:10]} == {"réussie"} and rows[10]["resultat"] == "ignorée"
    assert rows[10]["detail"] == "carte SIM introuvable"
    assert all(r["workflow_id"].startswith("sim-activation/") for r in rows[:10])
    lines = await db_all(settings, select(Line).where(Line.org_id == tenant.org_id))
    assert sorted(ln.status for ln in lines) == [LineStatus.ACTIVE] * 10
    assert len({ln.msisdn for ln in lines}) == 10
    handle = temporal_client.get_workflow_handle_for(BulkOperationWorkflow.run, activated["workflow_id"])
    await keep_history(handle, "BulkOperationWorkflow", "activate")

    # Activating again: every SIM is skipped (already in service), nothing is ordered twice.
    again = await run_bulk(
        app_client, temporal_client, tenant, "activate", sims[:3], company_id=tenant.company_id, plan_id=tenant.plan_id
    )
    assert (again["succeeded"], again["skipped"]) == (0, 3)

    suspended = await run_bulk(app_client, temporal_client, tenant, "suspend", sims[:4])
    assert suspended["succeeded"] == 4
    assert {snaic_lines(snaic_url, i)[0]["status"] for i in sims[:4]} == {"suspended"}

    changed = await run_bulk(app_client, temporal_client, tenant, "change_plan", sims[4:6], plan_id=tenant.plan2_id)
    assert changed["succeeded"] == 2

    noted = await run_bulk(app_client, temporal_client, tenant, "edit_note", sims, note="Flotte commerciale")
    tagged = await run_bulk(app_client, temporal_client, tenant, "set_tags", sims[:2], tags=["vip", "paris"])
    sms = await run_bulk(app_client, temporal_client, tenant, "send_sms", sims[6:8], text="Bienvenue !")
    assert (noted["succeeded"], tagged["succeeded"], sms["succeeded"]) == (10, 2, 2)
    cards = {s.iccid: s for s in await db_all(settings, select(SimCard).where(SimCard.iccid.in_(sims)))}
    assert {s.note for s in cards.values()} == {"Flotte commerciale"}
    assert cards[sims[0]].tags == ["paris", "vip"]
    messages = await db_all(settings, select(SimMessage).where(SimMessage.reference.like(f"{sms['id']}:%")))
    assert len(messages) == 2

    # First usage seen in the OCS: the refresh turns the SIM `active`.
    line_of = {ln.sim_id: ln for ln in lines}
    used = cards[sims[8]]
    ocs_debit(ocs_url, line_of[used.id].ocs_account or "", 10 * 1024 * 1024)
    usage = await run_bulk(app_client, temporal_client, tenant, "refresh_usage", sims[8:10])
    assert usage["succeeded"] == 2
    refreshed = {s.iccid: s for s in await db_all(settings, select(SimCard).where(SimCard.iccid.in_(sims[8:10])))}
    assert refreshed[sims[8]].status is SimStatus.ACTIVE
    assert refreshed[sims[9]].status is SimStatus.READY_FOR_ACTIVATION
    assert refreshed[sims[8]].remaining_bytes == 5 * 1024**3 - 10 * 1024 * 1024

    # Cancel SIM: lines terminated everywhere; a SIM without line is cancelled in the database.
    blank = tenant.iccids[11]
    cancelled = await run_bulk(app_client, temporal_client, tenant, "cancel_sim", [sims[9], blank])
    assert cancelled["succeeded"] == 2, await report(app_client, tenant, cancelled["id"])
    final = {s.iccid: s for s in await db_all(settings, select(SimCard).where(SimCard.iccid.in_([sims[9], blank])))}
    assert {s.status for s in final.values()} == {SimStatus.TERMINATED}
    assert snaic_lines(snaic_url, sims[9])[0]["status"] == "terminated"
    handle = temporal_client.get_workflow_handle_for(BulkOperationWorkflow.run, cancelled["workflow_id"])
    await keep_history(handle, "BulkOperationWorkflow", "cancel_sim")


async def test_bulk_progress_is_live_and_cancel_stops_new_items(
    tenant: Tenant, app_client: httpx.AsyncClient, temporal_client: Client, settings: Settings, snaic_url: str
) -> None:
    from tests.e2e.lifecycle_support import add_fault

    add_fault(snaic_url, "complete_create_line", "latency", times=12, latency_ms=700)
    response = await app_client.post(
        "/api/v1/bulk-operations",
        json={
            "kind": "activate",
            "iccids": tenant.iccids,
            "params": {"company_id": tenant.company_id, "plan_id": tenant.plan_id},
            "max_concurrency": 2,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    seen_running = False
    for _ in range(200):
        progress = (await app_client.get(f"/api/v1/bulk-operations/{body['id']}", headers=tenant.headers)).json()
        if progress["running"] > 0:
            seen_running = True
            assert progress["running"] <= 2  # bounded concurrency
        if progress["done"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert seen_running
    cancel = await app_client.post(f"/api/v1/bulk-operations/{body['id']}/cancel", headers=tenant.headers)
    assert cancel.status_code == 202
    await asyncio.wait_for(
        temporal_client.get_workflow_handle_for(BulkOperationWorkflow.run, body["workflow_id"]).result(), 60
    )
    final = (await app_client.get(f"/api/v1/bulk-operations/{body['id']}", headers=tenant.headers)).json()
    assert final["status"] == "cancelled"
    assert final["succeeded"] < len(tenant.iccids) and final["skipped"] > 0
    assert final["succeeded"] + final["failed"] + final["skipped"] == len(tenant.iccids)
    rows = await report(app_client, tenant, body["id"])
    assert "en attente" not in {r["resultat"] for r in rows}
    handle = temporal_client.get_workflow_handle_for(BulkOperationWorkflow.run, body["workflow_id"])
    await keep_history(handle, "BulkOperationWorkflow", "cancel_signal")


async def test_pages_continue_as_new_and_carry_their_counts(
    tenant: Tenant, app_client: httpx.AsyncClient, temporal_client: Client, settings: Settings
) -> None:
    """Ten SIMs in pages of four: the run continues as new twice, the last run reports all ten."""
    from temporalio.api.enums.v1 import EventType

    from domain.enums import BulkOperationKind
    from domain.lifecycle_contracts import BulkItemInput, BulkOperationInput
    from domain.services.bulk import create_bulk_operation, normalise_items
    from infra.db import create_engine, create_sessionmaker
    from starters.lines import start_bulk
    from workflows.bulk import workflow_id as bulk_workflow_id

    sims = tenant.iccids[:10]
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            prepared = await create_bulk_operation(
                session,
                org_id=tenant.org_id,
                company_scope=None,
                kind=BulkOperationKind.EDIT_NOTE,
                items=normalise_items(sims),
                params={"note": "Paginée"},
                created_by="test",
                workflow_id_for=bulk_workflow_id,
            )
            await session.commit()
    finally:
        await engine.dispose()
    operation = prepared.operation
    data = BulkOperationInput(
        bulk_id=operation.id,
        org_id=tenant.org_id,
        kind="edit_note",
        params={"note": "Paginée"},
        items=[BulkItemInput(iccid=i.iccid) for i in prepared.runnable],
        page_size=4,
    )
    wf_id = await start_bulk(temporal_client, settings, data, "Modifier la note")
    progress = await asyncio.wait_for(
        temporal_client.get_workflow_handle_for(BulkOperationWorkflow.run, wf_id).result(), 120
    )
    assert (progress.status, progress.total, progress.succeeded, progress.done) == ("completed", 10, 10, 10)

    # Back from the last run, each run names the one it continues: three runs, two continued as new.
    run_ids = [(await temporal_client.get_workflow_handle(wf_id).describe()).run_id]
    while True:
        started = (await temporal_client.get_workflow_handle(wf_id, run_id=run_ids[0]).fetch_history()).events[0]
        previous = started.workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            break
        run_ids.insert(0, previous)
    assert len(run_ids) == 3, run_ids
    first_handle = temporal_client.get_workflow_handle(wf_id, run_id=run_ids[0])
    events = (await first_handle.fetch_history()).events
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    final = (await app_client.get(f"/api/v1/bulk-operations/{operation.id}", headers=tenant.headers)).json()
    assert (final["status"], final["succeeded"], final["done"]) == ("completed", 10, 10)
    notes = {s.note for s in await db_all(settings, select(SimCard).where(SimCard.iccid.in_(sims)))}
    assert notes == {"Paginée"}
    await keep_history(first_handle, "BulkOperationWorkflow", "first_page_continued_as_new")


async def test_bulk_request_is_checked(tenant: Tenant, app_client: httpx.AsyncClient) -> None:
    bad = await app_client.post(
        "/api/v1/bulk-operations",
        json={"kind": "activate", "iccids": tenant.iccids[:1], "params": {"plan_id": tenant.plan_id}},
        headers=tenant.headers,
    )
    assert bad.status_code in (404, 422) and bad.json()["errors"][0]["field"] == "params.company_id", bad.text
    luhn = await app_client.post(
        "/api/v1/bulk-operations",
        json={"kind": "edit_note", "iccids": ["8933000000000000001"], "params": {"note": "x"}},
        headers=tenant.headers,
    )
    assert luhn.status_code == 422 and luhn.json()["errors"][0]["field"] == "iccids.0"
    kind = await app_client.post(
        "/api/v1/bulk-operations", json={"kind": "explode", "iccids": tenant.iccids[:1]}, headers=tenant.headers
    )
    assert kind.status_code == 422


async def test_export_selected_sims_with_chosen_columns(tenant: Tenant, app_client: httpx.AsyncClient) -> None:
    response = await app_client.post(
        "/api/v1/sims/export",
        json={"iccids": tenant.iccids[:3], "columns": ["status", "iccid", "carrier"]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8")[1:]), delimiter=";"))
    assert rows[0] == ["Statut", "ICCID", "Opérateur"]
    assert [r[1] for r in rows[1:]] == tenant.iccids[:3]
    assert {r[0] for r in rows[1:]} == {"Vierge"}


@pytest.mark.timeout(1200)
async def test_bulk_activation_is_measured(
    live_api: ApiServer,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
) -> None:
    """SIMFLOW_BULK_SIMS (default 1,000; `make test` runs 200, `make bulk-activation` 1,000) SIM activations
    (each: SNAIC order with callback, OCS account and allowance, CFAST service line, database), 50 at a time,
    against the simulators on one machine."""
    count = int(os.environ.get("SIMFLOW_BULK_SIMS", "1000"))
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=count, range_size=2000)
    started = time.monotonic()
    response = await app_client.post(
        "/api/v1/bulk-operations",
        json={
            "kind": "activate",
            "iccids": tenant.iccids,
            "params": {"company_id": tenant.company_id, "plan_id": tenant.plan_id},
            "max_concurrency": 50,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    handle = temporal_client.get_workflow_handle_for(BulkOperationWorkflow.run, body["workflow_id"])
    progress = await asyncio.wait_for(handle.result(), timeout=1100)
    elapsed = time.monotonic() - started
    assert (progress.succeeded, progress.failed, progress.skipped) == (count, 0, 0), progress
    lines = await db_all(settings, select(Line).where(Line.org_id == tenant.org_id, Line.status == LineStatus.ACTIVE))
    assert len(lines) == count and len({ln.msisdn for ln in lines}) == count
    measured = {
        "sims": count,
        "max_concurrency": 50,
        "seconds": round(elapsed, 1),
        "activations_per_second": round(count / elapsed, 2),
        "database": settings.database_url.split(":", 1)[0],
    }
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bulk_activation_{count}.json").write_text(json.dumps(measured, indent=1) + "\n", encoding="utf-8")
    print(f"\nbulk activation of {count} SIMs: {elapsed:.1f} s ({count / elapsed:.1f} activations/s)")
