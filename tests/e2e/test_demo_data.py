"""`make run`'s demo: loaded through the API, with a number range and lines activated by the real activation
workflow (simulators, Temporal, the worker), so the portal opens on live lines; the demo company has a saved test
card, a wallet funded by card and one invoice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from api.demo_data import (
    DEMO_ACTIVE_LINES,
    DEMO_BILLING_EMAIL,
    DEMO_END_USER_EMAIL,
    DEMO_ORG_SLUG,
    DEMO_WALLET_FUNDING_MINOR,
    demo_end_user_password,
    load_demo_data,
)
from domain.enums import LineStatus
from domain.models import (
    Company,
    EndUser,
    Invoice,
    Line,
    Notification,
    NumberRange,
    Organisation,
    SavedPaymentMethod,
    Wallet,
    WalletEntry,
)
from infra.settings import Settings
from tests.e2e.lifecycle_support import db_all, db_one
from tests.e2e.topup_support import ApiServer, serve_api

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


async def test_demo_has_a_number_range_and_active_lines_from_the_activation_workflow(
    live_api: ApiServer, settings: Settings
) -> None:
    summary = await load_demo_data(settings, live_api.url)
    assert f"{DEMO_ACTIVE_LINES} activation(s)" in summary, summary
    org = await db_one(settings, select(Organisation).where(Organisation.slug == DEMO_ORG_SLUG))
    assert await db_all(settings, select(NumberRange).where(NumberRange.org_id == org.id))
    lines: list[Line] = []
    for _ in range(300):
        lines = await db_all(settings, select(Line).where(Line.org_id == org.id))
        if len(lines) == DEMO_ACTIVE_LINES and all(line.status is LineStatus.ACTIVE for line in lines):
            break
        await asyncio.sleep(0.2)
    assert [(line.status, line.activation_workflow_id is not None) for line in lines] == [
        (LineStatus.ACTIVE, True)
    ] * DEMO_ACTIVE_LINES
    assert all(line.msisdn.startswith("+33601000") and line.ocs_account and line.snaic_line_id for line in lines)
    assert "portefeuille approvisionné" in summary, summary
    dupont = await db_one(
        settings, select(Company).where(Company.org_id == org.id, Company.name == "Transports Dupont")
    )
    cards = await db_all(settings, select(SavedPaymentMethod).where(SavedPaymentMethod.company_id == dupont.id))
    assert [card.last4 for card in cards] == ["4242"]
    assert dupont.stripe_payment_method_id == cards[0].stripe_payment_method_id
    wallet = await db_one(settings, select(Wallet).where(Wallet.owner_id == dupont.id))
    entries = await db_all(settings, select(WalletEntry).where(WalletEntry.wallet_id == wallet.id))
    assert sum(entry.amount_minor for entry in entries) == DEMO_WALLET_FUNDING_MINOR
    invoices = await db_all(settings, select(Invoice).where(Invoice.company_id == dupont.id))
    assert len(invoices) == 1 and invoices[0].total_minor > 0
    # … mailed with its PDF to the company's billing address (the relay sends it to the mail sink).
    mails = await db_all(settings, select(Notification).where(Notification.attachment_ref == invoices[0].id))
    assert [(m.recipient, m.attachment_kind) for m in mails] == [(DEMO_BILLING_EMAIL, "invoice")]
    # The self-care demo login: an end user of the company, owner of one active line, who can log in.
    user = await db_one(settings, select(EndUser).where(EndUser.email == DEMO_END_USER_EMAIL))
    assert [line.end_user_id for line in lines].count(user.id) == 1
    async with httpx.AsyncClient(base_url=live_api.url) as http:
        token = await http.post(
            "/api/v1/auth/token", data={"username": user.email, "password": demo_end_user_password(settings)}
        )
        assert token.status_code == 200, token.text
    assert await load_demo_data(settings, live_api.url) == "données de démonstration déjà chargées"
