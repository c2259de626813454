"""A company's wallet in a real headless Chromium, with the whole stack behind the page: the API under uvicorn,
the worker on the test Temporal server, the Stripe fault proxy and localstripe. The staff member funds the
wallet by card from the page and watches the funding end; Stripe's own record and the ledger agree.

Async Playwright: the worker runs on this session's event loop, which must keep turning while the browser
is driven (the sync API would block it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from sqlalchemy import select

from bench.topup_world import STAFF_PASSWORD, World, build_world
from domain.models import Wallet, WalletEntry, WalletFunding
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.browser.test_portal_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.topup_support import ApiServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("worker"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


@pytest.fixture(scope="module")
def live_api(settings: Settings) -> Iterator[ApiServer]:
    with ApiServer(settings) as server:
        yield server


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Browser, live_api: ApiServer) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=live_api.url, locale="fr-FR", timezone_id="Europe/Paris")
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert errors == [], errors


async def login(page: Page, world: World) -> None:
    await page.goto("/portal/login")
    await page.get_by_label("Adresse e-mail").fill(world.staff_email)
    await page.get_by_label("Mot de passe").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()
    await expect(page.get_by_test_id("who")).to_have_text(world.staff_email)


async def rows(settings: Settings, query: Any) -> list[Any]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.execute(query)).scalars())
    finally:
        await engine.dispose()


async def test_fund_a_company_wallet_by_card_from_the_portal(
    page: Page, settings: Settings, localstripe_url: str
) -> None:
    world = await build_world(settings, wallet_minor=10_000)
    await login(page, world)
    await page.goto(f"/portal/companies/{world.company_id}")
    await page.get_by_role("link", name="Portefeuille", exact=True).click()
    await expect(page.get_by_role("heading", name="Portefeuille", exact=False).first).to_be_visible()
    await expect(page.locator("#wallet-balance")).to_contain_text("100,00")

    await page.get_by_label("Montant (€)").fill("25,50")
    await page.get_by_role("button", name="Approvisionner").click()
    row = page.locator("#fundings tbody tr[data-funding-id]").first
    await expect(row).to_have_attribute("data-status", "succeeded", timeout=45_000)
    await expect(row).to_contain_text("Crédité")
    await expect(row).to_contain_text("25,50")

    funding_id = await row.get_attribute("data-funding-id")
    (funding,) = await rows(settings, select(WalletFunding).where(WalletFunding.id == funding_id))
    assert funding.amount_minor == 2_550 and funding.requested_by == world.staff_email
    # Stripe's record and the ledger: one charge of 25,50 €, one credit of the same amount.
    auth = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    intents = httpx.get(f"{localstripe_url}/v1/payment_intents", params={"limit": 100}, headers=auth).json()["data"]
    charged = [pi for pi in intents if (pi.get("metadata") or {}).get("wallet_funding_id") == funding_id]
    assert [(pi["id"], pi["status"], pi["amount"]) for pi in charged] == [
        (funding.payment_reference, "succeeded", 2_550)
    ]
    credits = await rows(
        settings, select(WalletEntry.amount_minor).where(WalletEntry.reference == funding.ledger_reference)
    )
    assert credits == [2_550]

    # The overview and the ledger, after a reload.
    await page.reload()
    await expect(page.locator("#wallet-balance")).to_contain_text("125,50")
    await expect(page.locator("#topped-up")).to_contain_text("125,50")
    await expect(page.locator("#final-balance")).to_contain_text("125,50")
    await expect(page.locator("#wallet-ledger")).to_contain_text(str(funding.ledger_reference))
    href = await page.locator("#ledger-csv").get_attribute("href")
    assert href == f"/api/v1/wallets/{funding.wallet_id}/ledger.csv"
    csv = await page.request.get(href)
    assert csv.ok and (await csv.body()).startswith("\ufeff".encode())
    assert "25,50" in (await csv.text())

    # Disabled from the page: the funding form goes, and the wallet row says so.
    await page.get_by_label("Activer le portefeuille").uncheck()
    await page.get_by_label("Solde minimum (€)").fill("-20,00")
    await page.get_by_role("button", name="Enregistrer").click()
    await expect(page.locator("#wallet-fund")).to_contain_text("désactivé")
    await expect(page.get_by_role("button", name="Approvisionner")).to_have_count(0)
    (wallet,) = await rows(settings, select(Wallet).where(Wallet.id == funding.wallet_id))
    assert (wallet.enabled, wallet.min_balance_minor) == (False, -2_000)


async def test_bad_amount_is_refused_on_the_page(page: Page, settings: Settings) -> None:
    world = await build_world(settings, wallet_minor=0)
    await login(page, world)
    await page.goto(f"/portal/companies/{world.company_id}/wallet")
    await page.get_by_label("Montant (€)").fill("12,345")
    await page.get_by_role("button", name="Approvisionner").click()
    await expect(page.get_by_role("alert")).to_contain_text("Montant")
    assert (
        await rows(settings, select(WalletFunding.id).join(Wallet).where(Wallet.company_id == world.company_id)) == []
    )
