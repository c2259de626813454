"""The portal's administration pages in a real headless Chromium, against the real API (uvicorn), a real
Temporal dev server (company creation starts its CFAST workflow) and a local webhook receiver that answers
the `echo` validation. Screenshots of the main pages are kept under `var/screenshots/`."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from domain.models import ApiKey, Company, Plan, StaffUser, WebhookEndpoint
from infra.processes import ManagedProcess, free_port, http_ready, temporal_dev_server_process
from tests.browser import test_portal_browser
from tests.browser.portal_seed import TEMPORAL_UI, seed_portal
from tests.browser.test_portal_browser import CHROMIUM, PortalServer, login
from tests.conftest import LOG_DIR, migrate, secret_environment

# The browser and the fresh page per test of the first portal module (the page uses this module's `server`).
browser = test_portal_browser.browser
page = test_portal_browser.page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
BAD_SIRET = "73282932000075"
GOOD_SIRET = "73282932000074"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


class AdminServer(PortalServer):
    def __init__(self, base_url: str, seed: Any, db_file: Path, hook_url: str) -> None:
        super().__init__(base_url, seed)
        self.db_file = db_file
        self.hook_url = hook_url

    def session(self) -> Session:
        return Session(create_engine(f"sqlite:///{self.db_file}"))


class _Echo(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        answer = json.dumps({"type": "echo", "echo_data": body.get("echo_data")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    tmp = tmp_path_factory.mktemp("portal-admin-browser")
    db_file = tmp / "portal.db"
    migrate(f"sqlite+aiosqlite:///{db_file}")
    engine = create_engine(f"sqlite:///{db_file}")
    with Session(engine) as session:
        seed = seed_portal(session)
        session.commit()
    engine.dispose()
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    temporal_port = free_port()
    temporal = temporal_dev_server_process(temporal_port, free_port(), tmp / "temporal.db", log_dir=LOG_DIR).start(
        timeout_s=90
    )
    port = free_port()
    proc = ManagedProcess(
        name="portal-admin-api",
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
            "SIMFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "SIMFLOW_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "portal-admin-browser@test.simflow",
            **secret_environment(),
        },
        log_path=LOG_DIR / "portal-admin-browser-api.log",
    ).start(timeout_s=60)
    yield AdminServer(f"http://127.0.0.1:{port}", seed, db_file, f"http://127.0.0.1:{hooks.server_port}/hook")
    proc.stop()
    temporal.stop()
    hooks.shutdown()
    hooks.server_close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_company_with_a_bad_siret_then_created(page: Page, server: AdminServer) -> None:
    seed = server.seed
    name = f"Menuiserie Lefèvre {seed.suffix}"
    login(page, seed.staff_a)
    page.get_by_role("link", name="Entreprises", exact=True).click()
    shot(page, "entreprises")
    page.get_by_role("link", name="Nouvelle entreprise").click()
    page.get_by_label("Raison sociale").fill(name)
    page.get_by_label("SIRET").fill(BAD_SIRET)
    page.get_by_role("button", name="Créer l'entreprise").click()
    expect(page.locator('[data-error-for="siret"]')).to_contain_text("clé de Luhn invalide")
    expect(page.get_by_label("Raison sociale")).to_have_value(name)
    shot(page, "entreprise-siret-invalide")
    with server.session() as session:
        assert session.scalars(select(Company).where(Company.name == name)).first() is None
    page.get_by_label("SIRET").fill(GOOD_SIRET)
    page.get_by_role("button", name="Créer l'entreprise").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    expect(page.locator("[data-cfast-status]")).to_have_text("En attente")
    expect(page.locator("#company-lines")).to_have_attribute("href", re.compile(r"/portal/lines\?company_id="))
    page.locator("#end-user-form").get_by_label("Nom complet").fill("Paul Lefèvre")
    page.locator("#end-user-form").get_by_label("E-mail").fill(f"paul-{seed.suffix}@lefevre.fr")
    page.get_by_role("button", name="Ajouter l'utilisateur").click()
    expect(page.locator("#end-users")).to_contain_text("Paul Lefèvre")
    shot(page, "entreprise")
    with server.session() as session:
        company = session.scalars(select(Company).where(Company.name == name)).one()
        assert company.siret == GOOD_SIRET and company.org_id == seed.org_a
        assert company.cfast_workflow_id


def test_create_plan_and_webhook_endpoint(page: Page, server: AdminServer) -> None:
    login(page, server.seed.staff_a)
    page.goto("/portal/plans")
    page.get_by_role("link", name="Nouveau forfait").click()
    page.get_by_label("Nom du forfait").fill("Data 50 Go")
    page.get_by_label("Type de forfait").select_option("subscription")
    page.get_by_label("Type d'abonnement").select_option("monthly")
    page.get_by_label("Prix de vente").fill("29,90")
    page.get_by_label("Prix d'achat").fill("11")
    page.get_by_label("Données (Mo)").fill("51200")
    page.locator("#f-carrier").fill("Orange")
    shot(page, "forfait-nouveau")
    page.get_by_role("button", name="Créer le forfait").click()
    row = page.locator("#plans tr", has_text="Data 50 Go")
    expect(row).to_contain_text("29,90")
    expect(row).to_contain_text("Abonnement")
    shot(page, "forfaits")
    with server.session() as session:
        plan = session.scalars(select(Plan).where(Plan.name == "Data 50 Go")).one()
        assert (plan.price_minor, plan.purchase_price_minor) == (2990, 1100)

    page.get_by_text("Administration").click()
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL du gestionnaire").fill("http://127.0.0.1:9/closed")
    page.get_by_role("button", name="Valider et enregistrer").click()
    expect(page.locator('[data-error-for="url"]')).to_contain_text("ne répond pas")
    page.get_by_label("URL du gestionnaire").fill(server.hook_url)
    page.get_by_role("button", name="Valider et enregistrer").click()
    expect(page.locator("#webhook-secret")).to_contain_text("affiché une seule fois")
    expect(page.locator("#webhook-endpoints")).to_contain_text(server.hook_url)
    shot(page, "webhooks")
    page.get_by_role("link", name=server.hook_url).click()
    page.get_by_role("button", name="Valider à nouveau (echo)").click()
    expect(page.get_by_role("status")).to_contain_text("Endpoint validé à nouveau")
    page.get_by_role("button", name="Nouveau secret").click()
    expect(page.locator("#webhook-secret [data-secret]")).to_have_text(re.compile(r"\S{20,}"))
    shot(page, "webhook-endpoint")
    page.get_by_role("button", name="Désactiver").click()
    expect(page.locator("#endpoint-disabled")).to_be_visible()
    with server.session() as session:
        endpoint = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.url == server.hook_url)).one()
        assert endpoint.validated_at is not None and endpoint.enabled is False


def test_invited_staff_with_limited_permissions_is_refused(page: Page, server: AdminServer) -> None:
    seed = server.seed
    email = f"invite-{seed.suffix}@alpha-telecom.fr"
    login(page, seed.staff_a)
    page.goto("/portal/staff")
    page.get_by_label("Nom complet").fill("Hugo Invité")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Mot de passe provisoire").fill("Provisoire-2026-navigateur!")
    page.get_by_label("Carte SIM : lecture et écriture").check()
    page.get_by_label("Forfait : lecture", exact=True).check()
    shot(page, "personnel")
    page.get_by_role("button", name="Inviter").click()
    expect(page.locator("#staff-created")).to_be_visible()
    with server.session() as session:
        member = session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
        assert member.permissions == ["plan:read", "sim_card"]
    page.get_by_test_id("who").click()  # the account menu
    page.get_by_role("button", name="Se déconnecter").click()
    login(page, email, "Provisoire-2026-navigateur!")
    page.get_by_label("Mot de passe actuel").fill("Provisoire-2026-navigateur!")
    page.get_by_label("Nouveau mot de passe", exact=True).fill("Definitif-2026-navigateur!")
    page.get_by_label("Confirmation du nouveau mot de passe").fill("Definitif-2026-navigateur!")
    page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    expect(page.get_by_role("heading", name="Cartes SIM")).to_be_visible()
    page.goto("/portal/plans")
    expect(page.get_by_role("heading", name="Forfaits et catalogue")).to_be_visible()
    for path in (
        "/portal/companies",
        "/portal/plans/new",
        "/portal/webhook-endpoints",
        "/portal/staff",
        "/portal/api-keys",
        "/portal/audit-log",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Accès refusé")).to_be_visible()
    shot(page, "acces-refuse")


def test_api_key_shown_once_then_revoked_and_audit(page: Page, server: AdminServer) -> None:
    login(page, server.seed.staff_a)
    page.goto("/portal/api-keys")
    page.get_by_label("Nom").fill("Intégration ERP")
    page.get_by_role("button", name="Créer la clé").click()
    key = page.locator("[data-api-key]").inner_text()
    assert len(key) > 20
    shot(page, "cles-api")
    page.goto("/portal/api-keys")
    assert key not in page.content()
    row = page.locator("#api-keys tr", has_text="Intégration ERP")
    expect(row.locator('[data-state="active"]')).to_be_visible()
    row.get_by_role("button", name="Révoquer").click()
    expect(page.locator("#api-keys tr", has_text="Intégration ERP").locator('[data-state="revoked"]')).to_be_visible()
    with server.session() as session:
        assert session.scalars(select(ApiKey).where(ApiKey.name == "Intégration ERP")).one().revoked_at is not None
    page.goto("/portal/audit-log?action=api_key.revoked")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    shot(page, "journal-audit")
    for path, name, heading in (
        ("/portal/catalogue", "catalogue", "Forfaits et catalogue"),
        ("/portal/number-ranges", "plages-de-numeros", "Plages de numéros"),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        shot(page, name)


def test_sim_list_fits_1366_pixels(page: Page, server: AdminServer) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, server.seed.staff_a)
    expect(page.get_by_role("heading", name="Cartes SIM")).to_be_visible()
    expect(page.locator("#sim-table tbody tr[data-iccid]").first).to_be_visible()
    shot(page, "cartes-sim-1366")
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 1366, width
    table_right = page.evaluate("document.querySelector('#sim-table').getBoundingClientRect().right")
    assert table_right <= 1366, table_right
