"""S1 for activities: an activity handed an id of another tenant through its workflow input refuses it
(non-retryable `ApplicationError`, the workflow fails instead of retrying) and changes nothing.

The activities are called directly on the session database, as the worker would run them: the check is
`ensure_in_tenant` (the handlers' `authorize`, with the workflow's principal), whatever the workflow or
the API in front of it did before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.inventory import InventoryActivities
from activities.records import RecordActivities
from domain.contracts import MarkCfastFailed, SaveCfastIds
from domain.enums import CfastSyncStatus, LineStatus, PlanType, SimStatus
from domain.errors import ErrorCode
from domain.lifecycle_contracts import (
    AllocateMsisdn,
    CancelScheduledTermination,
    CompleteTermination,
    FinalizeActivation,
    LoadActivation,
    LoadLine,
    LoadPlan,
    OpenDeployment,
    ReleaseSim,
    ReserveSim,
    ScheduleTermination,
    SetLinePlan,
    SetLineStatus,
)
from domain.models import BillingSite, Company, InvoiceCounter, Line, Organisation, Parc, Plan, SimCard
from domain.security import MsisdnIndex
from domain.services.companies import create_company
from infra.db import create_engine, create_sessionmaker
from tests.api._support import random_iccid, random_imsi, row_counts
from tests.conftest import TEST_SECRETS

Db = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Side:
    org_id: str
    company_id: str
    billing_site_id: str
    parc_id: str
    plan_id: str  # general plan of the organisation
    company_plan_id: str  # plan of the company only
    blank_iccid: str
    line_id: str  # active line, with its SIM
    line_iccid: str
    building_line_id: str  # line under construction


async def _side(db: Db) -> Side:
    slug = f"act-{uuid.uuid4().hex[:10]}"
    async with db.begin() as session:
        org = Organisation(name=f"Intégrateur {slug}", slug=slug)
        session.add(org)
        await session.flush()
        session.add(InvoiceCounter(org_id=org.id, last_number=0))
        company, site, parc = await create_company(
            session,
            org_id=org.id,
            name="Entreprise",
            siret=None,
            vat_number=None,
            is_virtual=False,
            billing_email=None,
            address=None,
        )
        general = Plan(org_id=org.id, name="Général", plan_type=PlanType.PREPAID, price_minor=990, carrier="Orange")
        own = Plan(
            org_id=org.id,
            company_id=company.id,
            name="Maison",
            plan_type=PlanType.PREPAID,
            price_minor=990,
            carrier="Orange",
        )
        blank = SimCard(
            org_id=org.id, iccid=random_iccid(), imsi=random_imsi(), carrier="Orange", status=SimStatus.BLANK
        )
        used = SimCard(
            org_id=org.id,
            iccid=random_iccid(),
            imsi=random_imsi(),
            carrier="Orange",
            status=SimStatus.ACTIVE,
            company_id=company.id,
        )
        session.add_all([general, own, blank, used])
        await session.flush()
        line = Line(
            org_id=org.id,
            company_id=company.id,
            sim_id=used.id,
            plan_id=general.id,
            msisdn="+3367" + str(uuid.uuid4().int)[:7],
            status=LineStatus.ACTIVE,
        )
        building = Line(
            org_id=org.id,
            company_id=company.id,
            plan_id=general.id,
            msisdn="",
            status=LineStatus.UNDER_CONSTRUCTION,
        )
        session.add_all([line, building])
        await session.flush()
        return Side(
            org_id=org.id,
            company_id=company.id,
            billing_site_id=site.id,
            parc_id=parc.id,
            plan_id=general.id,
            company_plan_id=own.id,
            blank_iccid=blank.iccid,
            line_id=line.id,
            line_iccid=used.iccid,
            building_line_id=building.id,
        )


@dataclass(frozen=True)
class World:
    db: Db
    inventory: InventoryActivities
    records: RecordActivities
    mine: Side
    theirs: Side


@pytest_asyncio.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    db = create_sessionmaker(engine)
    yield World(
        db,
        InventoryActivities(db, MsisdnIndex(TEST_SECRETS["secrets_key"])),
        RecordActivities(db),
        await _side(db),
        await _side(db),
    )
    await engine.dispose()


async def _state(w: World) -> dict[str, Any]:
    """What the refused calls could have touched: rows per table, and the other tenant's objects."""
    t = w.theirs
    async with w.db() as session:
        lines = {
            line.id: (line.status, line.msisdn, line.plan_id, line.termination_scheduled_for, line.failure_reason)
            for line in (await session.execute(select(Line).where(Line.org_id == t.org_id))).scalars()
        }
        sims = {
            sim.iccid: (sim.status, sim.reserved_by, sim.company_id, sim.plan_id)
            for sim in (await session.execute(select(SimCard).where(SimCard.org_id == t.org_id))).scalars()
        }
        company = await session.get(Company, t.company_id)
        site = await session.get(BillingSite, t.billing_site_id)
        parc = await session.get(Parc, t.parc_id)
        assert company is not None and site is not None and parc is not None
        cfast = (
            company.cfast_customer_id,
            company.cfast_status,
            site.cfast_billing_point_id,
            parc.cfast_site_id,
        )
    rows = await row_counts(w.db, org_ids=(w.mine.org_id, t.org_id))
    return {"rows": rows, "lines": lines, "sims": sims, "cfast": cfast}


