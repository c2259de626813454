"""Suspend / resume / change plan and deprovisioning end to end, against the simulators: SNAIC, the OCS
and CFAST stay consistent, every push is a MAJ record, failures compensate (operations) or wait for staff
in `needs_attention` (termination), and a top-up racing a termination has a defined outcome."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError

from domain.enums import LineStatus, PhoneNumberStatus, SimStatus
from domain.lifecycle_contracts import ResolveAttention
from domain.models import Line, LineChange, PhoneNumber, SimCard, UpdateRecord
from infra.settings import Settings
from tests.e2e.lifecycle_support import (
    Tenant,
    add_fault,
    cfast_service,
    clear_faults,
    db_all,
    db_one,
    keep_history,
    make_tenant,
    ocs_account,
    snaic_lines,
)
from tests.e2e.topup_support import ApiServer, serve_api
from workflows.deprovisioning import DeprovisioningWorkflow, LineQuarantineWorkflow, quarantine_workflow_id
from workflows.line_operations import LineOperationWorkflow
from workflows.sim_activation import SimActivationWorkflow

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest.fixture(autouse=True)
def no_faults(snaic_url: str, ocs_base_url: str, cfast_url: str) -> Iterator[None]:
    yield
    clear_faults(snaic_url, ocs_base_url, cfast_url)


@pytest_asyncio.fixture
async def active_line(
    live_api: ApiServer, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> tuple[Tenant, dict[str, Any]]:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    response = await app_client.post(
        f"/api/v1/sims/{tenant.iccids[0]}/activation",
        json={"company_id": tenant.company_id, "plan_id": tenant.plan_id},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    await temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, accepted["workflow_id"]).result()
    line = (await app_client.get(f"/api/v1/lines/{accepted['line_id']}", headers=tenant.headers)).json()
    return tenant, line


async def run_operation(
    client: httpx.AsyncClient, temporal: Client, tenant: Tenant, method: str, url: str, **kwargs: Any
) -> tuple[dict[str, Any], Any]:
    response = await client.request(method, url, headers=tenant.headers, **kwargs)
    assert response.status_code == 202, response.text
    accepted = response.json()
    handle = temporal.get_workflow_handle_for(LineOperationWorkflow.run, accepted["workflow_id"])
    return accepted, handle


# --- suspend, resume, change plan ------------------------------------------------------------------


async def test_suspend_then_resume_keeps_snaic_ocs_and_database_consistent(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
) -> None:
    tenant, line = active_line
    _, handle = await run_operation(
        app_client, temporal_client, tenant, "POST", f"/api/v1/lines/{line['id']}/suspension"
    )
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "completed"
    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert snaic["status"] == "suspended"
    assert ocs_account(ocs_url, line["ocs_account"])["Disabled"] is True  # type: ignore[index]
    suspended = (await app_client.get(f"/api/v1/lines/{line['id']}", headers=tenant.headers)).json()
    assert suspended["status"] == "suspended" and suspended["accepts_topup"] is False
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == tenant.iccids[0]))
    assert sim.status is SimStatus.SUSPENDED
    await keep_history(handle, "LineOperationWorkflow", "suspend")

    # Suspending again is refused: the line is not active.
    again = await app_client.post(f"/api/v1/lines/{line['id']}/suspension", headers=tenant.headers)
    assert again.status_code == 409, again.text

    _, handle = await run_operation(
        app_client, temporal_client, tenant, "DELETE", f"/api/v1/lines/{line['id']}/suspension"
    )
    await asyncio.wait_for(handle.result(), timeout=60)
    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert snaic["status"] == "active"
    assert not ocs_account(ocs_url, line["ocs_account"]).get("Disabled")  # type: ignore[union-attr]
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == tenant.iccids[0]))
    assert sim.status is SimStatus.READY_FOR_ACTIVATION  # back to its status before the suspension
    journal = (await app_client.get(f"/api/v1/lines/{line['id']}/journal", headers=tenant.headers)).json()
    statuses = [(j["old_value"], j["new_value"]) for j in reversed(journal) if j["field"] == "status"]
    assert statuses == [("under_construction", "active"), ("active", "suspended"), ("suspended", "active")]


async def test_suspend_compensates_supplier_when_ocs_refuses(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_base_url: str,
    ocs_url: str,
) -> None:
    tenant, line = active_line
    add_fault(ocs_base_url, "APIerSv2.SetAccount", "reject")
    _, handle = await run_operation(
        app_client, temporal_client, tenant, "POST", f"/api/v1/lines/{line['id']}/suspension"
    )
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)
    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert snaic["status"] == "active"  # suspended, then resumed by the compensation
    account = ocs_account(ocs_url, line["ocs_account"])
    assert account is not None and not account.get("Disabled")
    current = await db_one(settings, select(Line).where(Line.id == line["id"]))
    assert current.status is LineStatus.ACTIVE
    records = await db_all(
        settings, select(UpdateRecord).where(UpdateRecord.line_id == line["id"]).order_by(UpdateRecord.id)
    )
    ops = [r.operation for r in records if r.workflow_id == handle.id]
    assert ops[:3] == ["snaic_suspend", "snaic_suspend_result", "ocs_suspend"]
    assert "compensate_snaic" in ops


async def test_change_plan_moves_snaic_offer_ocs_allowance_and_cfast_subscription(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    tenant, line = active_line
    _, handle = await run_operation(
        app_client,
        temporal_client,
        tenant,
        "POST",
        f"/api/v1/lines/{line['id']}/plan-change",
        json={"plan_id": tenant.plan2_id},
    )
    await asyncio.wait_for(handle.result(), timeout=60)
    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert [o["offer_code"] for o in snaic["active_offers"]] == ["MOB_ILLIMITE_50GO"]
    balances = ocs_account(ocs_url, line["ocs_account"])["BalanceMap"]["*data"]  # type: ignore[index]
    assert [b["ID"] for b in balances] == [f"plan-{tenant.plan2_id}"]
    service = cfast_service(cfast_url, line["msisdn"])
    assert service is not None and service["articleCode"] == "MOB_ILLIMITE_50GO"
    assert service["articlePeriodicPrice"] == 2900
    current = await db_one(settings, select(Line).where(Line.id == line["id"]))
    assert current.plan_id == tenant.plan2_id
    changes = await db_all(settings, select(LineChange).where(LineChange.line_id == line["id"]))
    assert ("plan_id", tenant.plan_id, tenant.plan2_id) in [(c.field, c.old_value, c.new_value) for c in changes]
    await keep_history(handle, "LineOperationWorkflow", "change_plan")


async def test_change_plan_failure_at_cfast_restores_offer_and_allowance(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    tenant, line = active_line
    add_fault(cfast_url, "change_subscription", "reject")
    _, handle = await run_operation(
        app_client,
        temporal_client,
        tenant,
        "POST",
        f"/api/v1/lines/{line['id']}/plan-change",
        json={"plan_id": tenant.plan2_id},
    )
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)
    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert [o["offer_code"] for o in snaic["active_offers"]] == ["MOB_5GO"]
    balances = ocs_account(ocs_url, line["ocs_account"])["BalanceMap"]["*data"]  # type: ignore[index]
    assert [b["ID"] for b in balances] == [f"plan-{tenant.plan_id}"]
    service = cfast_service(cfast_url, line["msisdn"])
    assert service is not None and service["articleCode"] == "MOB_5GO"
    current = await db_one(settings, select(Line).where(Line.id == line["id"]))
    assert current.plan_id == tenant.plan_id


# --- deprovisioning ----------------------------------------------------------------------------------


async def test_immediate_termination_everywhere_then_number_in_quarantine(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    tenant, line = active_line
    response = await app_client.post(
        f"/api/v1/lines/{line['id']}/termination", json={"grace_days": 0}, headers=tenant.headers
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["workflow_id"] == f"deprovision/{tenant.org_id}/{line['id']}"
    handle = temporal_client.get_workflow_handle_for(DeprovisioningWorkflow.run, body["workflow_id"])
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "terminated" and result.quarantine_until is not None

    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert snaic["status"] == "terminated"
    account = ocs_account(ocs_url, line["ocs_account"])
    assert account is not None and account["Disabled"] is True  # kept (late CDRs) until the quarantine ends
    service = cfast_service(cfast_url, line["msisdn"])
    assert service is not None and service["status"] == "terminated" and service["terminationDate"]
    current = (await app_client.get(f"/api/v1/lines/{line['id']}", headers=tenant.headers)).json()
    assert current["status"] == "terminated" and current["terminated_at"] and current["accepts_topup"] is False
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == tenant.iccids[0]))
    assert sim.status is SimStatus.TERMINATED
    number = await db_one(settings, select(PhoneNumber).where(PhoneNumber.msisdn == line["msisdn"]))
    assert number.status is PhoneNumberStatus.QUARANTINED and number.quarantine_until is not None
    # History kept: the line, its journal and MAJ records stay.
    updates = (await app_client.get(f"/api/v1/lines/{line['id']}/updates", headers=tenant.headers)).json()
    ops = [u["operation"] for u in updates if u["workflow_id"] == body["workflow_id"]]
    assert ops == [
        "snaic_terminate_line",
        "snaic_terminate_line_result",
        "ocs_disable_account",
        "cfast_terminate_service",
    ]
    # The quarantine child outlives the deprovisioning and removes the OCS account later.
    quarantine = temporal_client.get_workflow_handle_for(
        LineQuarantineWorkflow.run, quarantine_workflow_id(tenant.org_id, line["id"])
    )
    assert (await quarantine.query(LineQuarantineWorkflow.business_status)) == "quarantine"
    await quarantine.terminate("test: quarantine covered by the time-skipping test")
    await keep_history(handle, "DeprovisioningWorkflow", "immediate")
    # Terminating again is refused.
    again = await app_client.post(f"/api/v1/lines/{line['id']}/termination", json={}, headers=tenant.headers)
    assert again.status_code == 409


async def test_grace_period_cancelled_by_delete_and_topup_gate(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
) -> None:
    tenant, line = active_line
    response = await app_client.post(
        f"/api/v1/lines/{line['id']}/termination", json={"grace_days": 14}, headers=tenant.headers
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("grace_period", "starting", "scheduled")
    handle = temporal_client.get_workflow_handle_for(DeprovisioningWorkflow.run, body["workflow_id"])
    for _ in range(100):
        if (await handle.query(DeprovisioningWorkflow.state)).status == "grace_period":
            break
        await asyncio.sleep(0.05)
    state = await handle.query(DeprovisioningWorkflow.state)
    assert state.status == "grace_period" and state.grace_until is not None
    # During the grace period the line still works, but accepts no top-up (the balance would be lost).
    during = (await app_client.get(f"/api/v1/lines/{line['id']}", headers=tenant.headers)).json()
    assert during["status"] == "active" and during["accepts_topup"] is False
    assert during["termination_scheduled_for"]
    # A second request joins the running termination.
    twice = await app_client.post(
        f"/api/v1/lines/{line['id']}/termination", json={"grace_days": 7}, headers=tenant.headers
    )
    assert twice.status_code == 202 and twice.json()["workflow_id"] == body["workflow_id"]
    # A plan change is refused while a termination is scheduled.
    refused = await app_client.post(
        f"/api/v1/lines/{line['id']}/plan-change", json={"plan_id": tenant.plan2_id}, headers=tenant.headers
    )
    assert refused.status_code == 409

    cancelled = await app_client.delete(f"/api/v1/lines/{line['id']}/termination", headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    after = (await app_client.get(f"/api/v1/lines/{line['id']}", headers=tenant.headers)).json()
    assert after["status"] == "active" and after["accepts_topup"] is True and after["termination_scheduled_for"] is None
    (snaic,) = snaic_lines(snaic_url, tenant.iccids[0])
    assert snaic["status"] == "active"  # nothing was sent to the supplier
    await keep_history(handle, "DeprovisioningWorkflow", "cancelled_in_grace")
    # Nothing left to cancel.
    none_left = await app_client.delete(f"/api/v1/lines/{line['id']}/termination", headers=tenant.headers)
    assert none_left.status_code == 409
    # A new termination may be requested after a cancelled one.
    new = await app_client.post(f"/api/v1/lines/{line['id']}/termination", json={}, headers=tenant.headers)
    assert new.status_code == 202
    final = await asyncio.wait_for(
        temporal_client.get_workflow_handle_for(DeprovisioningWorkflow.run, new.json()["workflow_id"]).result(), 60
    )
    assert final.status == "terminated"


async def test_topup_racing_a_termination(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
) -> None:
    """The defined outcome: the termination closes the top-up gate in its first step; from then on
    `accepts_topup` (the gate the recharge route and the top-up workflow check) is false and the recharge
    API refuses the line (before any charge). Checked here with many gate reads racing the termination
    request: every read after the gate closed says no, and it never reopens."""
    from domain.services.lines import accepts_topup
    from infra.db import create_engine, create_sessionmaker

    tenant, line = active_line
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    stop = asyncio.Event()

    async def reader() -> list[bool]:
        # Each reader's reads are sequential, so its own list is in read order; appends from several
        # concurrent readers to one list would not be (a read started earlier may finish later).
        seen: list[bool] = []
        while not stop.is_set():
            async with sessionmaker() as session:
                current = await session.get(Line, line["id"])
                assert current is not None
                seen.append(accepts_topup(current))
            await asyncio.sleep(0)
        return seen

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    response = await app_client.post(
        f"/api/v1/lines/{line['id']}/termination", json={"grace_days": 0}, headers=tenant.headers
    )
    handle = temporal_client.get_workflow_handle_for(DeprovisioningWorkflow.run, response.json()["workflow_id"])
    await asyncio.wait_for(handle.result(), timeout=60)
    stop.set()
    observations = await asyncio.gather(*readers)
    await engine.dispose()
    for seen in observations:
        assert seen and seen[-1] is False
        first_closed = seen.index(False)
        assert all(v is False for v in seen[first_closed:]), "the gate reopened"
    # The recharge API (top-up engineer's route) refuses the terminated line before charging anything.
    recharge = await app_client.post(
        f"/api/v1/lines/{line['id']}/recharges",
        json={"data_gb": 1, "payment_method": "wallet"},
        headers={**tenant.headers, "Idempotency-Key": "race-after-termination"},
    )
    assert recharge.status_code == 409 and "line_id" in recharge.text, recharge.text


async def test_termination_step_failing_waits_in_needs_attention_until_retry(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    cfast_url: str,
    ocs_url: str,
) -> None:
    """Forward recovery: CFAST refuses the termination; the workflow does not stop half-way silently, it
    waits in `needs_attention` (SNAIC and OCS already done) until staff ask for a retry."""
    tenant, line = active_line
    add_fault(cfast_url, "terminate_service", "reject")
    response = await app_client.post(f"/api/v1/lines/{line['id']}/termination", json={}, headers=tenant.headers)
    handle = temporal_client.get_workflow_handle_for(DeprovisioningWorkflow.run, response.json()["workflow_id"])
    for _ in range(200):
        state = await handle.query(DeprovisioningWorkflow.state)
        if state.status == "needs_attention":
            break
        await asyncio.sleep(0.05)
    assert state.status == "needs_attention" and state.step == "cfast_terminate", state
    assert "cfast" in (state.attention or "")
    assert ocs_account(ocs_url, line["ocs_account"])["Disabled"] is True  # type: ignore[index]
    current = await db_one(settings, select(Line).where(Line.id == line["id"]))
    assert current.status is LineStatus.ACTIVE and current.termination_scheduled_for is not None
    # Cancelling is no longer possible: the termination has begun.
    refused = await app_client.delete(f"/api/v1/lines/{line['id']}/termination", headers=tenant.headers)
    assert refused.status_code == 409
    clear_faults(cfast_url)
    await handle.execute_update(DeprovisioningWorkflow.retry, ResolveAttention(requested_by="staff@test"))
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "terminated"
    service = cfast_service(cfast_url, line["msisdn"])
    assert service is not None and service["status"] == "terminated"
    await keep_history(handle, "DeprovisioningWorkflow", "needs_attention_then_retry")


# --- the line's number in Temporal's visibility: a keyed hash, never the number ----------------------------


async def test_line_workflows_are_found_by_the_keyed_hash_of_the_number_never_by_the_number(
    active_line: tuple[Tenant, dict[str, Any]],
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
) -> None:
    tenant, line = active_line
    _, suspension = await run_operation(
        app_client, temporal_client, tenant, "POST", f"/api/v1/lines/{line['id']}/suspension"
    )
    await asyncio.wait_for(suspension.result(), timeout=60)
    await keep_history(suspension, "LineOperationWorkflow", "suspend_indexed_by_msisdn_hash")
    msisdn = line["msisdn"]
    # HMAC-SHA-256 of the E.164 number under a key derived from SIMFLOW_SECRETS_KEY, 128 bits in hex.
    key = hmac.new(settings.secrets_key.get_secret_value().encode(), b"simflow-search-attribute|MsisdnHash", "sha256")
    expected = hmac.new(key.digest(), msisdn.encode(), "sha256").hexdigest()[:32]
    activation_id = f"sim-activation/{tenant.org_id}/{tenant.iccids[0]}"

    found: set[str] = set()
    for _ in range(50):  # visibility is eventually consistent
        found = {w.id async for w in temporal_client.list_workflows(f'MsisdnHash="{expected}"')}
        if {activation_id, suspension.id} <= found:
            break
        await asyncio.sleep(0.2)
    assert {activation_id, suspension.id} <= found, found

    national = "0" + msisdn.removeprefix("+33")
    org_workflows = [w async for w in temporal_client.list_workflows(f'OrgId="{tenant.org_id}"')]
    assert len(org_workflows) >= 2
    for execution in org_workflows:
        described = await temporal_client.get_workflow_handle(execution.id).describe()
        values = [str(v) for values in described.search_attributes.values() for v in values]
        assert "Msisdn" not in described.search_attributes, (execution.id, described.search_attributes)
        assert not [v for v in values if msisdn in v or national in v or msisdn[1:] in v], (execution.id, values)
