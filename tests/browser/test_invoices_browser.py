"""Billing pages of the portal in a real headless Chromium: the staff member opens "Factures" from the
navigation (and from the company page), downloads the PDF, and the file is the invoice (number, total); opens
"Transactions", voids an uninvoiced transaction through its confirmation page (screenshot of the list kept
under `var/screenshots/`)."""

from __future__ import annotations

import asyncio
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from domain.money import Money
from domain.services import billing
from infra.db import create_engine, create_sessionmaker
from tests.browser.test_portal_admin_browser import shot
from tests.browser.test_portal_browser import CHROMIUM, PortalServer, browser, login, page, server

__all__ = ["browser", "page", "server"]  # the fixtures of the portal's browser tests, reused

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


async def _issue(db_file: Path, org_id: str, company_id: str) -> str:
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    try:
        async with create_sessionmaker(engine).begin() as session:
            transaction = await billing.record_transaction(
                session,
                org_id=org_id,
                company_id=company_id,
                reference=f"browser:{uuid.uuid4().hex}",
                description="Recharge DATA 2 Go",
                retail=Money(1_234_56),
            )
            invoice = await billing.issue_invoice(
                session,
                org_id=org_id,
                company_id=company_id,
                reference=f"browser:{uuid.uuid4().hex}",
                transactions=[transaction],
                title="Facture de test",
            )
            return billing.document_number(invoice)
    finally:
        await engine.dispose()


def test_download_an_invoice_from_the_portal(page: Page, server: PortalServer, tmp_path: Path) -> None:
    seed = server.seed
    assert server.db_file is not None
    # Playwright's sync API runs its own event loop in this thread: the database work goes to another thread.
    with ThreadPoolExecutor(1) as pool:
        number = pool.submit(asyncio.run, _issue(server.db_file, seed.org_a, seed.company_a1)).result()
    login(page, seed.staff_a)
    page.goto(f"/portal/companies/{seed.company_a1}")
    page.locator("#company-invoices").click()
    expect(page.get_by_role("heading", name=f"Factures et avoirs · {seed.company_a1_name}")).to_be_visible()
    page.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Factures").click()
    row = page.locator("#invoices tr", has_text=number)
    expect(row).to_contain_text("1\u202f234,56\u00a0€")
    with page.expect_download() as info:
        row.get_by_test_id("download-invoice").click()
    download = info.value
    assert download.suggested_filename == f"facture-{number}.pdf"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    text = " ".join(PdfReader(io.BytesIO(target.read_bytes())).pages[0].extract_text().split())
    assert f"Facture {number}" in text and "1 234,56 €" in text.replace("\u202f", " ").replace("\u00a0", " ")


async def _charge(db_file: Path, org_id: str, company_id: str, label: str) -> str:
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    try:
        async with create_sessionmaker(engine).begin() as session:
            transaction = await billing.record_transaction(
                session,
                org_id=org_id,
                company_id=company_id,
                reference=f"browser:{uuid.uuid4().hex}",
                description=label,
                retail=Money(25_00),
            )
            return transaction.id
    finally:
        await engine.dispose()


def test_void_a_transaction_from_the_portal(page: Page, server: PortalServer) -> None:
    seed = server.seed
    assert server.db_file is not None
    label = f"Frais de mise en service {uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(1) as pool:
        transaction_id = pool.submit(asyncio.run, _charge(server.db_file, seed.org_a, seed.company_a2, label)).result()
    login(page, seed.staff_a)
    page.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Transactions").click()
    page.locator("#transaction-filters select[name=company_id]").select_option(seed.company_a2)
    page.locator("#transaction-filters button[type=submit]").click()
    row = page.locator(f'#transactions tr[data-transaction-id="{transaction_id}"]')
    expect(row).to_contain_text(label)
    expect(row).to_contain_text("25,00\u00a0€")
    shot(page, "portal-transactions")
    row.get_by_role("link", name="Annuler").click()
    expect(page.get_by_role("heading", name="Annuler une transaction")).to_be_visible()
    page.locator("#void-submit").click()
    expect(page.locator("#transaction-voided")).to_be_visible()
    assert f"company_id={seed.company_a2}" in page.url
    expect(page.locator(f'#transactions tr[data-transaction-id="{transaction_id}"]')).to_have_count(0)
