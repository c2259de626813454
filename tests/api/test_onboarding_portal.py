"""The onboarding portal pages over the real worker: the platform's board (start an integrator, staff actions
through the same Updates as the API; a refusal shows its reason and changes nothing) and the integrator's
checklist (dossier uploads with their precise messages, the XLSX template, tenancy)."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
import pytest
from openpyxl import load_workbook
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.enums import StaffRole
from domain.models import Onboarding, OnboardingDocument
from tests.api.conftest import Tenant, add_staff
from tests.api.test_onboardings import open_one, recorded
from tests.api.test_wallets import _portal_login
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.usefixtures("worker")

CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 160)).save(out, format="PNG")
    return out.getvalue()


async def admin_portal(app_client: httpx.AsyncClient) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=app_client._transport, base_url="http://simflow.test")
    form = await client.get("/portal/login")
    response = await client.post(
        "/portal/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": csrf(form.text)}
    )
    assert response.status_code == 303, response.text
    return client


@asynccontextmanager
async def signed_in(client: Awaitable[httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    opened = await client
    try:
        yield opened
    finally:
        await opened.aclose()


async def stage_of(db: async_sessionmaker[AsyncSession], onboarding_id: str) -> tuple[str, str]:
    async with db() as session:
        onboarding = await session.get(Onboarding, onboarding_id)
        assert onboarding is not None
        return onboarding.stage, onboarding.status


async def test_board_starts_an_integrator_and_staff_move_it(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], db: async_sessionmaker[AsyncSession]
) -> None:
    async with signed_in(admin_portal(app_client)) as staff:
        board = await staff.get("/portal/onboardings")
        assert board.status_code == 200 and "Nouvel intégrateur" in board.text, board.text
        slug = f"portail-{uuid.uuid4().hex[:8]}"
        fields = {
            "csrf_token": csrf(board.text),
            "name": f"Intégrateur {slug}",
            "slug": slug,
            "contact_name": "Camille Portail",
            "contact_email": f"camille@{slug}.example.com",
            "deposit_eur": "1 500",
            "balance_eur": "1500,00",
        }
        refused = await staff.post("/portal/onboardings", data={**fields, "slug": "Pas Valide"})
        assert refused.status_code == 422 and "slug" in refused.text, refused.text
        assert 'value="Camille Portail"' in refused.text  # the form keeps what was typed
        started = await staff.post("/portal/onboardings", data=fields)
        assert started.status_code == 303, started.text
        onboarding_id = started.headers["location"].rsplit("/", 1)[1]
        created = await recorded(app_client, admin_headers, onboarding_id)
        assert (created["deposit_minor"], created["balance_minor"]) == (150_000, 150_000)

        board = await staff.get("/portal/onboardings")
        row = re.search(rf'<tr data-onboarding-id="{onboarding_id}".*?</tr>', board.text, re.S)
        assert row, board.text
        assert "Plateforme : Contrats et bon de commande envoyés" in row.group(0)
        assert quote(created["workflow_id"], safe="") in row.group(0)  # the Temporal UI link

        base = f"/portal/onboardings/{onboarding_id}"
        detail = await staff.get(base)
        token = csrf(detail.text)
        wrong = await staff.post(
            f"{base}/actions", data={"csrf_token": token, "action": "step", "stage": "sims_shipped"}
        )
        assert wrong.status_code == 409 and "Contrats" in wrong.text, wrong.text
        assert await stage_of(db, onboarding_id) == ("contracts_sent", "in_progress")
        for stage in ("contracts_sent", "admin_documents_received"):
            moved = await staff.post(f"{base}/actions", data={"csrf_token": token, "action": "step", "stage": stage})
            assert moved.status_code == 303, moved.text
        short = await staff.post(
            f"{base}/actions",
            data={
                "csrf_token": token,
                "action": "transfer",
                "kind": "deposit",
                "amount_eur": "1",
                "reference": "VIR-1",
            },
        )
        assert short.status_code == 409 and "150000" in short.text, short.text
        assert await stage_of(db, onboarding_id) == ("deposit_paid", "in_progress")
        paid = await staff.post(
            f"{base}/actions",
            data={
                "csrf_token": token,
                "action": "transfer",
                "kind": "deposit",
                "amount_eur": "1500",
                "reference": "VIR-2",
            },
        )
        assert paid.status_code == 303, paid.text
        assert await stage_of(db, onboarding_id) == ("dossier_submitted", "in_progress")
        progress = await staff.get(f"{base}/checklist")
        assert 'data-percent="30"' in progress.text and "réglé" in progress.text

        cancelled = await staff.post(
            f"{base}/actions", data={"csrf_token": token, "action": "cancel", "reason": "abandon"}
        )
        assert cancelled.status_code == 303, cancelled.text
        assert (await stage_of(db, onboarding_id))[1] == "cancelled"
        assert 'id="staff-actions"' not in (await staff.get(base)).text


async def test_the_integrator_checklist(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    db: async_sessionmaker[AsyncSession],
    tenant: Tenant,
) -> None:
    created = await open_one(app_client, admin_headers)
    await recorded(app_client, admin_headers, created["id"])
    email = await add_staff(db, role=StaffRole.ORG_STAFF, org_id=created["org_id"])
    async with signed_in(_portal_login(app_client, email)) as integrator:
        entry = await integrator.get("/portal/onboarding")
        assert entry.status_code == 303 and entry.headers["location"].endswith(f"{created['id']}/checklist")
        base = f"/portal/onboardings/{created['id']}"
        checklist = await integrator.get(f"{base}/checklist")
        assert checklist.status_code == 200 and "Checklist d'intégration" in checklist.text
        assert 'data-percent="0"' in checklist.text
        token = csrf(checklist.text)

        small = await integrator.post(
            f"{base}/documents",
            data={"csrf_token": token, "item": "logo"},
            files={"file": ("logo.png", png(40, 40), "image/png")},
        )
        assert small.status_code == 422 and "95" in small.text, small.text
        good = await integrator.post(
            f"{base}/documents",
            data={"csrf_token": token, "item": "logo"},
            files={"file": ("logo.png", png(95, 95), "image/png")},
        )
        assert good.status_code == 200 and "« Logo 95 × 95 (jpg/png) » accepté." in good.text, good.text
        bad_ics = await integrator.post(
            f"{base}/documents", data={"csrf_token": token, "item": "sepa_ics", "value": "pas un ICS"}
        )
        assert bad_ics.status_code == 422, bad_ics.text
        assert re.search(r'data-item="logo" data-status="valid"', bad_ics.text)  # the valid item stays
        assert re.search(r'data-item="sepa_ics" data-status="invalid"', bad_ics.text)

        template = await integrator.get(f"{base}/template.xlsx")
        assert template.status_code == 200 and template.headers["content-type"].startswith(
            "application/vnd.openxmlformats"
        )
        assert len(load_workbook(io.BytesIO(template.content)).sheetnames) > 1

        board = await integrator.get("/portal/onboardings")
        assert board.status_code == 403, board.text
        action = await integrator.post(
            f"{base}/actions", data={"csrf_token": token, "action": "step", "stage": "contracts_sent"}
        )
        assert action.status_code == 403, action.text
        assert await stage_of(db, created["id"]) == ("contracts_sent", "in_progress")

    async with signed_in(_portal_login(app_client, tenant.org_staff_email)) as other:
        hidden = await other.get(f"/portal/onboardings/{created['id']}/checklist")
        assert hidden.status_code == 404, hidden.text
        assert (await other.get(f"/portal/onboardings/{created['id']}/template.xlsx")).status_code == 404


async def test_after_go_the_checklist_takes_no_more_uploads(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    db: async_sessionmaker[AsyncSession],
    temporal_client: Client,
) -> None:
    """Once the dossier is submitted (here: the onboarding reached GO) the checklist shows no upload form, and
    an upload is refused before anything is stored (the workflow would refuse it anyway)."""
    created = await open_one(app_client, admin_headers)
    await recorded(app_client, admin_headers, created["id"])
    # The row is set to GO by hand: the workflow is stopped first, or its next state write would undo it.
    await temporal_client.get_workflow_handle(created["workflow_id"]).terminate("test: GO set by hand")
    async with db.begin() as session:
        await session.execute(
            update(Onboarding).where(Onboarding.id == created["id"]).values(status="completed", stage="go_live")
        )
    email = await add_staff(db, role=StaffRole.ORG_STAFF, org_id=created["org_id"])
    base = f"/portal/onboardings/{created['id']}"
    async with signed_in(_portal_login(app_client, email)) as integrator:
        checklist = await integrator.get(f"{base}/checklist")
        assert checklist.status_code == 200 and "data-item-form" not in checklist.text, checklist.text
        assert "plus d'envoi possible" in checklist.text
        late = await integrator.post(
            f"{base}/documents", data={"csrf_token": csrf(checklist.text), "item": "brand_name", "value": "Tard"}
        )
        assert late.status_code == 422 and "déjà remis" in late.text, late.text
    api_late = await app_client.post(
        f"/api/v1/onboardings/{created['id']}/documents",
        data={"item": "brand_name", "value": "Tard"},
        headers=admin_headers,
    )
    assert api_late.status_code == 409 and api_late.json()["errors"][0]["field"] == "stage", api_late.text
    async with db() as session:
        stored = await session.execute(
            select(OnboardingDocument).where(OnboardingDocument.onboarding_id == created["id"])
        )
        assert stored.first() is None
