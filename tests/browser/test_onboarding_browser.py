"""The integrator's onboarding checklist in a real headless Chromium, with the whole stack behind the page: the
API under uvicorn, the worker on the test Temporal server and localstripe. The integrator uploads a logo that
is refused with its precise message, then a right one, pays its deposit by card with localstripe's Stripe.js,
and watches the progress move; the deposit is Stripe's PaymentIntent recorded by the workflow.

Async Playwright, as in test_wallet_browser: the worker runs on this session's event loop."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from domain.enums import StaffRole
from domain.models import Onboarding, StaffUser
from domain.security import hash_password
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.browser.test_portal_browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.e2e.topup_support import ApiServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("worker"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]

PASSWORD = "Integrateur-2026-portail!"


@pytest.fixture(scope="module")
def live_api(settings: Settings, localstripe_url: str) -> Iterator[ApiServer]:
    page_settings = settings.model_copy(update={"stripe_js_url": f"{localstripe_url}/js.stripe.com/v3/"})
    with ApiServer(page_settings) as server:
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


def png_file(directory: Path, name: str, size: int) -> Path:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (20, 90, 160)).save(out, format="PNG")
    path = directory / name
    path.write_bytes(out.getvalue())
    return path


async def in_database(settings: Settings, work: Any) -> Any:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


async def onboarding_at_the_deposit(live_api: ApiServer, settings: Settings) -> tuple[dict[str, Any], str]:
    """A new integrator (opened and moved by platform staff through the API) and the login of its own staff."""
    async with httpx.AsyncClient(base_url=live_api.url, timeout=30) as client:
        token = await client.post("/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        slug = f"navig-{uuid.uuid4().hex[:8]}"
        terms = {
            "name": f"Intégrateur {slug}",
            "slug": slug,
            "contact_email": f"contact@{slug}.example.com",
            "contact_name": "Dominique Navigateur",
            "deposit_minor": 120_000,
            "balance_minor": 80_000,
        }
        created = await client.post("/api/v1/onboardings", json=terms, headers=headers)
        assert created.status_code == 201, created.text
        onboarding = created.json()
        for stage in ("contracts_sent", "admin_documents_received"):
            moved = await client.post(
                f"/api/v1/onboardings/{onboarding['id']}/steps", json={"stage": stage}, headers=headers
            )
            assert moved.status_code == 200, moved.text
    email = f"equipe@{slug}.example.com"

    async def add_staff(session: Any) -> None:
        session.add(
            StaffUser(
                email=email,
                full_name="Équipe intégrateur",
                password_hash=hash_password(PASSWORD),
                role=StaffRole.ORG_STAFF,
                org_id=onboarding["org_id"],
            )
        )

    await in_database(settings, add_staff)
    return onboarding, email


async def test_upload_pay_and_see_progress(page: Page, live_api: ApiServer, settings: Settings, tmp_path: Path) -> None:
    onboarding, email = await onboarding_at_the_deposit(live_api, settings)
    await page.goto("/portal/login")
    await page.get_by_label("Adresse e-mail").fill(email)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()
    await expect(page.get_by_test_id("who")).to_have_text(email)

    await page.get_by_role("link", name="Mon intégration").click()
    progress = page.locator("#onboarding-progress")
    await expect(progress).to_have_attribute("data-percent", "20")
    await expect(progress.locator('li[data-stage="deposit_paid"]')).to_have_attribute("data-state", "current")

    logo_row = page.locator('#dossier-items tr[data-item="logo"]')
    await logo_row.locator('input[type="file"]').set_input_files(png_file(tmp_path, "logo.png", 40))
    await logo_row.get_by_role("button", name="Envoyer").click()
    logo_row = page.locator('#dossier-items tr[data-item="logo"]')
    await expect(logo_row.locator(".item-error")).to_contain_text("95")
    await expect(logo_row).to_have_attribute("data-status", "invalid")
    await logo_row.locator('input[type="file"]').set_input_files(png_file(tmp_path, "logo.png", 95))
    await logo_row.get_by_role("button", name="Envoyer").click()
    await expect(page.locator("#checklist-notice")).to_contain_text("accepté")
    await expect(page.locator('#dossier-items tr[data-item="logo"]')).to_have_attribute("data-status", "valid")
    brand_row = page.locator('#dossier-items tr[data-item="brand_name"]')
    await brand_row.locator('input[name="value"]').fill("Navig Mobile")
    await brand_row.get_by_role("button", name="Envoyer").click()
    await expect(page.locator('#dossier-items tr[data-item="brand_name"]')).to_have_attribute("data-status", "valid")
    await expect(page.locator('#dossier-items tr[data-item="logo"]')).to_have_attribute("data-status", "valid")

    card = page.locator("#card-element")
    await card.locator('input[placeholder="number"]').fill("4242424242424242")
    await card.locator('input[placeholder="exp_month"]').fill("12")
    await card.locator('input[placeholder="exp_year"]').fill("34")
    await card.locator('input[placeholder="cvc"]').fill("123")
    await page.get_by_role("button", name="Payer l'acompte", exact=False).click()
    await expect(page.locator("#onboarding-progress")).to_have_attribute("data-percent", "30", timeout=45_000)
    await expect(page.locator("#deposit-state")).to_contain_text("réglé")
    await expect(page.locator('li[data-stage="dossier_submitted"]')).to_have_attribute("data-state", "current")

    async def recorded_payment(session: Any) -> dict[str, Any]:
        row = await session.get(Onboarding, onboarding["id"])
        return dict(row.payments)

    payments = await in_database(settings, recorded_payment)
    assert payments["deposit"]["method"] == "card" and payments["deposit"]["reference"].startswith("pi_")
    assert payments["deposit"]["amount_minor"] == 120_000