NOW = datetime(2030, 1, 1, tzinfo=UTC)
Call = Callable[[World], Awaitable[object]]


def _reserve(w: World, **changes: str) -> Awaitable[object]:
    m = w.mine
    values = {
        "org_id": m.org_id,
        "company_id": m.company_id,
        "line_id": uuid.uuid4().hex,
        "iccid": m.blank_iccid,
        "plan_id": m.plan_id,
        "reservation_key": f"test/{uuid.uuid4().hex}",
        "actor": "test",
        **changes,
    }
    return w.inventory.reserve_sim(ReserveSim.model_validate(values))


# Each case: an activity of "mine"'s workflow, called with one id of "theirs".
FOREIGN_CALLS: dict[str, Call] = {
    "reserve_sim: their SIM": lambda w: _reserve(w, iccid=w.theirs.blank_iccid),
    "reserve_sim: their company": lambda w: _reserve(w, company_id=w.theirs.company_id),
    "reserve_sim: their plan": lambda w: _reserve(w, plan_id=w.theirs.plan_id),
    "reserve_sim: their line": lambda w: _reserve(w, line_id=w.theirs.building_line_id),
    "reserve_sim: their company's own plan": lambda w: _reserve(w, plan_id=w.theirs.company_plan_id),
    "release_sim: their line": lambda w: w.inventory.release_sim(
        ReleaseSim(
            org_id=w.mine.org_id,
            iccid=w.mine.blank_iccid,
            line_id=w.theirs.building_line_id,
            reservation_key="test/none",
            actor="test",
        )
    ),
    "allocate_msisdn: their line": lambda w: w.inventory.allocate_msisdn(
        AllocateMsisdn(org_id=w.mine.org_id, line_id=w.theirs.building_line_id, reservation_key="test/none")
    ),
    "load_activation: their company": lambda w: w.inventory.load_activation(
        LoadActivation(org_id=w.mine.org_id, line_id="", company_id=w.theirs.company_id, plan_id=w.theirs.plan_id)
    ),
    "finalize_activation: their line": lambda w: w.inventory.finalize_activation(
        FinalizeActivation(
            org_id=w.mine.org_id,
            line_id=w.theirs.building_line_id,
            iccid=w.mine.blank_iccid,
            reservation_key="test/none",
            company_id=w.mine.company_id,
            plan_id=w.mine.plan_id,
            billing_site_id=w.mine.billing_site_id,
            parc_id=w.mine.parc_id,
            actor="test",
            workflow_id="test/none",
        )
    ),
    "open_deployment: their line": lambda w: w.inventory.open_deployment(
        OpenDeployment(
            org_id=w.mine.org_id,
            company_id=w.mine.company_id,
            line_id=w.theirs.line_id,
            kind="modify_line",
            workflow_id=f"test/{uuid.uuid4().hex}",
            created_by="test",
        )
    ),
    "load_line: their line": lambda w: w.inventory.load_line(LoadLine(org_id=w.mine.org_id, line_id=w.theirs.line_id)),
    "load_plan: their plan": lambda w: w.inventory.load_plan(
        LoadPlan(org_id=w.mine.org_id, company_id=w.mine.company_id, plan_id=w.theirs.plan_id)
    ),
    "set_line_status: their line": lambda w: w.inventory.set_line_status(
        SetLineStatus(
            org_id=w.mine.org_id,
            line_id=w.theirs.line_id,
            status="suspended",
            actor="test",
            workflow_id="test/none",
            sim_status="suspended",
        )
    ),
    "set_line_status: no organisation given": lambda w: w.inventory.set_line_status(
        SetLineStatus(line_id=w.theirs.line_id, status="suspended", actor="test", workflow_id="test/none")
    ),
    "set_line_plan: their line": lambda w: w.inventory.set_line_plan(
        SetLinePlan(
            org_id=w.mine.org_id, line_id=w.theirs.line_id, plan_id=w.mine.plan_id, actor="test", workflow_id="t"
        )
    ),
    "set_line_plan: their plan on my line": lambda w: w.inventory.set_line_plan(
        SetLinePlan(
            org_id=w.mine.org_id, line_id=w.mine.line_id, plan_id=w.theirs.plan_id, actor="test", workflow_id="t"
        )
    ),
    "schedule_termination: their line": lambda w: w.inventory.schedule_termination(
        ScheduleTermination(
            org_id=w.mine.org_id, line_id=w.theirs.line_id, at=NOW, actor="test", workflow_id="test/none"
        )
    ),
    "cancel_scheduled_termination: their line": lambda w: w.inventory.cancel_scheduled_termination(
        CancelScheduledTermination(org_id=w.mine.org_id, line_id=w.theirs.line_id, actor="test", workflow_id="t")
    ),
    "complete_termination: their line": lambda w: w.inventory.complete_termination(
        CompleteTermination(
            org_id=w.mine.org_id,
            line_id=w.theirs.line_id,
            terminated_at=NOW,
            quarantine_until=NOW + timedelta(days=90),
            actor="test",
            workflow_id="test/none",
        )
    ),
    "save_cfast_ids: their company": lambda w: w.records.save_cfast_ids(
        SaveCfastIds(
            org_id=w.mine.org_id,
            company_id=w.theirs.company_id,
            billing_site_id=w.theirs.billing_site_id,
            parc_id=w.theirs.parc_id,
            customer_id="CUST-X",
            billing_point_id="BP-X",
            site_id="SITE-X",
        )
    ),
    "save_cfast_ids: their parc under my company": lambda w: w.records.save_cfast_ids(
        SaveCfastIds(
            org_id=w.mine.org_id,
            company_id=w.mine.company_id,
            billing_site_id=w.mine.billing_site_id,
            parc_id=w.theirs.parc_id,
            customer_id="CUST-X",
            billing_point_id="BP-X",
            site_id="SITE-X",
        )
    ),
    "mark_cfast_failed: their company": lambda w: w.records.mark_cfast_failed(
        MarkCfastFailed(org_id=w.mine.org_id, company_id=w.theirs.company_id, reason="test")
    ),
}


