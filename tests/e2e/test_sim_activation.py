"""SIM activation end to end: API → Temporal → worker → SNAIC / OCS / CFAST simulators, with SNAIC's
callbacks reaching the API over HTTP; every failure point compensates every completed step."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.subscriptions import start_subscription_workflow
from domain.enums import LineStatus, MajStatus, PhoneNumberStatus, SimStatus
from domain.errors import ErrorCode, code_of
from domain.lifecycle_contracts import ResolveCompensation, SimActivationInput
from domain.models import Company, Line, PhoneNumber, SimCard, SimChange, UpdateRecord, new_id
from domain.subscription_contracts import SubscriptionInput
from infra.settings import Settings
from tests.e2e.lifecycle_support import (
    Tenant,
    add_fault,
    assert_nothing_provisioned,
    cfast_service,
    clear_faults,
    create_company,
    create_org,
    create_plan,
    create_range,
    db_all,
    db_one,
    import_sims,
    keep_history,
    make_tenant,
    ocs_account,
    sim_calls,
    snaic_lines,
)
from tests.e2e.topup_support import ApiServer, serve_api
from workflows._search import BUSINESS_STATUS, ICCID, MSISDN, MSISDN_HASH, ORG_ID, initial_attributes
from workflows.sim_activation import SimActivationWorkflow, workflow_id

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    """The API over HTTP, so SNAIC's callbacks reach the workflows; the simulator's config is restored after."""
    yield from serve_api(settings, snaic_url)


@pytest.fixture(autouse=True)
def no_faults(snaic_url: str, ocs_base_url: str, cfast_url: str) -> Iterator[None]:
    yield
    clear_faults(snaic_url, ocs_base_url, cfast_url)


@pytest_asyncio.fixture
async def tenant(
    live_api: ApiServer, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> Tenant:
    return await make_tenant(app_client, admin_headers, temporal_client, sims=4)


async def activate(client: httpx.AsyncClient, tenant: Tenant, iccid: str, **body: object) -> dict[str, str]:
    response = await client.post(
        f"/api/v1/sims/{iccid}/activation",
        json={"company_id": tenant.company_id, "plan_id": tenant.plan_id, **body},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, str] = response.json()
    return accepted


async def start_direct(
    temporal: Client, settings: Settings, tenant: Tenant, iccid: str, *, sla_s: int = 900, poll_s: int = 30
) -> tuple[str, str]:
    """Starts the workflow as the bulk parent does (no API reservation), with chosen SLA and polling."""
    line_id = new_id()
    data = SimActivationInput(
        org_id=tenant.org_id,
        company_id=tenant.company_id,
        line_id=line_id,
        iccid=iccid,
        plan_id=tenant.plan_id,
        requested_by="test",
        snaic_sla_s=sla_s,
        snaic_poll_s=poll_s,
    )
    wf_id = workflow_id(tenant.org_id, iccid)
    await temporal.start_workflow(
        SimActivationWorkflow.run,
        data,
        id=wf_id,
        task_queue=settings.task_queue,
        search_attributes=initial_attributes(org_id=tenant.org_id, iccid=iccid, status="starting"),
    )
    return wf_id, line_id


# --- happy paths -----------------------------------------------------------------------------------


async def test_activation_provisions_snaic_ocs_cfast_and_readies_the_sim(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    iccid = tenant.iccids[0]
    accepted = await activate(app_client, tenant, iccid)
    assert accepted["workflow_id"] == f"sim-activation/{tenant.org_id}/{iccid}"
    assert accepted["status"] == "accepted"
    handle = temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, accepted["workflow_id"])
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "ready_for_activation"
    assert tenant.first_msisdn <= result.msisdn <= tenant.last_msisdn

    line = (await app_client.get(f"/api/v1/lines/{accepted['line_id']}", headers=tenant.headers)).json()
    assert line["status"] == "active" and line["msisdn"] == result.msisdn and line["iccid"] == iccid
    assert line["snaic_line_id"] == result.snaic_line_id and line["ocs_account"] == accepted["line_id"]
    assert line["cfast_service_id"] == result.cfast_service_id and line["accepts_topup"] is True
    assert line["next_renewal_on"]

    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == iccid))
    assert sim.status is SimStatus.READY_FOR_ACTIVATION and sim.reserved_by is None
    assert (sim.company_id, sim.plan_id) == (tenant.company_id, tenant.plan_id)
    journal = await db_all(settings, select(SimChange).where(SimChange.sim_id == sim.id).order_by(SimChange.id))
    assert [(j.field, j.new_value) for j in journal if j.field == "status"][-1] == ("status", "ready_for_activation")
    number = await db_one(settings, select(PhoneNumber).where(PhoneNumber.msisdn == result.msisdn))
    assert number.status is PhoneNumberStatus.ASSIGNED and number.line_id == accepted["line_id"]

    # The three systems agree.
    (snaic_line,) = snaic_lines(snaic_url, iccid)
    assert snaic_line["status"] == "active" and snaic_line["msisdn"] == result.msisdn
    account = ocs_account(ocs_url, accepted["line_id"])
    assert account is not None and not account.get("Disabled")
    data_balances = account["BalanceMap"]["*data"]
    assert [b["ID"] for b in data_balances] == [f"plan-{tenant.plan_id}"]
    assert data_balances[0]["Value"] == 5 * 1024 * 1024 * 1024
    service = cfast_service(cfast_url, result.msisdn)
    assert service is not None and service["status"] == "active" and service["articleCode"] == "MOB_5GO"
    assert service["articlePeriodicPrice"] == 1500 and service["periodicBuyPrice"] == 500

    # Every push is an update (MAJ) record of the line, OK.
    updates = (await app_client.get(f"/api/v1/lines/{accepted['line_id']}/updates", headers=tenant.headers)).json()
    operations = [u["operation"] for u in updates]
    assert operations == [
        "snaic_create_line",
        "snaic_create_line_result",
        "ocs_create_account",
        "ocs_grant_plan",
        "cfast_create_service",
    ]
    assert all(u["status"] == "ok" for u in updates)
    assert updates[0]["ids_obtained"]["line_id"] == result.snaic_line_id

    described = await handle.describe()
    attrs = described.typed_search_attributes
    assert (attrs.get(ORG_ID), attrs.get(ICCID)) == (tenant.org_id, iccid)
    # The number is indexed by its keyed hash only (personal data stays out of visibility).
    assert (attrs.get(MSISDN_HASH), attrs.get(MSISDN)) == (settings.msisdn_hash(result.msisdn), None)
    assert attrs.get(BUSINESS_STATUS) == "ready_for_activation"
    # The callback arrived: no polling was needed.
    callbacks = [
        c for c in sim_calls(snaic_url, "callback") if c["request"]["payload"]["line_id"] == snaic_line["line_id"]
    ]
    assert callbacks and callbacks[0]["applied"]
    await keep_history(handle, "SimActivationWorkflow", "happy_path_callback")


async def test_double_click_joins_the_running_activation(
    tenant: Tenant, app_client: httpx.AsyncClient, temporal_client: Client, settings: Settings
) -> None:
    iccid = tenant.iccids[0]
    responses = await asyncio.gather(
        *(
            app_client.post(
                f"/api/v1/sims/{iccid}/activation",
                json={"company_id": tenant.company_id, "plan_id": tenant.plan_id},
                headers=tenant.headers,
            )
            for _ in range(8)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 409}, [r.text for r in responses]
    accepted = {r.json()["line_id"] for r in responses if r.status_code == 202}
    assert len(accepted) == 1, accepted
    wf_id = workflow_id(tenant.org_id, iccid)
    await asyncio.wait_for(temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, wf_id).result(), 60)
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == iccid))
    lines = await db_all(settings, select(Line).where(Line.sim_id == sim.id))
    assert [ln.status for ln in lines] == [LineStatus.ACTIVE]
    # Activating it again is refused: it is no longer blank.
    again = await app_client.post(
        f"/api/v1/sims/{iccid}/activation",
        json={"company_id": tenant.company_id, "plan_id": tenant.plan_id},
        headers=tenant.headers,
    )
    assert again.status_code == 409 and again.json()["code"] == "resource.illegal_transition", again.text


async def test_activation_on_a_renewing_plan_starts_the_line_subscription_and_paygo_starts_none(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
) -> None:
    paygo_plan = await create_plan(
        app_client, admin_headers, tenant.org_id, offer="MOB_5GO", price=100, data_mb=1024, plan_type="paygo"
    )
    renewing, paygo = await asyncio.gather(
        activate(app_client, tenant, tenant.iccids[0]),
        activate(app_client, tenant, tenant.iccids[1], plan_id=paygo_plan),
    )
    handles = [
        temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, a["workflow_id"]) for a in (renewing, paygo)
    ]
    renewed, not_renewed = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=60)
    await keep_history(handles[0], "SimActivationWorkflow", "starts_subscription")
    await keep_history(handles[1], "SimActivationWorkflow", "paygo_starts_no_subscription")

    subscription_id = f"subscription/{tenant.org_id}/{renewing['line_id']}"
    assert renewed.subscription_workflow_id == subscription_id
    described = await temporal_client.get_workflow_handle(subscription_id).describe()
    assert described.status is WorkflowExecutionStatus.RUNNING and described.workflow_type == "SubscriptionWorkflow"
    assert described.typed_search_attributes.get(ORG_ID) == tenant.org_id
    # The reconciler's (and the API's) start joins it: still one run.
    again = SubscriptionInput(org_id=tenant.org_id, company_id=tenant.company_id, line_id=renewing["line_id"])
    assert await start_subscription_workflow(temporal_client, settings.task_queue, again, msisdn_hash=None) == (
        subscription_id
    )
    assert (await temporal_client.get_workflow_handle(subscription_id).describe()).run_id == described.run_id

    assert not_renewed.subscription_workflow_id is None
    with pytest.raises(RPCError) as absent:
        await temporal_client.get_workflow_handle(f"subscription/{tenant.org_id}/{paygo['line_id']}").describe()
    assert absent.value.status == RPCStatusCode.NOT_FOUND


async def test_chosen_number_and_port_in_with_rio(
    tenant: Tenant, app_client: httpx.AsyncClient, temporal_client: Client, snaic_url: str
) -> None:
    chosen = f"+{int(tenant.first_msisdn[1:]) + 7}"
    first = await activate(app_client, tenant, tenant.iccids[0], msisdn=chosen)
    ported_number = "0612345678"
    port = await activate(
        app_client, tenant, tenant.iccids[1], port_in={"msisdn": ported_number, "rio": "02P1234564NH"}
    )
    done = await asyncio.gather(
        *(
            temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, a["workflow_id"]).result()
            for a in (first, port)
        )
    )
    assert done[0].msisdn == chosen
    assert done[1].msisdn == "+33612345678"
    (line,) = snaic_lines(snaic_url, tenant.iccids[1])
    assert line["port_in"] == {"msisdn": "+33612345678", "rio": "02P1234564NH"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"port_in": {"msisdn": "0612345678", "rio": "02P1234564NX"}}, "port_in.rio"),
        ({"port_in": {"msisdn": "0145678901", "rio": "02P1234564NH"}}, "port_in.msisdn"),
        ({"msisdn": "0999"}, "msisdn"),
        ({"msisdn": "0612345678", "port_in": {"msisdn": "0612345678", "rio": "02P1234564NH"}}, "body"),
        ({"plan_id": "nope"}, "plan_id"),
        ({"company_id": "nope"}, "company_id"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_bad_activation_input_is_refused_and_changes_nothing(
    tenant: Tenant, app_client: httpx.AsyncClient, settings: Settings, body: dict[str, object], field: str
) -> None:
    iccid = tenant.iccids[2]
    payload = {"company_id": tenant.company_id, "plan_id": tenant.plan_id, **body}
    response = await app_client.post(f"/api/v1/sims/{iccid}/activation", json=payload, headers=tenant.headers)
    assert response.status_code in (404, 422), response.text
    problem = response.json()
    assert any(field in (e.get("field") or "") for e in problem.get("errors", [])), problem
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == iccid))
    assert sim.status is SimStatus.BLANK and sim.reserved_by is None
    assert await db_all(settings, select(Line).where(Line.sim_id == sim.id)) == []


async def test_other_tenant_cannot_activate(
    tenant: Tenant, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> None:
    other = await make_tenant(app_client, admin_headers, temporal_client, sims=0)
    response = await app_client.post(
        f"/api/v1/sims/{tenant.iccids[0]}/activation",
        json={"company_id": other.company_id, "plan_id": other.plan_id},
        headers=tenant.headers,
    )
    assert response.status_code == 404, response.text


async def test_polling_fallback_when_callbacks_never_arrive(
    tenant: Tenant, temporal_client: Client, settings: Settings, snaic_url: str
) -> None:
    """The callback is lost (completed order, no callback): the workflow polls the order and goes on."""
    add_fault(snaic_url, "complete_create_line", "lost_response")
    wf_id, _ = await start_direct(temporal_client, settings, tenant, tenant.iccids[0], poll_s=1)
    handle = temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, wf_id)
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "ready_for_activation"
    polls = sim_calls(snaic_url, "get_order")
    assert any(result.snaic_line_id in str(c["request"]) or c["applied"] for c in polls)
    await keep_history(handle, "SimActivationWorkflow", "polling_fallback")


# --- every failure point compensates -----------------------------------------------------------------

FAILURES = [
    pytest.param("snaic", "create_line", "reject", "snaic_create_line", id="snaic-refuses-order"),
    pytest.param("snaic", "complete_create_line", "reject", "snaic_create_line_result", id="snaic-rejects-later"),
    pytest.param("ocs", "APIerSv2.SetAccount", "reject", "ocs_create_account", id="ocs-account"),
    pytest.param("ocs", "APIerSv1.SetBalance", "reject", "ocs_grant_plan", id="ocs-plan-balance"),
    pytest.param("cfast", "create_service", "reject", "cfast_create_service", id="cfast-service-line"),
]


@pytest.mark.parametrize(("system", "op", "mode", "failed_step"), FAILURES)
async def test_failure_compensates_every_completed_step(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_base_url: str,
    ocs_url: str,
    cfast_url: str,
    system: str,
    op: str,
    mode: str,
    failed_step: str,
) -> None:
    base = {"snaic": snaic_url, "ocs": ocs_base_url, "cfast": cfast_url}[system]
    add_fault(base, op, mode)
    iccid = tenant.iccids[0]
    accepted = await activate(app_client, tenant, iccid)
    handle = temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, accepted["workflow_id"])
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=90)
    assert isinstance(failure.value.cause, ApplicationError)
    assert code_of(failure.value.cause) is ErrorCode.ACTIVATION_FAILED

    line = await assert_nothing_provisioned(
        settings, iccid=iccid, line_id=accepted["line_id"], snaic_url=snaic_url, ocs_url=ocs_url, cfast_url=cfast_url
    )
    records = await db_all(settings, select(UpdateRecord).where(UpdateRecord.line_id == line.id))
    errors = [r.operation for r in records if r.status is MajStatus.ERROR]
    assert errors == [failed_step], [(r.operation, r.status, r.error) for r in records]
    described = await handle.describe()
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "failed"
    # A failed activation can be started again on the same SIM, and succeeds.
    clear_faults(base)
    again = await activate(app_client, tenant, iccid)
    assert again["line_id"] != accepted["line_id"]
    result = await asyncio.wait_for(
        temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, again["workflow_id"]).result(), 60
    )
    assert result.status == "ready_for_activation"
    if failed_step == "ocs_grant_plan":
        await keep_history(handle, "SimActivationWorkflow", "ocs_failure_compensated")


async def test_cfast_hierarchy_fetched_on_the_fly_and_compensation_when_it_fails(
    live_api: ApiServer,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    """A company whose CFAST ids are missing in our database: the activation fetches them (seed 003); when
    CFAST refuses, everything done so far is undone."""
    org_id = await create_org(app_client, admin_headers)
    company_id = await create_company(app_client, admin_headers, temporal_client, org_id, name="Garage Leroy")
    plan_id = await create_plan(app_client, admin_headers, org_id, offer="MOB_5GO", price=1500, data_mb=1024)
    await create_range(app_client, admin_headers, org_id, 10)
    iccids = await import_sims(app_client, admin_headers, org_id, 2)
    engine_rows = await db_all(settings, select(Company).where(Company.id == company_id))
    known_customer = engine_rows[0].cfast_customer_id
    from infra.db import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine).begin() as session:
        company = await session.get(Company, company_id)
        assert company is not None
        company.cfast_customer_id = None  # forgotten on our side: fetched again by customerReference
    await engine.dispose()
    tenant = Tenant(org_id, company_id, plan_id, plan_id, "", "", admin_headers, iccids)

    add_fault(cfast_url, "list_sites", "reject")
    failed = await activate(app_client, tenant, iccids[0])
    with pytest.raises(WorkflowFailureError):
        await temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, failed["workflow_id"]).result()
    await assert_nothing_provisioned(
        settings, iccid=iccids[0], line_id=failed["line_id"], snaic_url=snaic_url, ocs_url=ocs_url, cfast_url=cfast_url
    )

    clear_faults(cfast_url)
    ok = await activate(app_client, tenant, iccids[1])
    await temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, ok["workflow_id"]).result()
    company = await db_one(settings, select(Company).where(Company.id == company_id))
    assert company.cfast_customer_id == known_customer  # fetched, not a second customer
    records = await db_all(settings, select(UpdateRecord).where(UpdateRecord.workflow_id == ok["workflow_id"]))
    fetched = next(r for r in records if r.operation == "create_customer")
    assert fetched.ids_obtained == {"id": known_customer, "fetched_existing": True}


async def test_number_range_exhausted_releases_the_sim(
    live_api: ApiServer,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=2, range_size=1)
    first = await activate(app_client, tenant, tenant.iccids[0])
    await temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, first["workflow_id"]).result()
    second = await activate(app_client, tenant, tenant.iccids[1])
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, second["workflow_id"]).result()
    assert "plus aucun numéro libre" in str(failure.value.cause)
    await assert_nothing_provisioned(
        settings,
        iccid=tenant.iccids[1],
        line_id=second["line_id"],
        snaic_url=snaic_url,
        ocs_url=ocs_url,
        cfast_url=cfast_url,
    )
    assert [c for c in sim_calls(snaic_url, "create_line") if c["request"].get("iccid") == tenant.iccids[1]] == []


async def test_sla_exceeded_terminates_the_pending_supplier_line(
    tenant: Tenant, temporal_client: Client, settings: Settings, snaic_url: str, ocs_url: str, cfast_url: str
) -> None:
    """SNAIC never completes the order: after the SLA the saga gives up and terminates the pending line."""
    add_fault(snaic_url, "complete_create_line", "timeout")
    iccid = tenant.iccids[0]
    wf_id, line_id = await start_direct(temporal_client, settings, tenant, iccid, sla_s=3, poll_s=1)
    handle = temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, wf_id)
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=60)
    assert "aucune réponse de SNAIC" in str(failure.value.cause)
    await assert_nothing_provisioned(
        settings, iccid=iccid, line_id=line_id, snaic_url=snaic_url, ocs_url=ocs_url, cfast_url=cfast_url
    )
    (line,) = snaic_lines(snaic_url, iccid)
    assert line["status"] == "terminated"
    await keep_history(handle, "SimActivationWorkflow", "sla_exceeded")


async def test_cancellation_mid_saga_compensates(
    tenant: Tenant, temporal_client: Client, settings: Settings, snaic_url: str, ocs_url: str, cfast_url: str
) -> None:
    add_fault(snaic_url, "complete_create_line", "latency", latency_ms=4000)
    iccid = tenant.iccids[0]
    wf_id, line_id = await start_direct(temporal_client, settings, tenant, iccid, poll_s=30)
    handle = temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, wf_id)
    for _ in range(100):
        if await handle.query(SimActivationWorkflow.business_status) == "creating_supplier_line":
            break
        await asyncio.sleep(0.05)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    await assert_nothing_provisioned(
        settings, iccid=iccid, line_id=line_id, snaic_url=snaic_url, ocs_url=ocs_url, cfast_url=cfast_url
    )


async def test_compensation_that_fails_for_good_waits_for_staff_then_retries(
    tenant: Tenant,
    app_client: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    snaic_url: str,
    ocs_url: str,
    cfast_url: str,
) -> None:
    """CFAST refuses the service line, then SNAIC refuses the termination that would undo the line: the
    workflow does not pretend all is well, it waits in `needs_attention` with the step named until staff
    answer (`resolve_compensation`); once SNAIC answers again, their retry undoes the line and the
    activation ends failed, nothing half-provisioned."""
    add_fault(cfast_url, "create_service", "reject")
    add_fault(snaic_url, "terminate_line", "reject")
    accepted = await activate(app_client, tenant, tenant.iccids[0])
    handle = temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, accepted["workflow_id"])
    state = await handle.query(SimActivationWorkflow.attention_state)
    for _ in range(300):
        state = await handle.query(SimActivationWorkflow.attention_state)
        if state.attention:
            break
        await asyncio.sleep(0.2)
    assert state.status == "needs_attention" and state.since is not None, state
    assert state.attention and "snaic_cancel_line" in state.attention
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    # The other compensations still ran: SIM back in stock, OCS account gone.
    sim = await db_one(settings, select(SimCard).where(SimCard.iccid == tenant.iccids[0]))
    assert sim.status is SimStatus.BLANK and sim.reserved_by is None

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(SimActivationWorkflow.resolve_compensation, ResolveCompensation(action="guess"))
    clear_faults(snaic_url)
    answer = ResolveCompensation(action="retry", requested_by="staff@test", note="SNAIC de nouveau disponible")
    assert await handle.execute_update(SimActivationWorkflow.resolve_compensation, answer) == "retry"
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=60)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and code_of(cause) is ErrorCode.ACTIVATION_FAILED, cause
    assert (await handle.describe()).typed_search_attributes.get(BUSINESS_STATUS) == "failed"
    await keep_history(handle, "SimActivationWorkflow", "compensation_waits_for_staff_then_retry")
    await assert_nothing_provisioned(
        settings,
        iccid=tenant.iccids[0],
        line_id=accepted["line_id"],
        snaic_url=snaic_url,
        ocs_url=ocs_url,
        cfast_url=cfast_url,
    )
