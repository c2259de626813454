"""Contract tests: `integrations.stripe_gateway.StripeGateway` → the fault proxy → localstripe (real processes).

Customers, saved cards, off-session charges, declines, refunds; the proxy's Stripe idempotency
(replay, parameter mismatch, concurrency, lost responses: one effect per key, counted in localstripe);
every fault mode through the gateway; webhook signatures, including events localstripe signs itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from infra.processes import free_port
from integrations.errors import ConflictError, NotFoundError, RejectedError, TransientError
from integrations.stripe_gateway import (
    PaymentDeclinedError,
    PaymentResult,
    SavedCard,
    StripeGateway,
    WebhookSignatureError,
)
from tests.conftest import reset_simulator, running_localstripe, running_simulator


# Own simulator instances: the session worker's background workflows use the shared ones, and these tests count calls
# and reset state.
@pytest.fixture(scope="module")
def own_localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


@pytest.fixture(scope="module")
def own_stripe_url(own_localstripe_url: str) -> Iterator[str]:
    with running_simulator("stripe_proxy", {"STRIPE_PROXY_UPSTREAM": own_localstripe_url}) as url:
        yield url


API_KEY = "sk_test_simflow_contract"
CARD_OK = "4242424242424242"
CARD_CHARGE_DECLINED = "4000000000000341"  # attaches, then every charge is declined
CARD_ATTACH_DECLINED = "4000000000000002"
WEBHOOK_SECRET = "whsec_contract_test"


class ProxyAdmin:
    """The `/_sim` test contract of the Stripe fault proxy, plus what localstripe holds."""

    def __init__(self, proxy_url: str, own_localstripe_url: str) -> None:
        self.proxy_url = proxy_url
        self.own_localstripe_url = own_localstripe_url

    async def fault(self, op: str, mode: str, *, times: int = 1, latency_ms: int = 0, match: str | None = None) -> None:
        fault = {"op": op, "mode": mode, "times": times, "latency_ms": latency_ms, "match": match}
        async with httpx.AsyncClient(base_url=self.proxy_url, timeout=5) as http:
            (await http.post("/_sim/faults", json=fault)).raise_for_status()

    async def calls(self, op: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.proxy_url, timeout=5) as http:
            response = await http.get("/_sim/calls", params={"op": op})
            response.raise_for_status()
            calls: list[dict[str, Any]] = response.json()
            return calls

    async def wait_calls(self, op: str, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(calls := await self.calls(op)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{op}: {len(calls)} calls recorded, expected {count}")
            await asyncio.sleep(0.05)
        return calls

    async def count(self, resource: str) -> int:
        """How many objects localstripe itself holds (behind the proxy, no idempotency involved)."""
        async with httpx.AsyncClient(base_url=self.own_localstripe_url, timeout=5) as http:
            response = await http.get(
                f"/v1/{resource}", params={"limit": 100}, headers={"Authorization": f"Bearer {API_KEY}"}
            )
            response.raise_for_status()
            return int(response.json()["total_count"])


@pytest.fixture
def admin(own_stripe_url: str, own_localstripe_url: str) -> ProxyAdmin:
    reset_simulator(own_stripe_url)  # clears the proxy's keys and faults, and localstripe's data
    return ProxyAdmin(own_stripe_url, own_localstripe_url)


@pytest.fixture
async def gateway(own_stripe_url: str, admin: ProxyAdmin) -> AsyncIterator[StripeGateway]:
    async with StripeGateway(API_KEY, own_stripe_url, timeout_s=10.0) as gw:
        yield gw


def _key(step: str = "charge") -> str:
    return f"topup:org-1:{uuid.uuid4().hex[:8]}:{step}"


async def _customer_with_card(gateway: StripeGateway, card: str = CARD_OK) -> SavedCard:
    customer = await gateway.ensure_customer(
        f"{uuid.uuid4().hex[:8]}@example.org", "Jeanne Martin", {"org_id": "org-1"}, _key("customer")
    )
    return await gateway.attach_card(customer.customer_id, card, _key("card"))


async def _charge(gateway: StripeGateway, card: SavedCard, key: str, amount: int = 1500) -> PaymentResult:
    return await gateway.charge_off_session(card.customer_id, card.payment_method_id, amount, "EUR", key, {"k": "v"})


def _sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's scheme: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`."""
    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={signature}"


