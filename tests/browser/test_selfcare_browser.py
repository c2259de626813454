"""The self-care space in a real headless Chromium, with the whole stack behind the page: the API under uvicorn,
the worker on the test Temporal server, the OCS/SNAIC/CFAST simulators and localstripe. An end user logs in,
sees the data left on their line (read live from the OCS), saves their own card with Stripe Elements
(localstripe's), recharges the line by card, watches the recharge end and finds it, with its receipt, in the
line's history; Stripe's PaymentIntent shows their card was charged. Screenshots go to `var/screenshots/`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright, expect
from sqlalchemy import select, update

from bench.topup_world import STAFF_PASSWORD, build_world, provision_line
from domain.models import EndUser, Invoice, Line, Payment, TopUp
from domain.security import hash_password
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.browser.test_portal_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.topup_support import ApiServer, serve_api

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("worker"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str, localstripe_url: str) -> Iterator[ApiServer]:
    # localstripe's stand-in for Stripe.js (Elements), and SNAIC's order callbacks reaching this API
    with_js = settings.model_copy(update={"stripe_js_url": f"{localstripe_url}/js.stripe.com/v3/"})
    yield from serve_api(with_js, snaic_url)


@pytest_asyncio.fixture
async def page(live_api: ApiServer) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(
            base_url=live_api.url, viewport={"width": 1366, "height": 900}, locale="fr-FR"
        )
        tab = await context.new_page()
        tab.set_default_timeout(20_000)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield tab
        finally:
            await browser.close()
        assert errors == [], errors


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def test_end_user_recharges_their_line_by_card(page: Page, settings: Settings) -> None:
    world = await build_world(settings)  # the company pays by its saved card when the end user has none
    line_id = await provision_line(world)
    other_line = await provision_line(world)  # the company's other line, not the end user's
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(update(Line).where(Line.id == line_id).values(end_user_id=world.end_user_id))
            await session.execute(
                update(EndUser)
                .where(EndUser.id == world.end_user_id)
                .values(password_hash=hash_password(STAFF_PASSWORD))
            )
            user = await session.get(EndUser, world.end_user_id)
            assert user is not None
            email = user.email
            msisdn = (await session.get(Line, line_id)).msisdn  # type: ignore[union-attr]
    finally:
        await engine.dispose()

    await page.goto("/self-care")
    await expect(page).to_have_url(re.compile(r"/self-care/login\?next="))
    await page.get_by_label("Adresse e-mail").fill(email)
    await page.get_by_label("Mot de passe").fill(STAFF_PASSWORD)
    await shot(page, "selfcare-login")
    await page.get_by_role("button", name="Se connecter").click()
    await expect(page).to_have_url(re.compile(r"/self-care/home$"))
    row = page.locator(f'tr[data-line-id="{line_id}"]')
    await expect(row).to_contain_text(msisdn)
    await expect(row.get_by_test_id("data-left")).to_have_text(re.compile(r"^[0-9]+ Mo$"))
    await expect(page.locator(f'tr[data-line-id="{other_line}"]')).to_have_count(0)
    before_mb = int((await row.get_by_test_id("data-left").inner_text()).split()[0])
    await shot(page, "selfcare-home")

    # Their own card, saved with Stripe Elements (localstripe's: one input per field): it pays their recharges.
    await page.get_by_role("link", name="Mes cartes").click()
    await expect(page.locator("#card-list")).to_contain_text("Aucune carte enregistrée.")
    element = page.locator("#card-element")
    for field, value in (
        ("number", "4242424242424242"),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "75001"),
    ):
        await element.locator(f'input[placeholder="{field}"]').fill(value)
    await page.get_by_role("button", name="Enregistrer la carte").click()
    await expect(page.locator('#card-list tr[data-last4="4242"]')).to_contain_text("Par défaut")
    await shot(page, "selfcare-cards")

    await page.get_by_role("link", name="Mes lignes").click()
    await row.get_by_role("link", name="Détails et recharge").click()
    await expect(page).to_have_url(re.compile(rf"/self-care/lines/{line_id}$"))
    await page.get_by_label("Données à ajouter (Go)").fill("1")
    await page.get_by_label("Carte enregistrée").check()
    await page.locator("#recharge-submit").click()
    await expect(page).to_have_url(re.compile(r"/self-care/recharges/[0-9a-f]{32}$"))
    progress = page.locator("#recharge-progress")
    await expect(progress).to_have_attribute("data-status", "completed", timeout=60_000)  # htmx polling
    await expect(progress.get_by_test_id("recharge-status")).to_have_text("Terminée")
    await expect(page.locator("#receipt-link")).to_be_visible()
    await shot(page, "selfcare-recharge-done")
    topup_id = page.url.rsplit("/", 1)[-1]

    await page.get_by_role("link", name="Retour à la ligne").click()
    history = page.locator(f'#history tr[data-recharge-id="{topup_id}"]')
    await expect(history.get_by_test_id("recharge-status")).to_have_text("Terminée")
    await expect(history.get_by_role("link", name="Reçu PDF")).to_be_visible()
    after_mb = int((await page.locator("#balances").get_by_test_id("data-left").inner_text()).split()[0])
    assert after_mb >= before_mb + 1000, (before_mb, after_mb)  # 1 Go more in the OCS
    await shot(page, "selfcare-line")
    async with page.expect_download() as download_info:
        await history.get_by_role("link", name="Reçu PDF").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".pdf")

    await page.get_by_role("link", name="Mes factures").click()
    await expect(page.locator("#my-invoices")).to_contain_text(msisdn)
    await shot(page, "selfcare-invoices")

    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            topup = await session.get(TopUp, topup_id)
            assert topup is not None and topup.line_id == line_id and topup.source == "selfcare"
            assert (topup.status, topup.payment_method.value, topup.end_user_id) == (
                "completed",
                "card",
                world.end_user_id,
            )
            payment = (
                await session.execute(select(Payment).where(Payment.reference == f"{topup.workflow_id}:payment"))
            ).scalar_one()
            invoice = await session.get(Invoice, payment.invoice_id)
            assert invoice is not None and invoice.total_minor == topup.amount_minor
            user = await session.get(EndUser, world.end_user_id)
            assert user is not None and user.stripe_customer_id and user.stripe_payment_method_id
    finally:
        await engine.dispose()
    # Stripe's record: the charge was made on the end user's own card, not the company's.
    async with httpx.AsyncClient(base_url=settings.stripe_api_base, timeout=10) as stripe:
        auth = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
        intent = (await stripe.get(f"/v1/payment_intents/{topup.payment_reference}", headers=auth)).json()
    assert intent["customer"] == user.stripe_customer_id, intent
    assert intent["payment_method"] == user.stripe_payment_method_id
    assert intent["amount"] == topup.amount_minor and intent["status"] == "succeeded"
