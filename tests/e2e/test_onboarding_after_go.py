"""After GO, on the real stack (API over HTTP, Temporal, worker, simulators, localstripe): the onboarded
organisation's first staff member (the technical contact, invited by the platform creation) sets its password
from the invitation, activates one of the generic SIMs shipped during onboarding on a plan imported from its
sales tables, and recharges that line by card; the top-up completes and the money invariants hold."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client

from activities.onboarding import generic_sim_batch
from bench.invariants import check_invariants
from domain.models import CatalogueArticle, SecurityMessage, SimCard, TopUp
from domain.onboarding_dossier import template_xlsx
from infra.settings import Settings
from tests.api.test_onboarding_portal import png
from tests.api.test_onboardings import terms
from tests.card_support import save_card
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login
from tests.e2e.lifecycle_support import create_company, create_range, db_all, db_one
from tests.e2e.test_topup import recharge
from tests.e2e.topup_support import ApiServer, serve_api, wait_terminal
from workflows.sim_activation import SimActivationWorkflow

pytestmark = pytest.mark.usefixtures("worker")

GOOD_CARD = "4242424242424242"
STAFF_PASSWORD = "Premiere-Connexion-2026!"


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest_asyncio.fixture
async def http(live_api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api.url, timeout=60) as client:
        yield client


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def onboard_to_go(http: httpx.AsyncClient, admin: dict[str, str], sims: int) -> tuple[dict[str, Any], str]:
    """One onboarding driven by its API from creation to GO (payments by recorded transfer, the real dossier
    checks); returns the onboarding and its technical contact's email (the first staff member)."""
    onboarding = await _ok(await http.post("/api/v1/onboardings", json=terms(sim_batch_size=sims), headers=admin), 201)
    base = f"/api/v1/onboardings/{onboarding['id']}"
    slug = onboarding["contact_email"].split("@")[1].split(".")[0]

    async def step(stage: str) -> dict[str, Any]:
        return await _ok(await http.post(f"{base}/steps", json={"stage": stage}, headers=admin))

    async def transfer(kind: str) -> None:
        body = {"kind": kind, "amount_minor": 150_000, "reference": f"VIR-{kind}"}
        await _ok(await http.post(f"{base}/transfers", json=body, headers=admin))

    await step("contracts_sent")
    await step("admin_documents_received")
    await transfer("deposit")
    technical_email = f"technique@{slug}.example.com"
    files = {
        "sales_tables": ("tables.xlsx", template_xlsx()),
        "logo": ("logo.png", png(95, 95)),
        "footer_banner": ("bandeau.png", png(760, 95)),
        "arcep_form": ("arcep.pdf", b"%PDF-1.4\n%%EOF\n"),
    }
    for item, file in files.items():
        await _ok(await http.post(f"{base}/documents", data={"item": item}, files={"file": file}, headers=admin))
    values = {
        "accounting_email": f"compta@{slug}.example.com",
        "technical_email": technical_email,
        "technical_contact": "Camille Technique",
        "sepa_ics": "FR72ZZZ123456",
        "brand_name": "Integ Mobile",
    }
    for item, value in values.items():
        await _ok(await http.post(f"{base}/documents", data={"item": item, "value": value}, headers=admin))
    await _ok(await http.post(f"{base}/dossier-review", json={"approved": True}, headers=admin))
    for _ in range(200):  # the platform creation runs in the worker; the step is refused until it is done
        moved = await http.post(f"{base}/steps", json={"stage": "platform_created"}, headers=admin)
        if moved.status_code == 200:
            break
        assert moved.status_code == 409, moved.text
        await asyncio.sleep(0.1)
    assert moved.status_code == 200, moved.text
    await step("sims_shipped")
    await step("training_booked")
    await transfer("balance")
    done = await step("go_live")
    assert (done["status"], done["stage"]) == ("completed", "go_live"), done
    return done, technical_email


async def first_login(http: httpx.AsyncClient, settings: Settings, email: str) -> dict[str, str]:
    """The invitation mail's link carries a one-time token: the staff member chooses its password with it."""
    invitation = await db_one(
        settings,
        select(SecurityMessage).where(SecurityMessage.recipient == email, SecurityMessage.kind == "staff_invitation"),
    )
    token = re.search(r"#token=(\S+)", invitation.body)
    assert token, invitation.body
    reset = await http.post(
        "/api/v1/auth/password/reset", json={"token": token.group(1), "new_password": STAFF_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    return await login(http, email, STAFF_PASSWORD)


async def test_after_go_the_staff_activate_a_shipped_sim_and_recharge_it_by_card(
    http: httpx.AsyncClient, settings: Settings, temporal_client: Client, localstripe_url: str, ocs_base_url: str
) -> None:
    admin = await login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
    onboarding, email = await onboard_to_go(http, admin, sims=3)
    org_id = onboarding["org_id"]
    staff = await first_login(http, settings, email)

    shipped = (await _ok(await http.get("/api/v1/sims", params={"status": "blank"}, headers=staff)))["items"]
    assert len(shipped) == 3 and {sim["org_id"] for sim in shipped} == {org_id}, shipped
    generic = await db_all(
        settings, select(SimCard.iccid).where(SimCard.import_batch == generic_sim_batch(onboarding["id"]))
    )
    assert sorted(generic) == sorted(sim["iccid"] for sim in shipped)
    plans = (await _ok(await http.get("/api/v1/plans", headers=staff)))["items"]
    prepaid = next(plan for plan in plans if plan["plan_type"] == "prepaid")  # from the sales tables' template
    assert prepaid["org_id"] == org_id

    company_id = await create_company(http, staff, temporal_client, org_id, name=f"Boulangerie {uuid.uuid4().hex[:6]}")
    await create_range(http, staff, org_id, 10)
    await save_card(http, staff, f"/api/v1/companies/{company_id}/payment-methods", localstripe_url, GOOD_CARD)

    iccid = shipped[0]["iccid"]
    started = await _ok(
        await http.post(
            f"/api/v1/sims/{iccid}/activation", json={"company_id": company_id, "plan_id": prepaid["id"]}, headers=staff
        ),
        202,
    )
    await temporal_client.get_workflow_handle_for(SimActivationWorkflow.run, started["workflow_id"]).result()
    line = await _ok(await http.get(f"/api/v1/lines/{started['line_id']}", headers=staff))
    assert line["status"] == "active", line

    answer = await recharge(http, staff, line["id"], "card", data_gb=2)
    assert answer.status_code == 201, answer.text
    final = await wait_terminal(http, staff, answer.json()["recharge_id"])
    assert (final["status"], final["amount_minor"]) == ("completed", 100), final

    article = await db_one(
        settings,
        select(CatalogueArticle).join(TopUp, TopUp.article_id == CatalogueArticle.id).where(TopUp.org_id == org_id),
    )
    assert article.org_id == org_id and article.carrier == "Orange", article
    topups = await db_all(settings, select(TopUp).where(TopUp.org_id == org_id))
    assert [t.status for t in topups] == ["completed"]
    report = await check_invariants(
        database_url=settings.database_url,
        localstripe_url=localstripe_url,
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=ocs_base_url,
        ocs_tenant=settings.ocs_tenant,
        cfast_url=settings.cfast_url,
        org_ids={org_id},
    )
    assert report.ok and report.topups == 1, report.violations