# -- customers, cards, charges, refunds -----------------------------------------------------------


async def test_customer_card_and_off_session_charge(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    customer = await gateway.ensure_customer("jeanne@example.org", "Jeanne", {"org_id": "org-1"}, _key("customer"))
    same = await gateway.ensure_customer("jeanne@example.org", "Jeanne", {"org_id": "org-1"}, _key("customer"))
    other_org = await gateway.ensure_customer("jeanne@example.org", "Jeanne", {"org_id": "org-2"}, _key("customer"))
    assert same.customer_id == customer.customer_id != other_org.customer_id

    card = await gateway.attach_card(customer.customer_id, CARD_OK, _key("card"))
    assert (card.customer_id, card.last4, card.brand) == (customer.customer_id, "4242", "visa")
    token_card = await gateway.attach_card(customer.customer_id, "pm_card_visa", _key("card"))
    assert token_card.payment_method_id.startswith("pm_") and token_card.payment_method_id != "pm_card_visa"

    result = await gateway.charge_off_session(
        customer.customer_id, card.payment_method_id, 1999, "EUR", _key(), {"topup_id": "t-1"}
    )

    assert (result.status, result.amount_minor, result.currency, result.decline_code) == (
        "succeeded",
        1999,
        "eur",
        None,
    )
    assert await gateway.retrieve_payment_intent(result.payment_intent_id) == result
    assert await admin.count("payment_intents") == 1
    assert await admin.count("charges") == 1


async def test_card_declined_on_every_charge(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway, CARD_CHARGE_DECLINED)  # attaching works
    key = _key()

    with pytest.raises(PaymentDeclinedError) as caught:
        await _charge(gateway, card, key)
    declined = caught.value
    assert declined.payment_intent_id is not None and declined.decline_code == "card_declined"
    assert not declined.retryable

    intent = await gateway.retrieve_payment_intent(declined.payment_intent_id)
    assert (intent.status, intent.decline_code) == ("requires_payment_method", "card_declined")

    with pytest.raises(PaymentDeclinedError) as again:  # a retry replays the decline, no new attempt
        await _charge(gateway, card, key)
    assert again.value.payment_intent_id == declined.payment_intent_id
    assert await admin.count("payment_intents") == 1
    assert await admin.count("charges") == 1


async def test_card_declined_at_attach(gateway: StripeGateway) -> None:
    customer = await gateway.ensure_customer("x@example.org", None, {}, _key("customer"))
    with pytest.raises(PaymentDeclinedError) as caught:
        await gateway.attach_card(customer.customer_id, CARD_ATTACH_DECLINED, _key("card"))
    assert caught.value.payment_intent_id is None


async def test_refunds(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    paid = await _charge(gateway, card, _key(), amount=3000)

    partial = await gateway.refund(paid.payment_intent_id, 1000, _key("refund-1"))
    rest = await gateway.refund(paid.payment_intent_id, None, _key("refund-2"))

    assert (partial.status, partial.amount_minor, partial.currency) == ("succeeded", 1000, "eur")
    assert partial.payment_intent_id == paid.payment_intent_id
    assert rest.amount_minor == 3000  # localstripe refunds the charge amount when none is given
    assert await admin.count("refunds") == 2


async def test_refund_of_a_declined_payment_is_rejected(gateway: StripeGateway) -> None:
    card = await _customer_with_card(gateway, CARD_CHARGE_DECLINED)
    with pytest.raises(PaymentDeclinedError) as caught:
        await _charge(gateway, card, _key())
    assert caught.value.payment_intent_id is not None
    with pytest.raises(RejectedError) as refused:
        await gateway.refund(caught.value.payment_intent_id, None, _key("refund"))
    assert not isinstance(refused.value, PaymentDeclinedError) and refused.value.status_code == 400


async def test_unknown_payment_intent(gateway: StripeGateway) -> None:
    with pytest.raises(NotFoundError):
        await gateway.retrieve_payment_intent("pi_doesnotexist000")


async def test_authorization_header_is_forwarded(own_stripe_url: str, admin: ProxyAdmin) -> None:
    async with StripeGateway("not-a-secret-key", own_stripe_url, timeout_s=5.0) as wrong_key:
        with pytest.raises(RejectedError) as caught:
            await wrong_key.ensure_customer("a@example.org", None, {}, _key("customer"))
    assert caught.value.status_code == 401


async def test_calls_are_recorded_with_op_names_and_keys(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    paid = await _charge(gateway, card, key)
    await gateway.refund(paid.payment_intent_id, None, f"{key}:refund")

    for op, idem_key in [
        ("create_payment_intent", f"{key}:create"),
        ("confirm_payment_intent", f"{key}:confirm"),
        ("create_refund", f"{key}:refund"),
    ]:
        [call] = await admin.calls(op)
        assert (call["idempotency_key"], call["applied"], call["replayed"]) == (idem_key, True, False)
    assert len(await admin.calls("create_customer")) == 1
    assert len(await admin.calls("attach_payment_method")) == 1
    [pm_create] = await admin.calls("create_payment_method")
    assert pm_create["request"]["card[number]"] == "***"  # card data never lands in call records


# -- the proxy's idempotency ----------------------------------------------------------------------


async def test_same_key_same_payment_intent(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    first = await _charge(gateway, card, key)
    second = await _charge(gateway, card, key)

    assert second == first
    assert await admin.count("payment_intents") == 1
    assert await admin.count("charges") == 1
    creates = await admin.calls("create_payment_intent")
    assert [(c["applied"], c["replayed"]) for c in creates] == [(True, False), (False, True)]


async def test_same_key_other_amount_is_an_idempotency_error(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    await _charge(gateway, card, key, amount=1500)

    with pytest.raises(ConflictError) as caught:
        await _charge(gateway, card, key, amount=2500)
    assert (caught.value.code, caught.value.status_code) == ("idempotency_error", 400)
    assert not caught.value.retryable
    assert await admin.count("payment_intents") == 1


async def test_key_reused_on_another_endpoint_is_an_idempotency_error(gateway: StripeGateway) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    paid = await _charge(gateway, card, key)
    with pytest.raises(ConflictError):
        await gateway.refund(paid.payment_intent_id, None, f"{key}:create")


async def test_concurrent_creates_with_one_key_make_one_payment_intent(
    gateway: StripeGateway, admin: ProxyAdmin
) -> None:
    card = await _customer_with_card(gateway)
    key = _key()

    results = await asyncio.gather(*(_charge(gateway, card, key) for _ in range(10)))

    assert len({r.payment_intent_id for r in results}) == 1
    assert {r.status for r in results} == {"succeeded"}
    assert await admin.count("payment_intents") == 1
    assert await admin.count("charges") == 1
    creates = await admin.calls("create_payment_intent")
    assert sum(c["applied"] for c in creates) == 1 and sum(c["replayed"] for c in creates) == 9


async def test_lost_response_at_create_then_retry(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    await admin.fault("create_payment_intent", "lost_response")

    with pytest.raises(TransientError) as caught:
        await _charge(gateway, card, key)
    assert caught.value.retryable
    assert await admin.count("payment_intents") == 1  # it was created, the answer was lost

    retried = await _charge(gateway, card, key)
    assert retried.status == "succeeded"
    assert await admin.count("payment_intents") == 1
    assert await admin.count("charges") == 1
    creates = await admin.calls("create_payment_intent")
    assert [(c["fault"], c["applied"], c["replayed"]) for c in creates] == [
        ("lost_response", True, False),
        (None, False, True),
    ]


async def test_lost_response_at_confirm_then_retry(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    await admin.fault("confirm_payment_intent", "lost_response")

    with pytest.raises(TransientError):
        await _charge(gateway, card, key)
    retried = await _charge(gateway, card, key)

    assert retried.status == "succeeded"
    assert await admin.count("payment_intents") == 1
    assert await admin.count("charges") == 1  # charged once


async def test_lost_response_at_refund_then_retry(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    paid = await _charge(gateway, card, _key())
    refund_key = _key("refund")
    await admin.fault("create_refund", "lost_response")

    with pytest.raises(TransientError):
        await gateway.refund(paid.payment_intent_id, 500, refund_key)
    assert await admin.count("refunds") == 1
    first_call = (await admin.calls("create_refund"))[0]
    assert (first_call["fault"], first_call["applied"]) == ("lost_response", True)

    retried = await gateway.refund(paid.payment_intent_id, 500, refund_key)
    again = await gateway.refund(paid.payment_intent_id, 500, refund_key)
    assert retried == again and retried.amount_minor == 500
    assert await admin.count("refunds") == 1


# -- faults through the gateway -------------------------------------------------------------------


async def test_find_charge_by_topup_id_after_the_key_is_forgotten(
    gateway: StripeGateway, admin: ProxyAdmin, own_stripe_url: str
) -> None:
    card = await _customer_with_card(gateway)
    other = await _customer_with_card(gateway)
    key = _key()
    charged = await gateway.charge_off_session(
        card.customer_id, card.payment_method_id, 1500, "EUR", key, {"topup_id": "t-charged"}
    )
    await gateway.charge_off_session(
        other.customer_id, other.payment_method_id, 900, "EUR", _key(), {"topup_id": "t-other-customer"}
    )
    async with httpx.AsyncClient(base_url=own_stripe_url, timeout=5) as http:
        forgotten = (await http.post("/_sim/idempotency/expire")).raise_for_status().json()["forgotten"]
    assert forgotten >= 4  # two creates and two confirms

    found = await gateway.find_charge(card.customer_id, "t-charged")
    assert found is not None and (found.payment_intent_id, found.amount_minor) == (charged.payment_intent_id, 1500)
    assert await gateway.find_charge(card.customer_id, "t-never-charged") is None
    assert await gateway.find_charge(card.customer_id, "t-other-customer") is None
    assert await admin.count("payment_intents") == 2, "looking for a charge creates nothing"
    # The proxy answers the `customer` filter (localstripe refuses it), paged like Stripe.
    async with httpx.AsyncClient(
        base_url=own_stripe_url, timeout=5, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:
        page = (await http.get("/v1/payment_intents", params={"customer": card.customer_id, "limit": 1})).json()
    assert [pi["id"] for pi in page["data"]] == [charged.payment_intent_id] and page["has_more"] is False


async def test_error_fault_is_transient_and_nothing_is_created(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    key = _key()
    await admin.fault("create_payment_intent", "error")

    with pytest.raises(TransientError) as caught:
        await _charge(gateway, card, key)
    assert caught.value.status_code == 500
    assert await admin.count("payment_intents") == 0

    assert (await _charge(gateway, card, key)).status == "succeeded"  # not stored: the retry runs
    assert await admin.count("payment_intents") == 1


async def test_a_fault_with_a_match_is_taken_only_by_the_request_whose_key_holds_it(
    gateway: StripeGateway, admin: ProxyAdmin
) -> None:
    card = await _customer_with_card(gateway)
    mine, other = _key(), _key()
    await admin.fault("create_payment_intent", "error", match=mine)
    assert (await _charge(gateway, card, other)).status == "succeeded"  # another key: untouched
    with pytest.raises(TransientError):
        await _charge(gateway, card, mine)
    assert (await _charge(gateway, card, mine)).status == "succeeded"


async def test_reject_fault_is_a_decline(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    await admin.fault("confirm_payment_intent", "reject")

    with pytest.raises(PaymentDeclinedError) as caught:
        await _charge(gateway, card, _key())
    assert caught.value.decline_code == "generic_decline"
    assert caught.value.payment_intent_id is not None
    intent = await gateway.retrieve_payment_intent(caught.value.payment_intent_id)
    assert intent.status == "requires_confirmation"  # refused before localstripe saw it
    assert await admin.count("charges") == 0


async def test_timeout_fault(own_stripe_url: str, admin: ProxyAdmin) -> None:
    async with StripeGateway(API_KEY, own_stripe_url, timeout_s=0.3) as impatient:
        await admin.fault("create_customer", "timeout", latency_ms=800)
        with pytest.raises(TransientError) as caught:
            await impatient.ensure_customer("slow@example.org", None, {}, _key("customer"))
    assert caught.value.code == "timeout"
    [call] = await admin.wait_calls("create_customer", 1)
    assert (call["fault"], call["applied"]) == ("timeout", False)
    assert await admin.count("customers") == 0


async def test_latency_fault_slows_but_succeeds(gateway: StripeGateway, admin: ProxyAdmin) -> None:
    card = await _customer_with_card(gateway)
    await admin.fault("create_payment_intent", "latency", latency_ms=300)
    started = time.monotonic()
    assert (await _charge(gateway, card, _key())).status == "succeeded"
    assert time.monotonic() - started >= 0.3


async def test_reset_clears_localstripe(gateway: StripeGateway, admin: ProxyAdmin, own_stripe_url: str) -> None:
    await _customer_with_card(gateway)
    assert await admin.count("customers") == 1
    reset_simulator(own_stripe_url)
    assert await admin.count("customers") == 0
    assert await admin.calls("create_customer") == []


# -- webhooks -------------------------------------------------------------------------------------


async def test_webhook_signature_verification(gateway: StripeGateway) -> None:
    payload = json.dumps(
        {
            "id": "evt_test_1",
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_123", "object": "payment_intent", "amount": 1500}},
        }
    ).encode()

    event = gateway.construct_webhook_event(payload, _sign(payload, WEBHOOK_SECRET), WEBHOOK_SECRET)
    assert (event.id, event.type, event.data.object["id"]) == ("evt_test_1", "payment_intent.succeeded", "pi_123")

    tampered = payload.replace(b"1500", b"9999")
    for body, header in [
        (tampered, _sign(payload, WEBHOOK_SECRET)),  # body changed after signing
        (payload, _sign(payload, "whsec_someone_else")),  # wrong secret
        (payload, _sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)),  # replayed, too old
        (payload, None),  # no header
    ]:
        with pytest.raises(WebhookSignatureError):
            gateway.construct_webhook_event(body, header, WEBHOOK_SECRET)


@pytest.fixture
async def webhook_sink(own_localstripe_url: str) -> AsyncIterator[asyncio.Queue[tuple[bytes, str | None]]]:
    """A real HTTP endpoint registered as a localstripe webhook for `payment_intent.succeeded`."""
    received: asyncio.Queue[tuple[bytes, str | None]] = asyncio.Queue()
    sink = FastAPI()

    @sink.post("/stripe/webhook")
    async def receive(request: Request) -> dict[str, str]:
        await received.put((await request.body(), request.headers.get("stripe-signature")))
        return {"status": "ok"}

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(sink, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none", http="h11")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    hook_id = f"contract-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=own_localstripe_url, timeout=5) as http:
        registered = await http.post(
            f"/_config/webhooks/{hook_id}",
            data={
                "url": f"http://127.0.0.1:{port}/stripe/webhook",
                "secret": WEBHOOK_SECRET,
                "events[]": "payment_intent.succeeded",
            },
        )
        registered.raise_for_status()
        yield received
        silenced = await http.post(  # localstripe keeps webhooks for its lifetime: deliver nothing more here
            f"/_config/webhooks/{hook_id}",
            data={"url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET, "events[]": "none.none"},
        )
        silenced.raise_for_status()
    server.should_exit = True
    await serving


async def test_webhook_signed_by_localstripe_verifies(
    gateway: StripeGateway, webhook_sink: asyncio.Queue[tuple[bytes, str | None]]
) -> None:
    card = await _customer_with_card(gateway)
    paid = await _charge(gateway, card, _key())

    async def delivery_for_our_payment() -> tuple[bytes, str | None]:
        while True:  # events of earlier tests' payments may still be on their way (sent after ~1 s)
            body, signature = await webhook_sink.get()
            event = gateway.construct_webhook_event(body, signature, WEBHOOK_SECRET)
            assert event.type == "payment_intent.succeeded"
            if event.data.object["id"] == paid.payment_intent_id:
                return body, signature

    body, signature = await asyncio.wait_for(delivery_for_our_payment(), timeout=10)

    with pytest.raises(WebhookSignatureError):
        gateway.construct_webhook_event(body + b" ", signature, WEBHOOK_SECRET)
