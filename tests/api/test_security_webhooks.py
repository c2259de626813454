"""Outgoing webhooks: registration validated by the seed's `echo` exchange, the SSRF guard at registration
and at send time (S9), signed deliveries (seed header + HMAC over `timestamp.body`), durable delivery with
retries and a per-delivery log, publication from workflows through the `webhooks.emit` activity.

A receiver runs on loopback; this module's API and worker use the development allow-list for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.webhooks import WebhookActivities
from api.app import create_app
from domain.models import WebhookDelivery, WebhookEndpoint
from domain.security import SecretBox
from domain.security_contracts import EmitEventInput
from domain.webhooks import HASH_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, seed_hash, verify_signature
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.webhooks import TargetRejected, WebhookSender
from starters.webhooks import emit_event
from tests.api._security_support import Db, Headers
from tests.api._support import assert_problem, unchanged
from tests.api.conftest import Tenant
from tests.e2e.lifecycle_support import keep_history
from workflows import _policies as policies
from workflows.webhook_delivery import WebhookDeliveryWorkflow

# --- a receiver on loopback ----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # path → non-echo requests still to fail
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str, kind: str | None = None) -> list[Received]:
        with self.lock:
            items = [r for r in self.requests if r.path == path]
        if kind is not None:
            items = [r for r in items if json.loads(r.body).get("type") == kind]
        return items


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            payload = json.loads(body or b"{}")
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", receiver.url("/hook"))
                self.end_headers()
                return
            if payload.get("type") == "echo":
                if self.path.startswith("/bad-echo"):
                    self._json(200, {"type": "echo", "echo_data": "something else"})
                elif self.path.startswith("/down"):
                    self._json(503, {})
                else:
                    self._json(200, {"type": "echo", "echo_data": payload.get("echo_data")})
                return
            with receiver.lock:
                remaining = receiver.failures.get(self.path, 0)
                if remaining:
                    receiver.failures[self.path] = remaining - 1
            self._json(500 if remaining else 200, {"ok": not remaining})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Receiver(port=server.server_address[1])
    server.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def wh_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allowed_hosts": ["127.0.0.1"],
            "task_queue": "simflow-test-webhooks",
            "webhook_retry_initial_s": 0.2,
            "webhook_timeout_s": 3.0,
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wh_worker(wh_settings: Settings, temporal_client: Client) -> AsyncIterator[None]:
    from worker import build_worker

    async with build_worker(wh_settings, temporal_client) as w:
        task = asyncio.create_task(w.run())
        yield
        await w.shutdown()
        await task


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wh_client(wh_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(wh_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            yield client


async def _register(
    client: httpx.AsyncClient, headers: Headers, url: str, events: list[str] | None = None
) -> httpx.Response:
    return await client.post("/api/v1/webhook-endpoints", json={"url": url, "events": events or ["*"]}, headers=headers)


def _path(tag: str) -> str:
    return f"/hook-{tag}-{uuid.uuid4().hex[:8]}"


# --- registration -------------------------------------------------------------------------------------


async def test_registration_requires_a_matching_echo(
    wh_client: httpx.AsyncClient, receiver: Receiver, tenant: Tenant, db: Db
) -> None:
    path = _path("ok")
    created = await _register(wh_client, tenant.org_staff, receiver.url(path), ["payment.created"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["validated_at"] and body["events"] == ["payment.created"]
    [echo] = receiver.received(path, "echo")
    assert len(json.loads(echo.body)["echo_data"]) <= 50
    assert verify_signature(echo.body, echo.headers[SIGNATURE_HEADER], [body["secret"]], time.time())
    async with db() as session:
        row = await session.get(WebhookEndpoint, body["id"])
        assert row is not None and body["secret"] not in row.secret_encrypted  # encrypted at rest
    listed = await wh_client.get("/api/v1/webhook-endpoints", headers=tenant.org_staff)
    assert body["id"] in {e["id"] for e in listed.json()} and body["secret"] not in listed.text

    for bad, reason in (("/bad-echo", "echo_data"), ("/down", "503"), ("/redirect", "302")):
        async with unchanged(db):
            refused = await _register(wh_client, tenant.org_staff, receiver.url(bad + _path("x")))
        assert_problem(refused, 422, "url", reason)
    assert_problem(await _register(wh_client, tenant.org_staff, "http://127.0.0.1:9/closed"), 422, "url")
    assert_problem(await _register(wh_client, tenant.org_staff, receiver.url(), ["no.such.event"]), 422, "events")
    assert_problem(await _register(wh_client, tenant.company_staff, receiver.url(_path("c"))), 403)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.8/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:25/",
        "https://user:pw@example.com/hook",
    ],
)
async def test_ssrf_targets_are_refused_at_registration(
    app_client: httpx.AsyncClient, tenant: Tenant, db: Db, url: str
) -> None:
    """The suite's main API has no allow-list: loopback and private targets are refused, nothing is written."""
    async with unchanged(db):
        response = await _register(app_client, tenant.org_staff, url)
    assert_problem(response, 422, "url")


