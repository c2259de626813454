"""The onboarding API over the real worker: opening an onboarding, its Updates (a refusal is a 409 that changes
nothing), card payments through localstripe, cancellation, and tenancy (another organisation's onboarding is a
404, opening one is the platform's)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.models import Onboarding, Organisation
from domain.onboarding_contracts import DOSSIER_ITEMS
from tests.api.conftest import Tenant

pytestmark = pytest.mark.usefixtures("worker")

GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"


def terms(**overrides: Any) -> dict[str, Any]:
    slug = f"integ-{uuid.uuid4().hex[:8]}"
    return {
        "name": f"Intégrateur {slug}",
        "slug": slug,
        "contact_email": f"contact@{slug}.example.com",
        "contact_name": "Dominique Contrat",
        "deposit_minor": 150_000,
        "balance_minor": 150_000,
        **overrides,
    }


async def open_one(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    created = await client.post("/api/v1/onboardings", json=terms(), headers=headers)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def recorded(client: httpx.AsyncClient, headers: dict[str, str], onboarding_id: str) -> dict[str, Any]:
    """The onboarding once the workflow has written its first state."""
    for _ in range(100):
        got = await client.get(f"/api/v1/onboardings/{onboarding_id}", headers=headers)
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        if body["updated_at"] != body["created_at"]:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError("the workflow never recorded the onboarding")


async def post(client: httpx.AsyncClient, headers: dict[str, str], path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body, headers=headers)


async def test_open_read_and_move_an_onboarding(app_client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    created = await open_one(app_client, admin_headers)
    assert (created["stage"], created["status"], created["workflow_id"]) == (
        "contracts_sent",
        "in_progress",
        f"onboarding/{created['org_id']}",
    )
    assert created["missing_items"] == list(DOSSIER_ITEMS)
    base = f"/api/v1/onboardings/{created['id']}"
    before = await recorded(app_client, admin_headers, created["id"])

    wrong = await post(app_client, admin_headers, f"{base}/steps", {"stage": "sims_shipped"})
    assert wrong.status_code == 409 and wrong.json()["errors"][0]["field"] == "stage", wrong.text
    assert "Contrats" in wrong.json()["detail"]
    assert (await app_client.get(base, headers=admin_headers)).json()["history"] == before["history"] == []

    moved = await post(app_client, admin_headers, f"{base}/steps", {"stage": "contracts_sent", "note": "envoyés"})
    assert moved.status_code == 200 and moved.json()["stage"] == "admin_documents_received", moved.text
    assert [(h["stage"], h["event"], h["note"]) for h in moved.json()["history"]] == [
        ("contracts_sent", "completed", "envoyés")
    ]
    await post(app_client, admin_headers, f"{base}/steps", {"stage": "admin_documents_received"})
    short = await post(
        app_client, admin_headers, f"{base}/transfers", {"kind": "deposit", "amount_minor": 100, "reference": "V1"}
    )
    assert short.status_code == 409 and "150000" in short.json()["detail"], short.text
    paid = await post(
        app_client, admin_headers, f"{base}/transfers", {"kind": "deposit", "amount_minor": 150_000, "reference": "V2"}
    )
    assert paid.status_code == 200 and paid.json()["stage"] == "dossier_submitted", paid.text
    assert paid.json()["payments"]["deposit"] == {
        "method": "transfer",
        "reference": "V2",
        "amount_minor": 150_000,
        "refund_reference": None,
    }


async def test_bad_input_is_refused_and_changes_nothing(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], db: async_sessionmaker[AsyncSession]
) -> None:
    async with db() as session:
        count = (await session.execute(select(func.count()).select_from(Onboarding))).scalar_one()
    for bad, field in (
        ({"deposit_minor": 0}, "deposit_minor"),
        ({"contact_email": "pas-un-email"}, "contact_email"),
        ({"slug": "Avec Espaces"}, "slug"),
    ):
        refused = await app_client.post("/api/v1/onboardings", json=terms(**bad), headers=admin_headers)
        assert refused.status_code == 422 and field in refused.text, refused.text
    async with db() as session:
        assert (await session.execute(select(func.count()).select_from(Onboarding))).scalar_one() == count

    created = await open_one(app_client, admin_headers)
    documents = f"/api/v1/onboardings/{created['id']}/documents"
    unknown = await app_client.post(documents, data={"item": "kbis", "value": "x"}, headers=admin_headers)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "item", unknown.text
    no_file = await app_client.post(documents, data={"item": "logo"}, headers=admin_headers)
    assert no_file.status_code == 422 and no_file.json()["errors"][0]["field"] == "file", no_file.text


async def test_a_declined_deposit_then_another_card(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await open_one(app_client, admin_headers)
    base = f"/api/v1/onboardings/{created['id']}"
    early = await post(app_client, admin_headers, f"{base}/card-payments", {"kind": "deposit", "card": GOOD_CARD})
    assert early.status_code == 409, early.text
    for stage in ("contracts_sent", "admin_documents_received"):
        assert (await post(app_client, admin_headers, f"{base}/steps", {"stage": stage})).status_code == 200
    declined = await post(
        app_client, admin_headers, f"{base}/card-payments", {"kind": "deposit", "card": DECLINING_CARD}
    )
    assert declined.status_code == 422 and declined.json()["errors"][0]["field"] == "card", declined.text
    after_decline = (await app_client.get(base, headers=admin_headers)).json()
    assert after_decline["stage"] == "deposit_paid" and after_decline["payments"] == {}
    paid = await post(app_client, admin_headers, f"{base}/card-payments", {"kind": "deposit", "card": GOOD_CARD})
    assert paid.status_code == 200 and paid.json()["stage"] == "dossier_submitted", paid.text
    assert paid.json()["payments"]["deposit"]["reference"].startswith("pi_")


async def test_cancellation_disables_the_organisation(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], db: async_sessionmaker[AsyncSession]
) -> None:
    created = await open_one(app_client, admin_headers)
    base = f"/api/v1/onboardings/{created['id']}"
    cancelled = await post(app_client, admin_headers, f"{base}/cancellation", {"reason": "projet abandonné"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    assert cancelled.json()["history"][-1]["event"] == "rollback"
    async with db() as session:
        org = await session.get(Organisation, created["org_id"])
        assert org is not None and org.disabled_at is not None
    again = await post(app_client, admin_headers, f"{base}/cancellation", {"reason": "encore"})
    assert again.status_code == 409, again.text


async def test_tenancy(app_client: httpx.AsyncClient, admin_headers: dict[str, str], tenant: Tenant) -> None:
    refused = await app_client.post("/api/v1/onboardings", json=terms(), headers=tenant.org_staff)
    assert refused.status_code == 403, refused.text
    created = await open_one(app_client, admin_headers)
    hidden = await app_client.get(f"/api/v1/onboardings/{created['id']}", headers=tenant.org_staff)
    assert hidden.status_code == 404, hidden.text
    step = await post(
        app_client, tenant.org_staff, f"/api/v1/onboardings/{created['id']}/steps", {"stage": "contracts_sent"}
    )
    assert step.status_code == 404, step.text
