"""Editing a company and redelivering a webhook in a real headless Chromium, against the real API
(uvicorn), a Temporal dev server and a real worker process (the redelivery runs the delivery workflow),
with a local receiver that answers the `echo` validation and takes the deliveries."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from domain.enums import WebhookDeliveryStatus
from domain.models import Company, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from infra.processes import ManagedProcess, free_port, http_ready, temporal_dev_server_process
from tests.browser import test_portal_browser
from tests.browser.portal_seed import TEMPORAL_UI, seed_portal
from tests.browser.test_portal_admin_browser import shot
from tests.browser.test_portal_browser import CHROMIUM, PortalServer, login
from tests.conftest import LOG_DIR, migrate, secret_environment

browser = test_portal_browser.browser
page = test_portal_browser.page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


class Receiver(BaseHTTPRequestHandler):
    events: list[str] = []  # event ids of the deliveries received (not the echo exchanges)

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if body.get("type") != "echo":
            Receiver.events.append(str(body.get("id")))
        answer = json.dumps({"type": "echo", "echo_data": body.get("echo_data")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class EditServer(PortalServer):
    def __init__(self, base_url: str, seed: Any, db_file: Path, hook_url: str) -> None:
        super().__init__(base_url, seed, db_file)
        self.hook_url = hook_url

    def session(self) -> Session:
        return Session(create_engine(f"sqlite:///{self.db_file}"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EditServer]:
    folder = tmp_path_factory.mktemp("portal-edits-browser")
    db_file = folder / "portal.db"
    database_url = f"sqlite+aiosqlite:///{db_file}"
    migrate(database_url)
    engine = create_engine(f"sqlite:///{db_file}")
    with Session(engine) as session:
        seed = seed_portal(session)
        session.commit()
    engine.dispose()
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    ports = {name: free_port() for name in ("temporal", "temporal_ui", "api")}
    base_url = f"http://127.0.0.1:{ports['api']}"
    environment = {
        "SIMFLOW_DATABASE_URL": database_url,
        "SIMFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "SIMFLOW_TEMPORAL_UI_URL": TEMPORAL_UI,
        "SIMFLOW_TASK_QUEUE": "portal-edits-browser",
        "SIMFLOW_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        "SIMFLOW_WEBHOOK_RETRY_INITIAL_S": "0.2",
        "SIMFLOW_BOOTSTRAP_ADMIN_EMAIL": "portal-edits-browser@test.simflow",
        # The worker's scans must not run against systems this test does not start.
        "SIMFLOW_AUTO_TOPUP_SCAN_S": "86400",
        "SIMFLOW_FIRST_USAGE_SCAN_S": "86400",
        "SIMFLOW_OUTBOX_POLL_S": "86400",
        "SIMFLOW_WORKER_GRACEFUL_SHUTDOWN_S": "2",
        **secret_environment(),
    }
    started: list[ManagedProcess] = []
    try:
        for process in (
            temporal_dev_server_process(
                ports["temporal"], ports["temporal_ui"], folder / "temporal.db", log_dir=LOG_DIR
            ),
            ManagedProcess(
                name="portal-edits-worker",
                args=[sys.executable, "worker.py"],
                ready=lambda: True,
                env=environment,
                log_path=LOG_DIR / "portal-edits-browser-worker.log",
            ),
            ManagedProcess(
                name="portal-edits-api",
                args=[
                    *(sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"),
                    *("--host", "127.0.0.1", "--port", str(ports["api"]), "--log-level", "warning"),
                ],
                ready=http_ready(f"{base_url}/portal/login"),
                env=environment,
                log_path=LOG_DIR / "portal-edits-browser-api.log",
            ),
        ):
            started.append(process.start(timeout_s=90))
        yield EditServer(base_url, seed, db_file, f"http://127.0.0.1:{hooks.server_port}/hook")
    finally:
        for process in reversed(started):
            process.stop()
        hooks.shutdown()
        hooks.server_close()


def test_edit_a_company_with_a_bad_vat_then_a_good_one(page: Page, server: EditServer) -> None:
    seed = server.seed
    login(page, seed.staff_a)
    page.goto(f"/portal/companies/{seed.company_a2}")
    page.locator("#company-edit").click()
    page.get_by_label("N° de TVA intracommunautaire").fill("FR00732829320")
    page.get_by_label("Adresse").fill("12 avenue des Tests, Lyon")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator('[data-error-for="vat_number"]')).to_be_visible()
    expect(page.get_by_label("Adresse")).to_have_value("12 avenue des Tests, Lyon")
    shot(page, "entreprise-modifier-tva-invalide")
    with server.session() as session:
        company = session.get(Company, seed.company_a2)
        assert company is not None and company.address != "12 avenue des Tests, Lyon"
    page.get_by_label("N° de TVA intracommunautaire").fill("FR 44 732 829 320")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("#company-updated")).to_contain_text("Entreprise modifiée")
    expect(page.get_by_text("12 avenue des Tests, Lyon")).to_be_visible()
    expect(page.get_by_text("FR44732829320")).to_be_visible()
    with server.session() as session:
        company = session.get(Company, seed.company_a2)
        assert company is not None
        assert (company.vat_number, company.address) == ("FR44732829320", "12 avenue des Tests, Lyon")


def test_redeliver_a_failed_webhook_delivery(page: Page, server: EditServer) -> None:
    login(page, server.seed.staff_a)
    page.goto("/portal/webhook-endpoints")
    page.get_by_label("URL du gestionnaire").fill(server.hook_url)
    page.get_by_role("button", name="Valider et enregistrer").click()
    expect(page.locator("#webhook-endpoints")).to_contain_text(server.hook_url)
    event_id = f"evt_{server.seed.suffix}"
    with server.session() as session:
        endpoint = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.url == server.hook_url)).one()
        delivery = WebhookDelivery(
            org_id=endpoint.org_id,
            endpoint_id=endpoint.id,
            event_id=event_id,
            event_type="company.updated",
            payload={"id": event_id, "type": "company.updated", "org_id": endpoint.org_id, "data": {}},
            status=WebhookDeliveryStatus.FAILED,
            attempts=1,
            last_error="HTTP 503",
            workflow_id=f"webhook-delivery/{endpoint.org_id}/{event_id}/{endpoint.id}",
        )
        session.add(delivery)
        session.flush()
        session.add(WebhookDeliveryAttempt(delivery_id=delivery.id, attempt=1, at=datetime.now(UTC), status_code=503))
        session.commit()
        endpoint_id, delivery_id = endpoint.id, delivery.id
    page.goto(f"/portal/webhook-endpoints/{endpoint_id}")
    page.locator("#deliveries tr", has_text=event_id).get_by_role("button", name="Renvoyer").click()
    expect(page.locator("#redelivered")).to_contain_text("Renvoi n° 1 lancé")
    attempts = page.locator("#attempts tbody tr")
    for _ in range(40):  # the worker sends it: the page shows the new attempt once it is logged
        if attempts.count() == 2:
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("200")
    shot(page, "webhook-renvoi")
    assert Receiver.events == [event_id]
    with server.session() as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        assert (row.status, row.attempts, row.redeliveries) == (WebhookDeliveryStatus.DELIVERED, 2, 1)
        assert row.workflow_id == f"webhook-redelivery/{row.org_id}/{delivery_id}/1"