async def test_the_target_is_checked_again_at_send_time(receiver: Receiver) -> None:
    """The address is re-resolved and re-checked for every attempt: without the allow-list, the same
    loopback URL is refused before any connection."""
    before = len(receiver.requests)
    with pytest.raises(TargetRejected):
        await WebhookSender(2.0, []).post(receiver.url("/hook"), b"{}", {})
    assert len(receiver.requests) == before
    allowed = await WebhookSender(2.0, ["127.0.0.1"]).post(receiver.url("/hook"), b'{"type":"x"}', {})
    assert allowed.status_code == 200


# --- delivery -----------------------------------------------------------------------------------------


async def _delivery(db: Db, event_id: str, endpoint_id: str) -> WebhookDelivery:
    async with db() as session:
        query = select(WebhookDelivery).where(
            WebhookDelivery.event_id == event_id, WebhookDelivery.endpoint_id == endpoint_id
        )
        return (await session.execute(query)).scalar_one()


@pytest.mark.usefixtures("wh_worker")
async def test_signed_delivery_with_retries_and_log(
    wh_client: httpx.AsyncClient,
    wh_settings: Settings,
    temporal_client: Client,
    receiver: Receiver,
    tenant: Tenant,
    db: Db,
) -> None:
    path = _path("retry")
    created = (await _register(wh_client, tenant.org_staff, receiver.url(path), ["payment.created"])).json()
    receiver.failures[path] = 2
    event_id = f"evt_{uuid.uuid4().hex}"
    data = {"payment_id": "pay_1", "amount_minor": 500, "currency": "EUR"}
    ids = await emit_event(temporal_client, wh_settings, tenant.org_id, "payment.created", data, event_id=event_id)
    wf_id = f"webhook-delivery/{tenant.org_id}/{event_id}/{created['id']}"
    assert wf_id in ids  # (other endpoints of this organisation may take the event too)
    handle = temporal_client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, wf_id)
    result = await handle.result()
    assert result.delivered and result.status_code == 200
    await keep_history(handle, "WebhookDeliveryWorkflow", "delivered_after_two_failures")

    deliveries = [r for r in receiver.received(path) if json.loads(r.body).get("type") == "payment.created"]
    assert len(deliveries) == 3  # two 500s, then delivered
    last = deliveries[-1]
    envelope = json.loads(last.body)
    assert envelope == {
        "id": event_id,
        "type": "payment.created",
        "created": envelope["created"],
        "org_id": tenant.org_id,
        "data": data,
    }
    assert verify_signature(last.body, last.headers[SIGNATURE_HEADER], [created["secret"]], time.time())
    ts = int(last.headers[TIMESTAMP_HEADER])
    assert last.headers[HASH_HEADER] == seed_hash(created["secret"], ts)
    assert last.headers["X-Webhook-Id"] == event_id

    row = await _delivery(db, event_id, created["id"])
    assert (row.status.value, row.attempts, row.last_status_code) == ("delivered", 3, 200)
    log = await wh_client.get(
        f"/api/v1/webhook-endpoints/{created['id']}/deliveries/{row.id}", headers=tenant.org_staff
    )
    assert log.status_code == 200, log.text
    assert [(a["attempt"], a["status_code"]) for a in log.json()["log"]] == [(1, 500), (2, 500), (3, 200)]
    listing = await wh_client.get(f"/api/v1/webhook-endpoints/{created['id']}/deliveries", headers=tenant.org_staff)
    assert [d["id"] for d in listing.json()] == [row.id]

    # The same event again: nothing new is sent.
    again = await emit_event(temporal_client, wh_settings, tenant.org_id, "payment.created", data, event_id=event_id)
    assert again == ids
    await asyncio.sleep(0.3)
    assert len([r for r in receiver.received(path) if json.loads(r.body).get("type") == "payment.created"]) == 3


