"""Helpers of the SIM lifecycle end-to-end tests: a tenant (organisation, company synced with CFAST, plans,
a number range, SIMs imported through the API), the simulators' state, and "nothing half-provisioned"."""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle

from domain.enums import LineStatus, PhoneNumberStatus, SimStatus
from domain.models import Line, PhoneNumber, SimCard
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.api._support import random_iccid, random_imsi
from workflows.cfast_customer import CfastCustomerWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "replay" / "histories"


@dataclass
class Tenant:
    org_id: str
    company_id: str
    plan_id: str
    plan2_id: str
    first_msisdn: str
    last_msisdn: str
    headers: dict[str, str]
    iccids: list[str] = field(default_factory=list)


async def db_all(settings: Settings, query: Any) -> list[Any]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.execute(query)).scalars())
    finally:
        await engine.dispose()


async def db_one(settings: Settings, query: Any) -> Any:
    rows = await db_all(settings, query)
    assert len(rows) == 1, rows
    return rows[0]


async def create_org(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    slug = f"lc-{uuid.uuid4().hex[:10]}"
    response = await client.post(
        "/api/v1/organisations", json={"name": f"Intégrateur {slug}", "slug": slug}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def create_company(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    temporal: Client,
    org_id: str,
    *,
    name: str = "Transports Dupont",
) -> str:
    response = await client.post("/api/v1/companies", json={"org_id": org_id, "name": name}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    await temporal.get_workflow_handle_for(CfastCustomerWorkflow.run, body["workflow_id"]).result()
    return str(body["id"])


async def create_plan(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    org_id: str,
    *,
    offer: str,
    price: int,
    data_mb: int,
    plan_type: str = "prepaid",
) -> str:
    response = await client.post(
        "/api/v1/plans",
        json={
            "org_id": org_id,
            "name": f"Forfait {offer}",
            "plan_type": plan_type,
            "price_minor": price,
            "data_allowance_mb": data_mb,
            "validity_days": 30,
            "carrier": "Orange",
            "supplier_offer_code": offer,
            "purchase_price_minor": price // 3,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def create_range(client: httpx.AsyncClient, headers: dict[str, str], org_id: str, size: int) -> tuple[str, str]:
    """A range of `size` fresh 06 numbers (random block, retried on overlap)."""
    for _ in range(20):
        base = 33610000000 + random.randrange(0, 8_999_999 // max(size, 1)) * size
        first, last = f"+{base}", f"+{base + size - 1}"
        response = await client.post(
            "/api/v1/number-ranges",
            json={"org_id": org_id, "label": "Plage de test", "first_msisdn": first, "last_msisdn": last},
            headers=headers,
        )
        if response.status_code == 201:
            return first, last
        assert response.status_code == 409, response.text
    raise AssertionError("no free number block")


def sims_csv(count: int, *, esim: bool = False) -> tuple[bytes, list[str]]:
    iccids = [random_iccid() for _ in range(count)]
    lines = ["iccid;imsi;puk1;puk2;carrier;esim"]
    lines += [f"{iccid};{random_imsi()};12345678;87654321;Orange;{'1' if esim else '0'}" for iccid in iccids]
    return ("\n".join(lines) + "\n").encode(), iccids


async def import_sims(client: httpx.AsyncClient, headers: dict[str, str], org_id: str, count: int) -> list[str]:
    content, iccids = sims_csv(count)
    response = await client.post(
        "/api/v1/sims/import",
        files={"file": ("commande.csv", content, "text/csv")},
        data={"org_id": org_id},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == count, response.text
    return iccids


async def make_tenant(
    client: httpx.AsyncClient, headers: dict[str, str], temporal: Client, *, sims: int = 5, range_size: int = 100
) -> Tenant:
    org_id = await create_org(client, headers)
    company_id = await create_company(client, headers, temporal, org_id)
    plan_id = await create_plan(client, headers, org_id, offer="MOB_5GO", price=1500, data_mb=5 * 1024)
    plan2_id = await create_plan(client, headers, org_id, offer="MOB_ILLIMITE_50GO", price=2900, data_mb=50 * 1024)
    first, last = await create_range(client, headers, org_id, range_size)
    tenant = Tenant(org_id, company_id, plan_id, plan2_id, first, last, headers)
    if sims:
        tenant.iccids = await import_sims(client, headers, org_id, sims)
    return tenant


# --- simulators ----------------------------------------------------------------------------------


def add_fault(base_url: str, op: str, mode: str, times: int = 1, latency_ms: int = 0, match: str | None = None) -> None:
    """Queues a fault on a simulator; with `match`, only a call whose key or request holds that text (this
    test's account, line or workflow id) takes it, never another test's call to the shared simulator."""
    fault = {"op": op, "mode": mode, "times": times, "latency_ms": latency_ms, "match": match}
    httpx.post(f"{base_url}/_sim/faults", json=fault, timeout=5).raise_for_status()


def clear_faults(*base_urls: str) -> None:
    for url in base_urls:
        httpx.delete(f"{url}/_sim/faults", timeout=5).raise_for_status()


def ocs_account(ocs_url: str, account: str) -> dict[str, Any] | None:
    body = httpx.post(
        ocs_url,
        json={"method": "APIerSv2.GetAccount", "params": [{"Tenant": "simflow", "Account": account}], "id": "t"},
        timeout=5,
    ).json()
    if body.get("error"):
        assert body["error"].startswith("NOT_FOUND"), body
        return None
    result: dict[str, Any] = body["result"]
    return result


def ocs_debit(ocs_url: str, account: str, bytes_used: int) -> None:
    """Usage, as the OCS rates it (the simulator's `DebitBalance` stands in for a CDR)."""
    body = httpx.post(
        ocs_url,
        json={
            "method": "APIerSv1.DebitBalance",
            "params": [{"Tenant": "simflow", "Account": account, "BalanceType": "*data", "Value": bytes_used}],
            "id": "usage",
        },
        timeout=5,
    ).json()
    assert not body.get("error"), body


def snaic_lines(snaic_url: str, iccid: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = httpx.get(f"{snaic_url}/lines", params={"iccid": iccid}, timeout=5).json()["lines"]
    return lines


def cfast_service(cfast_url: str, label: str) -> dict[str, Any] | None:
    response = httpx.get(f"{cfast_url}/services", params={"serviceLabel": label}, timeout=5)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    service: dict[str, Any] = response.json()
    return service


def sim_calls(base_url: str, op: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{base_url}/_sim/calls", params={"op": op}, timeout=5).json()
    return calls


async def assert_nothing_provisioned(
    settings: Settings, *, iccid: str, line_id: str, snaic_url: str, ocs_url: str, cfast_url: str
) -> Line:
    """After a failed activation: SIM back in stock, number free, line obsolete (kept for history), and no
    live trace in SNAIC, the OCS or CFAST."""
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == iccid))
    assert sim.status is SimStatus.BLANK and sim.reserved_by is None, (sim.status, sim.reserved_by)
    assert sim.company_id is None and sim.plan_id is None
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    assert line.status is LineStatus.OBSOLETE, line.status
    assert line.failure_reason
    numbers = await db_all(
        settings, select(PhoneNumber).where(PhoneNumber.reservation_key == line.activation_workflow_id)
    )
    assert numbers == [], [(n.msisdn, n.status) for n in numbers]
    if line.msisdn:
        held = await db_all(
            settings,
            select(PhoneNumber).where(
                PhoneNumber.msisdn == line.msisdn,
                PhoneNumber.status.in_([PhoneNumberStatus.RESERVED, PhoneNumberStatus.ASSIGNED]),
            ),
        )
        assert held == []
        service = cfast_service(cfast_url, line.msisdn)
        assert service is None or service["status"] == "terminated", service
    live = [x for x in snaic_lines(snaic_url, iccid) if x["status"] not in ("terminated", "rejected")]
    assert live == [], live
    assert ocs_account(ocs_url, line_id) is None
    return line


# --- replay histories ----------------------------------------------------------------------------


async def keep_history(handle: WorkflowHandle[Any, Any], workflow_type: str, case: str) -> None:
    """With SIMFLOW_RECORD_HISTORIES=1, writes the run's history for the replay tests, under the case's name
    plus SIMFLOW_HISTORY_SUFFIX (the histories of a new code path sit beside the old ones, which stay)."""
    if os.environ.get("SIMFLOW_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json.loads(history.to_json()), indent=1, sort_keys=True)
    suffix = os.environ.get("SIMFLOW_HISTORY_SUFFIX", "")
    (HISTORIES / f"{workflow_type}__{case}{suffix}.json").write_text(text + "\n", encoding="utf-8")
