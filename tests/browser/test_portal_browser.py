"""The staff portal in a real headless Chromium (Debian's), against the real API run by uvicorn.

Sync Playwright API: this module has no async fixture or test, so no asyncio loop runs while it drives
the browser. Never `playwright install`: the browser is /usr/bin/chromium (`make browser-deps`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from infra.processes import ManagedProcess, free_port, http_ready
from tests.browser.portal_seed import PASSWORD, TEMPORAL_UI, PortalSeed, seed_portal
from tests.conftest import LOG_DIR, migrate, secret_environment

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


class PortalServer:
    def __init__(self, base_url: str, seed: PortalSeed, db_file: Path | None = None) -> None:
        self.base_url = base_url
        self.seed = seed
        self.db_file = db_file  # the server's SQLite file, for tests that add their own rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    db_file = tmp_path_factory.mktemp("portal-browser") / "portal.db"
    migrate(f"sqlite+aiosqlite:///{db_file}")
    engine = create_engine(f"sqlite:///{db_file}")
    with Session(engine) as session:
        seed = seed_portal(session)
        session.commit()
    engine.dispose()
    port = free_port()
    proc = ManagedProcess(
        name="portal-api",
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
            "SIMFLOW_TEMPORAL_ADDRESS": "127.0.0.1:9",  # the pages never need Temporal
            "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "portal-browser-admin@test.simflow",
            **secret_environment(),
        },
        log_path=LOG_DIR / "portal-browser-api.log",
    ).start(timeout_s=60)
    yield PortalServer(f"http://127.0.0.1:{port}", seed, db_file)
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: PortalServer) -> Iterator[Page]:
    """A fresh profile per test; fails the test on any script or CSP error in the console. Expected HTTP
    errors (401 on a wrong password, the 404 page) are asserted by the tests themselves."""
    context = browser.new_context(base_url=server.base_url, locale="fr-FR", timezone_id="Europe/Paris")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], errors


def login(page: Page, email: str, password: str = PASSWORD) -> None:
    """Logs in towards the SIM list (without `next`, the portal lands on its home page)."""
    page.goto(f"/portal/login?next={quote('/portal/sims', safe='')}")
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()


def header_keys(page: Page) -> list[str]:
    return page.locator("#sim-table thead th[data-column]").evaluate_all("ths => ths.map(th => th.dataset.column)")


def test_the_top_bar_holds_on_one_row_in_a_1280_px_window(page: Page, server: PortalServer) -> None:
    """Every menu entry on one row, under the row of the brand, the search and the account menu; nothing past
    the window's edge; the account's actions in their menu."""
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, server.seed.staff_a)
    expect(page.get_by_role("heading", name="Cartes SIM")).to_be_visible()
    entries = page.locator(".topbar .mainnav > a, .topbar .mainnav > details > summary")
    assert entries.count() >= 9
    tops = entries.evaluate_all("els => els.map(e => e.getBoundingClientRect().top)")
    assert max(tops) - min(tops) < 8, tops
    account = page.get_by_test_id("who").evaluate("who => who.getBoundingClientRect().bottom")
    assert account <= min(tops), (account, tops)
    assert page.locator(".topbar").evaluate("bar => bar.scrollWidth <= bar.clientWidth")
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_hidden()
    page.get_by_test_id("who").click()
    expect(page.get_by_role("link", name="Mot de passe")).to_be_visible()
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_visible()


def test_login_wrong_password_then_right(page: Page, server: PortalServer) -> None:
    page.goto("/portal/sims")
    expect(page).to_have_url(f"{server.base_url}/portal/login?next=%2Fportal%2Fsims")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    login(page, server.seed.staff_a, "pas-le-bon-mot-de-passe")
    expect(page.get_by_role("alert")).to_contain_text("Adresse e-mail ou mot de passe incorrect")
    expect(page.get_by_label("Adresse e-mail")).to_have_value(server.seed.staff_a)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(f"{server.base_url}/portal/sims")
    expect(page.get_by_role("heading", name="Cartes SIM")).to_be_visible()
    expect(page.get_by_test_id("who")).to_have_text(server.seed.staff_a)
    session_cookie = next(c for c in page.context.cookies() if c["name"] == "simflow_session")
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Strict"
    page.get_by_test_id("who").click()  # the account menu
    page.get_by_role("button", name="Se déconnecter").click()
    expect(page.get_by_role("status")).to_have_text("Vous êtes déconnecté.")


def test_companies_list_links_to_temporal(page: Page, server: PortalServer) -> None:
    seed = server.seed
    login(page, seed.staff_a)
    page.get_by_role("link", name="Entreprises").click()
    row = page.locator(f'tr[data-company-id="{seed.company_a1}"]')
    expect(row).to_contain_text("Synchronisée")
    link = row.get_by_role("link", name="Voir dans Temporal")
    expected = f"{TEMPORAL_UI}/namespaces/default/workflows/{quote(seed.company_a1_workflow, safe='')}"
    expect(link).to_have_attribute("href", expected)
    expect(page.locator(f'tr[data-company-id="{seed.company_a2}"]')).to_contain_text("En échec")
    expect(page.locator(f'tr[data-company-id="{seed.company_b1}"]')).to_have_count(0)
    row.get_by_role("link", name=seed.company_a1_name).click()
    expect(page.locator("#update-records")).to_contain_text("CFAST indisponible (503)")
    expect(page.locator("#billing-sites")).to_contain_text(f"{seed.company_a1_name} — mobile")


def test_filter_sims_by_status(page: Page, server: PortalServer) -> None:
    seed = server.seed
    login(page, seed.staff_a)
    rows = page.locator("#sim-table tbody tr[data-iccid]")
    expect(rows).to_have_count(4)
    page.locator("#filter-status").select_option(label="Suspendue")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-iccid", seed.iccids["a_suspended"])
    expect(rows.first).to_contain_text("Suspendue")
    expect(page).to_have_url(re.compile(r"/portal/sims\?(.+&)?status=suspended"))
    page.locator("#filter-status").select_option(value="")
    expect(rows).to_have_count(4)
    page.locator("#sim-q").fill(seed.iccids["a_esim"][-7:])
    expect(rows).to_have_count(1)
    expect(rows.first.locator("[data-esim]")).to_have_count(1)


def test_column_chooser_hides_and_reorders_columns(page: Page, server: PortalServer) -> None:
    login(page, server.seed.staff_a)
    assert header_keys(page)[:3] == ["iccid", "in_session", "carrier"]
    page.get_by_text("Colonnes", exact=True).click()
    page.get_by_label("Opérateur", exact=True).uncheck()
    expect(page.locator('#sim-table th[data-column="carrier"]')).to_have_count(0)
    expect(page.locator('#sim-table td[data-column="carrier"]')).to_have_count(0)
    page.get_by_role("button", name="Monter « Statut »").click()
    expect(page.locator("#sim-table thead th").last).to_have_text("Type de SIM")
    page.get_by_role("button", name="Monter « Note »").click()
    expect(page.locator("#sim-table thead th[data-column]").nth(7)).to_have_text("Note")
    keys = header_keys(page)
    assert "carrier" not in keys
    assert keys.index("note") < keys.index("month_usage") and keys[-2:] == ["status", "sim_type"]
    # persisted: a fresh load renders the chosen table on the server
    page.reload()
    assert header_keys(page) == keys
    page.get_by_text("Colonnes", exact=True).click()
    page.get_by_role("button", name="Réinitialiser").click()
    expect(page.locator('#sim-table th[data-column="carrier"]')).to_have_count(1)


def test_multi_select_counts_selected_sims(page: Page, server: PortalServer) -> None:
    seed = server.seed
    login(page, seed.staff_a)
    count = page.locator("#selection-count")
    expect(count).to_have_text("Aucune SIM sélectionnée")
    page.get_by_label(f"Sélectionner {seed.iccids['a_active']}").check()
    expect(count).to_have_text("1 SIM sélectionnée")
    page.get_by_label(f"Sélectionner {seed.iccids['a_blank']}").check()
    expect(count).to_have_text("2 SIM sélectionnées")
    select_all = page.get_by_label("Sélectionner toutes les SIM de la page")
    assert select_all.evaluate("el => el.indeterminate") is True
    select_all.check()
    expect(count).to_have_text("4 SIM sélectionnées")
    selected = page.evaluate("() => new FormData(document.forms['sim-selection']).getAll('iccid')")
    assert sorted(selected) == seed.iccids_a
    select_all.uncheck()
    expect(count).to_have_text("Aucune SIM sélectionnée")


def test_sim_detail_shows_journal(page: Page, server: PortalServer) -> None:
    seed = server.seed
    iccid = seed.iccids["a_active"]
    login(page, seed.staff_a)
    page.get_by_role("link", name=iccid).click()
    expect(page).to_have_url(f"{server.base_url}/portal/sims/{iccid}")
    expect(page.get_by_role("tab", name="Détails")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#sim-lines")).to_contain_text("+33612345678")
    page.get_by_role("tab", name="Journal").click()
    expect(page).to_have_url(f"{server.base_url}/portal/sims/{iccid}?tab=journal")
    journal = page.locator("#sim-journal")
    expect(journal).to_contain_text("21/11/2026 14:05")
    first_change = journal.locator("tbody tr").last
    expect(first_change).to_contain_text("Statut")
    expect(first_change).to_contain_text("Vierge")
    expect(first_change).to_contain_text("Prête à l'activation")
    expect(first_change).to_contain_text("activation@simflow")
    page.get_by_role("tab", name="Utilisation").click()
    expect(page.locator('[data-tab="usage"]')).to_contain_text("1,5\u00a0Go")
    # an eSIM shows its activation QR code (inline SVG, allowed by the CSP)
    page.goto(f"/portal/sims/{seed.iccids['a_esim']}")
    page.get_by_text("Afficher le QR code d'activation eSIM").click()
    expect(page.locator("#esim-qr svg")).to_be_visible()


def test_other_organisation_staff_sees_nothing_of_the_first(page: Page, server: PortalServer) -> None:
    seed = server.seed
    login(page, seed.staff_b)
    rows = page.locator("#sim-table tbody tr[data-iccid]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-iccid", seed.iccids["b_active"])
    for iccid in seed.iccids_a:
        expect(page.locator(f'tr[data-iccid="{iccid}"]')).to_have_count(0)
    expect(page.locator("#filter-company")).not_to_contain_text(seed.company_a1_name)
    response = page.goto(f"/portal/sims/{seed.iccids['a_active']}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Page introuvable")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("Camion 12")
