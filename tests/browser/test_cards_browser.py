"""Saving cards in the portal, in Debian's Chromium: the page loads localstripe's Stripe.js stand-in, the
card form confirms our API's SetupIntent against localstripe, and our API records, lists, makes default and
removes the cards (checked in localstripe too). The charge that `4000000000000341` then declines is the
e2e test `tests/e2e/test_payment_methods_topup.py`, which saves the card through the same API routes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from domain.models import Company, EndUser
from infra.processes import ManagedProcess, free_port, http_ready
from tests.browser.portal_seed import TEMPORAL_UI, seed_portal
from tests.browser.test_portal_browser import CHROMIUM, PortalServer, browser, login, page
from tests.conftest import LOG_DIR, migrate, secret_environment

__all__ = ["browser", "page"]  # the fixtures of the portal's browser tests, on this module's server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]

STRIPE_KEY = "sk_test_simflow"


class CardsServer(PortalServer):
    def __init__(self, base_url: str, seed: object, db_url: str, localstripe_url: str) -> None:
        super().__init__(base_url, seed)  # type: ignore[arg-type]
        self.db_url = db_url
        self.localstripe_url = localstripe_url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, localstripe_url: str, stripe_url: str) -> Iterator[CardsServer]:
    db_file = tmp_path_factory.mktemp("cards-browser") / "portal.db"
    migrate(f"sqlite+aiosqlite:///{db_file}")
    engine = create_engine(f"sqlite:///{db_file}")
    with Session(engine) as session:
        seed = seed_portal(session)
        session.add(
            EndUser(
                org_id=seed.org_a,
                company_id=seed.company_a1,
                email=f"porteur-{seed.suffix}@test.simflow",
                full_name="Camille Porteur",
            )
        )
        session.commit()
    engine.dispose()
    port = free_port()
    proc = ManagedProcess(
        name="cards-portal-api",
        args=[
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        ready=http_ready(f"http://127.0.0.1:{port}/portal/login"),
        env={
            "SIMFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{db_file}",
            "SIMFLOW_TEMPORAL_UI_URL": TEMPORAL_UI,
            "SIMFLOW_TEMPORAL_ADDRESS": "127.0.0.1:9",  # saving cards never needs Temporal
            "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "cards-browser-admin@test.simflow",
            "SIMFLOW_STRIPE_API_BASE": stripe_url,
            "SIMFLOW_STRIPE_SECRET_KEY": STRIPE_KEY,
            "SIMFLOW_STRIPE_JS_URL": f"{localstripe_url}/js.stripe.com/v3/",
            **secret_environment(),
        },
        log_path=LOG_DIR / "cards-browser-api.log",
    ).start(timeout_s=60)
    yield CardsServer(f"http://127.0.0.1:{port}", seed, f"sqlite:///{db_file}", localstripe_url)
    proc.stop()


def fill_card(page: Page, number: str) -> None:
    """localstripe's Element: one text input per field (Stripe's own is an iframe)."""
    form = page.locator("#card-element")
    form.locator('input[placeholder="number"]').fill(number)
    form.locator('input[placeholder="exp_month"]').fill("12")
    form.locator('input[placeholder="exp_year"]').fill("34")
    form.locator('input[placeholder="cvc"]').fill("123")
    form.locator('input[placeholder="postal_code"]').fill("75001")
    page.get_by_role("button", name="Enregistrer la carte").click()


def stripe_customer_of(server: CardsServer, pm_id: str) -> str | None:
    answer = httpx.get(
        f"{server.localstripe_url}/v1/payment_methods/{pm_id}",
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        timeout=10,
    ).json()
    customer: str | None = answer["customer"]
    return customer


def test_save_list_default_and_remove_company_cards(page: Page, server: CardsServer) -> None:
    seed = server.seed
    login(page, seed.staff_a)
    page.goto(f"/portal/companies/{seed.company_a1}")
    page.get_by_role("link", name="Moyens de paiement").click()
    expect(page.get_by_role("heading", name=f"Moyens de paiement · {seed.company_a1_name}")).to_be_visible()
    scripts = page.locator("script[src]").evaluate_all("s => s.map(e => e.src)")
    assert f"{server.localstripe_url}/js.stripe.com/v3/" in scripts
    expect(page.locator("#card-list")).to_contain_text("Aucune carte enregistrée.")

    fill_card(page, "4242 4242 4242 4242".replace(" ", ""))
    visa = page.locator('#card-list tr[data-last4="4242"]')
    expect(visa).to_contain_text("VISA")
    expect(visa).to_contain_text("12/2034")
    expect(visa).to_contain_text("Par défaut")

    fill_card(page, "4000000000000341")
    declining = page.locator('#card-list tr[data-last4="0341"]')
    expect(declining).to_be_visible()
    expect(declining).not_to_contain_text("Par défaut")
    declining.get_by_role("button", name="Définir par défaut").click()
    expect(page.locator('#card-list tr[data-last4="0341"]')).to_contain_text("Par défaut")
    expect(page.locator('#card-list tr[data-last4="4242"]')).not_to_contain_text("Par défaut")

    engine = create_engine(server.db_url)
    with Session(engine) as session:
        company = session.get(Company, seed.company_a1)
        assert company is not None and company.stripe_customer_id
        default_pm = company.stripe_payment_method_id
        customer_id = company.stripe_customer_id
    assert default_pm and stripe_customer_of(server, default_pm) == customer_id  # what the recharge charges

    visa_pm = page.locator('#card-list tr[data-last4="4242"]').get_attribute("data-card-id")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('#card-list tr[data-last4="4242"]').get_by_role("button", name="Supprimer").click()
    expect(page.locator('#card-list tr[data-last4="4242"]')).to_have_count(0)
    expect(page.locator("#card-list tbody tr")).to_have_count(1)
    assert visa_pm
    with Session(engine) as session:
        company = session.get(Company, seed.company_a1)
        assert company is not None and company.stripe_payment_method_id == default_pm
    engine.dispose()


def test_end_user_card_from_the_company_page(page: Page, server: CardsServer) -> None:
    seed = server.seed
    login(page, seed.staff_a)
    page.goto(f"/portal/companies/{seed.company_a1}/payment-methods")
    row = page.locator("#end-user-cards tr", has_text="Camille Porteur")
    row.get_by_role("link", name="Gérer les cartes").click()
    expect(page.get_by_role("heading", name="Moyens de paiement · Camille Porteur", exact=False)).to_be_visible()
    fill_card(page, "4242424242424242")
    expect(page.locator('#card-list tr[data-last4="4242"]')).to_contain_text("Par défaut")
    engine = create_engine(server.db_url)
    with Session(engine) as session:
        email = f"porteur-{seed.suffix}@test.simflow"
        user = session.execute(select(EndUser).where(EndUser.email == email)).scalar_one()
        assert user.stripe_customer_id and user.stripe_payment_method_id
        assert stripe_customer_of(server, user.stripe_payment_method_id) == user.stripe_customer_id
    engine.dispose()


def test_another_organisation_cannot_open_the_card_page(page: Page, server: CardsServer) -> None:
    login(page, server.seed.staff_b)
    response = page.goto(f"/portal/companies/{server.seed.company_a1}/payment-methods")
    assert response is not None and response.status == 404