@pytest.mark.usefixtures("wh_worker")
async def test_unsubscribed_disabled_and_unreachable_endpoints(
    wh_client: httpx.AsyncClient,
    wh_settings: Settings,
    temporal_client: Client,
    receiver: Receiver,
    other_tenant: Tenant,
    db: Db,
) -> None:
    headers = other_tenant.org_staff
    subscribed = (await _register(wh_client, headers, receiver.url(_path("sub")), ["end_user.added"])).json()
    disabled = (await _register(wh_client, headers, receiver.url(_path("off")), ["*"])).json()
    assert (await wh_client.delete(f"/api/v1/webhook-endpoints/{disabled['id']}", headers=headers)).status_code == 204
    assert await emit_event(temporal_client, wh_settings, other_tenant.org_id, "payment.created", {}) == []

    # The address became non-public after registration (as a DNS change would): refused at send time,
    # not retried, recorded.
    moved = (await _register(wh_client, headers, receiver.url(_path("moved")), ["company.updated"])).json()
    async with db.begin() as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == moved["id"])
            .values(url=f"https://127.0.0.2:{receiver.port}/moved")
        )
    event_id = f"evt_{uuid.uuid4().hex}"
    [wf_id] = await emit_event(
        temporal_client, wh_settings, other_tenant.org_id, "company.updated", {"x": 1}, event_id=event_id
    )
    handle = temporal_client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, wf_id)
    result = await handle.result()
    assert not result.delivered and "non publique" in (result.error or "")
    await keep_history(handle, "WebhookDeliveryWorkflow", "target_refused_at_send_time")
    row = await _delivery(db, event_id, moved["id"])
    assert (row.status.value, row.attempts) == ("failed", 1)
    assert subscribed["id"] != moved["id"]


