"""Forgotten password end to end in a real headless Chromium (Debian's): the portal's login page, the reset mail
written to the outbox, sent by the outbox relay (a real worker process on a Temporal dev server) to the SMTP
sink, the link read from the sink, the new password set on the portal's page, then a login with it.

Sync Playwright API: no asyncio loop runs in this module. Never `playwright install`: the browser is
/usr/bin/chromium (`make browser-deps`).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from infra.processes import (
    ManagedProcess,
    free_port,
    http_ready,
    smtp_sink_process,
    temporal_dev_server_process,
)
from tests.browser.portal_seed import PASSWORD, TEMPORAL_UI, PortalSeed, seed_portal
from tests.browser.test_portal_browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import LOG_DIR, migrate, secret_environment

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]

NEW_PASSWORD = "Nouveau-portail-2026!"


@dataclass
class Stack:
    base_url: str
    sink_url: str
    seed: PortalSeed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The database, a Temporal dev server, the mail sink, a worker (which starts the outbox relay) and the API."""
    folder = tmp_path_factory.mktemp("password-reset-browser")
    database_url = f"sqlite+aiosqlite:///{folder / 'simflow.db'}"
    migrate(database_url)
    engine = create_engine(f"sqlite:///{folder / 'simflow.db'}")
    with Session(engine) as session:
        seed = seed_portal(session)
        session.commit()
    engine.dispose()

    ports = {name: free_port() for name in ("temporal", "temporal_ui", "sink", "smtp", "api")}
    base_url = f"http://127.0.0.1:{ports['api']}"
    environment = {
        "SIMFLOW_DATABASE_URL": database_url,
        "SIMFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "SIMFLOW_TEMPORAL_UI_URL": TEMPORAL_UI,
        "SIMFLOW_TASK_QUEUE": "password-reset-browser",
        "SIMFLOW_PUBLIC_BASE_URL": base_url,
        "SIMFLOW_SMTP_PORT": str(ports["smtp"]),
        "SIMFLOW_OUTBOX_POLL_S": "0.5",
        "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "reset-browser-admin@test.simflow",
        # The worker's scans must not run against systems this test does not start.
        "SIMFLOW_AUTO_TOPUP_SCAN_S": "86400",
        "SIMFLOW_FIRST_USAGE_SCAN_S": "86400",
        "SIMFLOW_WORKER_GRACEFUL_SHUTDOWN_S": "2",
        **secret_environment(),
    }
    started: list[ManagedProcess] = []
    try:
        for process in (
            temporal_dev_server_process(
                ports["temporal"], ports["temporal_ui"], folder / "temporal.db", log_dir=LOG_DIR
            ),
            smtp_sink_process(ports["sink"], ports["smtp"], log_dir=LOG_DIR),
            ManagedProcess(
                name="reset-browser-worker",
                args=[sys.executable, "worker.py"],
                ready=lambda: True,
                env=environment,
                log_path=LOG_DIR / "reset-browser-worker.log",
            ),
            ManagedProcess(
                name="reset-browser-api",
                args=[
                    *(sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"),
                    *("--host", "127.0.0.1", "--port", str(ports["api"]), "--log-level", "warning"),
                ],
                ready=http_ready(f"{base_url}/portal/login"),
                env=environment,
                log_path=LOG_DIR / "reset-browser-api.log",
            ),
        ):
            started.append(process.start(timeout_s=90))
        yield Stack(base_url, f"http://127.0.0.1:{ports['sink']}", seed)
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.base_url, locale="fr-FR", timezone_id="Europe/Paris")
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


def wait_for_mail(sink_url: str, to: str, timeout_s: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        messages = httpx.get(f"{sink_url}/messages", params={"to": to}, timeout=5).json()
        if messages:
            assert len(messages) == 1, messages
            return dict(messages[0])
        time.sleep(0.3)
    raise AssertionError(f"no mail to {to} in the sink after {timeout_s:.0f} s (log: {LOG_DIR})")


def login(page: Page, email: str, password: str) -> None:
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe", exact=True).fill(password)
    page.get_by_role("button", name="Se connecter").click()


def test_forgotten_password_reset_from_the_mail_link(page: Page, stack: Stack) -> None:
    email = stack.seed.staff_b
    page.goto("/portal/login")
    page.get_by_role("link", name="Mot de passe oublié ?").click()
    expect(page).to_have_url(f"{stack.base_url}/portal/password/forgot")
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_role("button", name="Recevoir le lien").click()
    expect(page.locator("#reset-requested")).to_contain_text("Si un compte correspond à cette adresse")

    mail = wait_for_mail(stack.sink_url, email)
    assert mail["subject"] == "Réinitialisation de votre mot de passe simflow"
    assert str(mail["message_id"]).startswith("<security_messages.")
    found = re.search(r"(http://\S+/portal/password/reset)#token=(\S+)", str(mail["text"]))
    assert found is not None, mail["text"]
    link, token = found.group(0), found.group(2)

    page.goto(link)
    expect(page.get_by_role("heading", name="Choisir un nouveau mot de passe")).to_be_visible()
    expect(page.get_by_label("Code reçu par e-mail")).to_have_value(token)
    expect(page).to_have_url(f"{stack.base_url}/portal/password/reset")  # the code left the address bar
    page.get_by_label("Nouveau mot de passe", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirmation du nouveau mot de passe").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    expect(page).to_have_url(f"{stack.base_url}/portal/login?password_reset=1")
    expect(page.locator("#password-reset-done")).to_contain_text("Votre mot de passe a été changé")

    login(page, email, PASSWORD)  # the old one no longer works
    expect(page.get_by_role("alert")).to_contain_text("Adresse e-mail ou mot de passe incorrect")
    login(page, email, NEW_PASSWORD)
    expect(page).to_have_url(f"{stack.base_url}/portal/home")
    expect(page.get_by_test_id("who")).to_have_text(email)

    # The link works once.
    page.goto(link)
    page.get_by_label("Nouveau mot de passe", exact=True).fill("Encore-un-autre-2026!")
    page.get_by_label("Confirmation du nouveau mot de passe").fill("Encore-un-autre-2026!")
    page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    expect(page.locator("#token-error")).to_contain_text("invalide, expiré ou déjà utilisé")