@pytest.mark.parametrize("case", sorted(FOREIGN_CALLS))
async def test_activity_refuses_another_tenants_id_and_changes_nothing(world: World, case: str) -> None:
    before = await _state(world)
    with pytest.raises(ApplicationError) as caught:
        await FOREIGN_CALLS[case](world)
    assert caught.value.non_retryable, f"{case}: a tenant refusal must not be retried"
    assert caught.value.type == ErrorCode.NOT_FOUND, caught.value.type
    assert world.theirs.org_id not in str(caught.value), "the refusal names nothing of the other tenant"
    assert await _state(world) == before, f"{case} changed something"


async def test_the_same_activities_accept_their_own_tenants_ids(world: World) -> None:
    """The check is no blanket refusal: the workflow's own objects (and its organisation's general plans,
    readable from a company) pass."""
    m = world.mine
    inventory = world.inventory
    snapshot = await inventory.load_line(LoadLine(org_id=m.org_id, line_id=m.line_id))
    assert (snapshot.org_id, snapshot.iccid) == (m.org_id, m.line_iccid)
    for plan_id in (m.plan_id, m.company_plan_id):
        terms = await inventory.load_plan(LoadPlan(org_id=m.org_id, company_id=m.company_id, plan_id=plan_id))
        assert terms.plan_id == plan_id
    context = await inventory.load_activation(
        LoadActivation(org_id=m.org_id, line_id=m.building_line_id, company_id=m.company_id, plan_id=m.plan_id)
    )
    assert context.parc_id == m.parc_id
    key, line_id = f"test/{uuid.uuid4().hex}", uuid.uuid4().hex
    await _reserve(world, reservation_key=key, line_id=line_id)
    await inventory.release_sim(
        ReleaseSim(org_id=m.org_id, iccid=m.blank_iccid, line_id=line_id, reservation_key=key, actor="test")
    )
    async with world.db() as session:
        sim = (await session.execute(select(SimCard).where(SimCard.iccid == m.blank_iccid))).scalar_one()
        line = await session.get(Line, line_id)
        assert sim.reserved_by is None
        assert line is not None and line.status is LineStatus.OBSOLETE
    await world.records.save_cfast_ids(
        SaveCfastIds(
            org_id=m.org_id,
            company_id=m.company_id,
            billing_site_id=m.billing_site_id,
            parc_id=m.parc_id,
            customer_id="CUST-1",
            billing_point_id="BP-1",
            site_id="SITE-1",
        )
    )
    async with world.db() as session:
        company = await session.get(Company, m.company_id)
        assert company is not None and company.cfast_status is CfastSyncStatus.SYNCED


async def test_a_general_plan_is_readable_but_not_writable_from_a_company() -> None:
    """`ensure_in_tenant` is `authorize` with the workflow's principal: an organisation-wide object is
    readable from a company, writable only at the organisation's level; nothing without an organisation."""
    from domain.authz import Action, TenantChain, authorize, workflow_principal
    from domain.errors import NotFound, PermissionDenied

    general = TenantChain("org-1", None, org_wide=True)
    company = workflow_principal(TenantChain("org-1", "co-1"))
    authorize(company, Action.READ, general)
    with pytest.raises(PermissionDenied):
        authorize(company, Action.WRITE, general)
    authorize(workflow_principal(TenantChain("org-1")), Action.WRITE, general)
    for principal in (workflow_principal(TenantChain("org-2")), workflow_principal(TenantChain(None))):
        with pytest.raises(NotFound):
            authorize(principal, Action.READ, general)
    assert not company.is_human