@pytest.mark.usefixtures("wh_worker")
async def test_workflows_publish_through_the_emit_activity_and_rotation_overlaps(
    wh_client: httpx.AsyncClient,
    wh_settings: Settings,
    temporal_client: Client,
    receiver: Receiver,
    tenant: Tenant,
    settings: Settings,
) -> None:
    path = _path("emit")
    created = (await _register(wh_client, tenant.org_staff, receiver.url(path), ["sim_card.first_usage"])).json()
    rotated = await wh_client.post(
        f"/api/v1/webhook-endpoints/{created['id']}/secret-rotation",
        json={"overlap_hours": 1},
        headers=tenant.org_staff,
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]

    engine = create_engine(settings.database_url)
    try:
        activities = WebhookActivities(
            create_sessionmaker(engine),
            WebhookSender(2.0, ["127.0.0.1"]),
            SecretBox(settings.secrets_key.get_secret_value()),
            wh_settings,
            emit_event,
        )
        data = EmitEventInput(
            org_id=tenant.org_id,
            event_type="sim_card.first_usage",
            data={"iccid": "8933000000000000001"},
            event_id=f"sim-activation/{tenant.org_id}/x:first-usage",
        )
        env = ActivityEnvironment(client=temporal_client)
        first = await env.run(activities.emit, data)
        second = await env.run(activities.emit, data)  # a retried activity
    finally:
        await engine.dispose()
    wf_id = f"webhook-delivery/{tenant.org_id}/{data.event_id}/{created['id']}"
    assert first.workflow_ids == second.workflow_ids and wf_id in first.workflow_ids
    await temporal_client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, wf_id).result()
    [delivered] = receiver.received(path, "sim_card.first_usage")
    header = delivered.headers[SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    for secret in (created["secret"], new_secret):
        assert verify_signature(delivered.body, header, [secret], time.time())


def test_delivery_retry_policy_matches_the_contract() -> None:
    retry = policies.WEBHOOK_RETRY
    assert retry.initial_interval == timedelta(seconds=30)
    assert retry.backoff_coefficient == 2.0
    assert retry.maximum_interval == timedelta(hours=6)
    assert policies.WEBHOOK_DELIVERY_WINDOW == timedelta(days=3)
    assert "webhook.target_rejected" in (retry.non_retryable_error_types or [])


@pytest.mark.usefixtures("wh_worker")
async def test_redelivery_starts_a_new_workflow_whose_attempts_follow_the_log(
    wh_client: httpx.AsyncClient,
    wh_settings: Settings,
    temporal_client: Client,
    receiver: Receiver,
    tenant: Tenant,
    other_tenant: Tenant,
    db: Db,
) -> None:
    path = _path("redeliver")
    created = (await _register(wh_client, tenant.org_staff, receiver.url(path), ["company.updated"])).json()
    # The target is refused at send time: the delivery gives up after one attempt.
    async with db.begin() as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == created["id"])
            .values(url=f"https://127.0.0.2:{receiver.port}{path}")
        )
    event_id = f"evt_{uuid.uuid4().hex}"
    [wf_id] = await emit_event(
        temporal_client, wh_settings, tenant.org_id, "company.updated", {"n": 1}, event_id=event_id
    )
    assert not (await temporal_client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, wf_id).result()).delivered
    row = await _delivery(db, event_id, created["id"])
    assert (row.status.value, row.attempts) == ("failed", 1)
    redeliveries = f"/api/v1/webhook-endpoints/{created['id']}/deliveries/{row.id}/redeliveries"

    # Another organisation does not see it, nor do company staff (the endpoints are the organisation's).
    async with unchanged(db):
        assert_problem(await wh_client.post(redeliveries, headers=other_tenant.org_staff), 404)
        assert_problem(await wh_client.post(redeliveries, headers=tenant.company_staff), 404)
        foreign = f"/api/v1/webhook-endpoints/{created['id']}/deliveries/{'0' * 32}/redeliveries"
        assert_problem(await wh_client.post(foreign, headers=tenant.org_staff), 404)

    async with db.begin() as session:  # the target is public again
        await session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == created["id"]).values(url=receiver.url(path))
        )
    first = await wh_client.post(redeliveries, headers=tenant.org_staff)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["redelivery"] == 1 and body["workflow_id"] == f"webhook-redelivery/{tenant.org_id}/{row.id}/1"
    # While it runs (or before it is seen to end), a second request for the same delivery is refused.
    result = await temporal_client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, body["workflow_id"]).result()
    assert result.delivered
    log = await wh_client.get(
        f"/api/v1/webhook-endpoints/{created['id']}/deliveries/{row.id}", headers=tenant.org_staff
    )
    assert [(a["attempt"], a["status_code"]) for a in log.json()["log"]] == [(1, None), (2, 200)]
    assert log.json()["status"] == "delivered"

    # A delivered event can be sent again (the receiver lost it): redelivery 2, attempt 3, received.
    second = await wh_client.post(redeliveries, headers=tenant.org_staff)
    assert second.status_code == 202 and second.json()["redelivery"] == 2
    assert (
        await temporal_client.get_workflow_handle_for(
            WebhookDeliveryWorkflow.run, second.json()["workflow_id"]
        ).result()
    ).delivered
    received = [r for r in receiver.received(path) if json.loads(r.body).get("id") == event_id]
    assert len(received) == 2
    row = await _delivery(db, event_id, created["id"])
    assert (row.status.value, row.attempts, row.redeliveries) == ("delivered", 3, 2)

    # A delivery in progress is not sent twice at once.
    async with db.begin() as session:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(status="pending"))
    assert_problem(await wh_client.post(redeliveries, headers=tenant.org_staff), 409, "delivery_id")
    assert (await _delivery(db, event_id, created["id"])).redeliveries == 2
