"""Contract tests: `integrations.snaic.SnaicClient` against the SNAIC simulator over real HTTP.

Asynchronous orders (polling and signed callbacks to a local receiver), asynchronous rejection,
callbacks disabled or retried, idempotency, and every fault mode seen through the client.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from stdnum import luhn

from integrations.errors import ConflictError, NotFoundError, RejectedError, TransientError
from integrations.snaic import PortIn, SnaicCallback, SnaicClient, SnaicOrderAck, verify_callback_signature
from tests.conftest import reset_simulator, running_simulator


# Own simulator instances: the session worker's background workflows use the shared ones, and these tests count calls
# and reset state.
@pytest.fixture(scope="module")
def own_snaic_url() -> Iterator[str]:
    with running_simulator("snaic") as url:
        yield url


SECRET = "snaic-dev-secret"  # the simulator's default callback secret
WAIT_S = 5.0


def _iccid() -> str:
    body = "893301" + str(uuid.uuid4().int)[:12]
    return body + luhn.calc_check_digit(body)


def _msisdn() -> str:
    return "07" + str(uuid.uuid4().int)[:8]


def _key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


class SimAdmin:
    """The `/_sim` test contract and configuration of the SNAIC simulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            response = await http.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else None

    async def fault(self, op: str, mode: str, *, times: int = 1, latency_ms: int = 0) -> None:
        await self._request(
            "POST", "/_sim/faults", json={"op": op, "mode": mode, "times": times, "latency_ms": latency_ms}
        )

    async def configure(self, **config: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/_sim/config", json=config)
        return result

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/_sim/config")
        return result

    async def reset_config(self) -> None:
        await self._request("DELETE", "/_sim/config")

    async def calls(self, op: str) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = await self._request("GET", "/_sim/calls", params={"op": op})
        return calls

    async def wait_calls(
        self, op: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float = WAIT_S
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            calls = await self.calls(op)
            if predicate(calls):
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"calls of {op} never matched: {calls}")
            await asyncio.sleep(0.02)


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def callback(self) -> SnaicCallback:
        return SnaicCallback.model_validate_json(self.body)


@dataclass
class CallbackReceiver:
    """A minimal HTTP server standing for our API's `/api/v1/snaic/callback`."""

    fail_next: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api/v1/snaic/callback"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = 200
            if self.fail_next > 0:
                self.fail_next -= 1
                status = 503
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            async with self._changed:
                self.deliveries.append(Delivery(request_line.split(" ")[1], headers, body))
                self._changed.notify_all()
        finally:
            writer.close()

    def for_order(self, order_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if json.loads(d.body)["order_id"] == order_id]

    async def wait_for(self, order_id: str, count: int = 1) -> list[Delivery]:
        async with asyncio.timeout(WAIT_S), self._changed:
            await self._changed.wait_for(lambda: len(self.for_order(order_id)) >= count)
        return self.for_order(order_id)


@pytest.fixture
async def admin(own_snaic_url: str) -> AsyncIterator[SimAdmin]:
    """Known defaults during the test; the session's configuration (e.g. an API fixture's callback URL) after."""
    admin = SimAdmin(own_snaic_url)
    saved = await admin.config()
    reset_simulator(own_snaic_url)
    await admin.reset_config()
    yield admin
    reset_simulator(own_snaic_url)
    await admin.configure(**saved)


@pytest.fixture
async def receiver(admin: SimAdmin) -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    await receiver.start()
    await admin.configure(callback_url=receiver.url, callback_retry_delay_ms=10)
    yield receiver
    await admin.configure(callback_url=None)
    await receiver.stop()


@pytest.fixture
async def snaic(own_snaic_url: str, admin: SimAdmin) -> AsyncIterator[SnaicClient]:
    async with SnaicClient(own_snaic_url, timeout_s=5.0) as client:
        yield client


async def _active_line(snaic: SnaicClient, offer_code: str = "MOB_ILLIMITE_50GO") -> str:
    ack = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code=offer_code, idempotency_key=_key())
    order = await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)
    assert order.status == "completed"
    return ack.line_id


# --- orders, polling and callbacks ----------------------------------------------------------------------


async def test_create_line_completes_and_calls_back_signed(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver
) -> None:
    iccid, msisdn = _iccid(), _msisdn()
    ack = await snaic.create_line(
        iccid=iccid,
        msisdn=msisdn,
        offer_code="MOB_ILLIMITE_50GO",
        reference="sim-activation/org-1/" + iccid,
        idempotency_key=_key(),
    )
    assert (ack.status, ack.type) == ("pending", "create_line")
    assert (await snaic.get_line(ack.line_id)).status == "pending"

    [delivery] = await receiver.wait_for(ack.order_id)
    assert delivery.path == "/api/v1/snaic/callback"
    signature = delivery.headers["x-snaic-signature"]
    assert verify_callback_signature(delivery.body, signature, SECRET)
    assert snaic.verify_callback_signature(delivery.body, signature, SECRET)
    assert not verify_callback_signature(delivery.body, signature, "another-secret")
    assert not verify_callback_signature(delivery.body.replace(b"completed", b"rejected"), signature, SECRET)
    callback = delivery.callback
    assert (callback.order_id, callback.line_id, callback.status, callback.type) == (
        ack.order_id,
        ack.line_id,
        "completed",
        "create_line",
    )
    assert callback.reference == "sim-activation/org-1/" + iccid

    order = await snaic.get_order(ack.order_id)
    assert (order.status, order.reason, order.reference) == ("completed", None, callback.reference)
    line = await snaic.get_line(ack.line_id)
    assert (line.status, line.iccid, line.msisdn, line.offer_code) == ("active", iccid, msisdn, "MOB_ILLIMITE_50GO")
    assert [(o.offer_code, o.status, o.purchase_price) for o in line.active_offers] == [
        ("MOB_ILLIMITE_50GO", "active", 900)
    ]
    assert await snaic.find_line_by_msisdn(msisdn) == line
    assert await snaic.find_line_by_msisdn("0799999999") is None
    assert [line.line_id for line in await snaic.list_lines(iccid=iccid)] == [ack.line_id]
    [attempt] = await admin.calls("callback")
    assert (attempt["applied"], attempt["request"]["attempt"]) == (True, 1)


async def test_port_in_line_takes_the_ported_number(snaic: SnaicClient) -> None:
    number = _msisdn()
    ack = await snaic.create_line(
        iccid=_iccid(),
        offer_code="MOB_5GO",
        port_in=PortIn(msisdn=number, rio="01P123456ABC"),
        idempotency_key=_key(),
    )
    await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)
    line = await snaic.get_line(ack.line_id)
    assert (line.msisdn, line.status) == (number, "active")
    assert line.port_in == PortIn(msisdn=number, rio="01P123456ABC")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"iccid": "8933010000000000001"}, "iccid"),  # bad Luhn digit
        ({"msisdn": None}, "msisdn"),
        ({"msisdn": None, "port_in": PortIn(msisdn="0612345678", rio="XX")}, "rio"),
        ({"offer_code": ""}, "offer_code"),
    ],
)
async def test_invalid_line_order_is_rejected_with_the_field(
    snaic: SnaicClient, admin: SimAdmin, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"iccid": _iccid(), "msisdn": _msisdn(), "offer_code": "MOB_5GO", **kwargs}
    with pytest.raises(RejectedError) as err:
        await snaic.create_line(**args, idempotency_key=_key())
    assert (err.value.status_code, err.value.code) == (422, "validation")
    assert field in err.value.message
    assert await snaic.list_lines() == []
    assert [c["applied"] for c in await admin.calls("create_line")] == [False]


async def test_iccid_and_msisdn_in_use_are_conflicts(snaic: SnaicClient) -> None:
    iccid, msisdn = _iccid(), _msisdn()
    ack = await snaic.create_line(iccid=iccid, msisdn=msisdn, offer_code="MOB_5GO", idempotency_key=_key())
    with pytest.raises(ConflictError) as err:
        await snaic.create_line(iccid=iccid, msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    assert (err.value.code, err.value.body["line_id"]) == ("iccid_in_use", ack.line_id)
    with pytest.raises(ConflictError) as err:
        await snaic.create_line(iccid=_iccid(), msisdn=msisdn, offer_code="MOB_5GO", idempotency_key=_key())
    assert (err.value.code, err.value.body["line_id"]) == ("msisdn_in_use", ack.line_id)


async def test_offer_change_suspend_resume_terminate(snaic: SnaicClient) -> None:
    line_id = await _active_line(snaic)

    ack = await snaic.change_offer(line_id, "MOB_ILLIMITE_100GO", idempotency_key=_key())
    assert (await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)).status == "completed"
    line = await snaic.get_line(line_id)
    assert line.offer_code == "MOB_ILLIMITE_100GO"
    assert [(o.offer_code, o.status) for o in line.offers] == [
        ("MOB_ILLIMITE_50GO", "ended"),
        ("MOB_ILLIMITE_100GO", "active"),
    ]
    assert [o.purchase_price for o in line.active_offers] == [1100]
    with pytest.raises(ConflictError) as err:
        await snaic.change_offer(line_id, "MOB_ILLIMITE_100GO", idempotency_key=_key())
    assert err.value.code == "offer_already_active"

    ack = await snaic.suspend_line(line_id, idempotency_key=_key())
    await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)
    assert (await snaic.get_line(line_id)).status == "suspended"
    with pytest.raises(ConflictError) as err:
        await snaic.add_one_off_option(
            line_id, option_code="RECHARGE_DATA_1GO", quantity=1, reference="t-1", idempotency_key=_key()
        )
    assert (err.value.code, err.value.body["line_status"]) == ("invalid_line_state", "suspended")

    ack = await snaic.resume_line(line_id, idempotency_key=_key())
    await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)
    assert (await snaic.get_line(line_id)).status == "active"

    terminate = await snaic.terminate_line(line_id, reference="deprovision/org/l1", idempotency_key=_key())
    again = await snaic.terminate_line(line_id, idempotency_key=_key())
    assert again.order_id == terminate.order_id
    order = await snaic.wait_for_order(terminate.order_id, timeout_s=WAIT_S)
    assert (order.type, order.status, order.reference) == ("terminate_line", "completed", "deprovision/org/l1")
    line = await snaic.get_line(line_id)
    assert (line.status, line.active_offers) == ("terminated", ())
    assert line.terminated_at is not None
    after = await snaic.terminate_line(line_id, idempotency_key=_key())
    assert (after.order_id, after.status) == (terminate.order_id, "completed")
    with pytest.raises(ConflictError):
        await snaic.resume_line(line_id, idempotency_key=_key())


async def test_one_off_option_is_recorded_with_its_purchase_price(
    snaic: SnaicClient, receiver: CallbackReceiver
) -> None:
    line_id = await _active_line(snaic)
    ack = await snaic.add_one_off_option(
        line_id, option_code="RECHARGE_DATA_1GO", quantity=2, reference="topup-1", idempotency_key=_key()
    )
    assert ack.type == "one_off_option"
    [delivery] = await receiver.wait_for(ack.order_id)
    assert (delivery.callback.status, delivery.callback.reference) == ("completed", "topup-1")
    option = (await snaic.get_line(line_id)).option("topup-1")
    assert option is not None
    assert (option.status, option.quantity, option.unit_purchase_price, option.purchase_price) == ("active", 2, 25, 50)

    with pytest.raises(ConflictError) as err:
        await snaic.add_one_off_option(
            line_id, option_code="RECHARGE_DATA_1GO", quantity=2, reference="topup-1", idempotency_key=_key()
        )
    assert (err.value.code, err.value.body["order_id"]) == ("duplicate_reference", ack.order_id)


async def test_one_off_option_is_cancelled_pending_or_active_once(snaic: SnaicClient, admin: SimAdmin) -> None:
    line_id = await _active_line(snaic)
    # Pending: the order ends rejected (cancelled) and its late completion activates nothing.
    await admin.fault("complete_one_off_option", "latency", latency_ms=300)
    late = await snaic.add_one_off_option(
        line_id, option_code="RECHARGE_DATA_1GO", quantity=1, reference="topup-late", idempotency_key=_key()
    )
    key = _key()
    cancelled = await snaic.cancel_one_off_option(line_id, reference="topup-late", idempotency_key=key)
    assert cancelled is not None and (cancelled.order_id, cancelled.status) == (late.order_id, "cancelled")
    order = await snaic.get_order(late.order_id)
    assert (order.status, order.reason) == ("rejected", "cancelled")
    async with asyncio.timeout(WAIT_S):
        while not [
            c for c in await admin.calls("complete_one_off_option") if c["request"]["order_id"] == late.order_id
        ]:
            await asyncio.sleep(0.05)
    assert (await snaic.get_line(line_id)).option("topup-late").status == "cancelled"  # type: ignore[union-attr]
    again = await snaic.cancel_one_off_option(line_id, reference="topup-late", idempotency_key=_key())
    assert again == cancelled

    # Active: cancelled too; a reference without an option is nothing to cancel.
    done = await snaic.add_one_off_option(
        line_id, option_code="RECHARGE_DATA_1GO", quantity=1, reference="topup-done", idempotency_key=_key()
    )
    await snaic.wait_for_order(done.order_id, timeout_s=WAIT_S)
    active = await snaic.cancel_one_off_option(line_id, reference="topup-done", idempotency_key=_key())
    assert active is not None and active.status == "cancelled" and active.cancelled_at is not None
    assert await snaic.cancel_one_off_option(line_id, reference="topup-none", idempotency_key=_key()) is None


async def test_unknown_ids_are_not_found(snaic: SnaicClient) -> None:
    with pytest.raises(NotFoundError):
        await snaic.get_line("LN-999999")
    with pytest.raises(NotFoundError):
        await snaic.get_order("ORD-999999")
    assert await snaic.find_order("ORD-999999") is None
    with pytest.raises(NotFoundError):
        await snaic.suspend_line("LN-999999", idempotency_key=_key())


async def test_strict_catalogue_refuses_unknown_offers(snaic: SnaicClient, admin: SimAdmin) -> None:
    await admin.configure(strict_catalogue=True, offer_prices={"CUSTOM_OFFER": 420})
    with pytest.raises(RejectedError) as err:
        await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="NOPE", idempotency_key=_key())
    assert err.value.code == "unknown_offer"
    line_id = await _active_line(snaic, offer_code="CUSTOM_OFFER")
    assert [o.purchase_price for o in (await snaic.get_line(line_id)).active_offers] == [420]


# --- asynchronous outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "reason"), [("reject", "rejected_by_supplier"), ("error", "supplier_error")])
async def test_async_rejection_reaches_callback_and_polling(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver, mode: str, reason: str
) -> None:
    line_id = await _active_line(snaic)
    await admin.fault("complete_one_off_option", mode)
    ack = await snaic.add_one_off_option(
        line_id, option_code="RECHARGE_DATA_1GO", quantity=1, reference="topup-9", idempotency_key=_key()
    )
    assert ack.status == "pending"  # accepted synchronously
    [delivery] = await receiver.wait_for(ack.order_id)
    assert verify_callback_signature(delivery.body, delivery.headers["x-snaic-signature"], SECRET)
    assert (delivery.callback.status, delivery.callback.reason) == ("rejected", reason)
    order = await snaic.get_order(ack.order_id)
    assert (order.status, order.reason) == ("rejected", reason)
    option = (await snaic.get_line(line_id)).option("topup-9")
    assert option is not None
    assert option.status == "rejected"
    [completion] = await admin.calls("complete_one_off_option")
    assert (completion["applied"], completion["fault"]) == (False, mode)

    # The fault is spent, and a rejected reference may be ordered again.
    retry = await snaic.add_one_off_option(
        line_id, option_code="RECHARGE_DATA_1GO", quantity=1, reference="topup-9", idempotency_key=_key()
    )
    assert (await snaic.wait_for_order(retry.order_id, timeout_s=WAIT_S)).status == "completed"


async def test_sync_reject_refuses_the_order_itself(snaic: SnaicClient, admin: SimAdmin) -> None:
    line_id = await _active_line(snaic)
    await admin.fault("add_one_off_option", "reject")
    with pytest.raises(RejectedError) as err:
        await snaic.add_one_off_option(
            line_id, option_code="RECHARGE_DATA_1GO", quantity=1, reference="topup-3", idempotency_key=_key()
        )
    assert err.value.status_code == 422
    assert (await snaic.get_line(line_id)).options == ()
    assert await admin.calls("complete_one_off_option") == []


async def test_callbacks_disabled_polling_still_sees_the_result(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver
) -> None:
    await admin.configure(callbacks_enabled=False)
    silent = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    assert (await snaic.wait_for_order(silent.order_id, timeout_s=WAIT_S)).status == "completed"
    assert (await snaic.get_line(silent.line_id)).status == "active"

    # Barrier: with callbacks back on, a later order calls back; the silent one never did.
    await admin.configure(callbacks_enabled=True)
    later = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    await receiver.wait_for(later.order_id)
    assert receiver.for_order(silent.order_id) == []
    assert [c["request"]["payload"]["order_id"] for c in await admin.calls("callback")] == [later.order_id]


async def test_lost_callback_completes_without_calling_back(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver
) -> None:
    await admin.fault("complete_create_line", "lost_response")
    lost = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    later = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    await receiver.wait_for(later.order_id)
    assert (await snaic.wait_for_order(lost.order_id, timeout_s=WAIT_S)).status == "completed"
    assert receiver.for_order(lost.order_id) == []


async def test_completion_timeout_leaves_the_order_pending_and_the_line_can_be_terminated(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver
) -> None:
    await admin.fault("complete_create_line", "timeout")
    stuck = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    later = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    await receiver.wait_for(later.order_id)
    assert (await snaic.get_order(stuck.order_id)).status == "pending"
    with pytest.raises(TransientError) as err:
        await snaic.wait_for_order(stuck.order_id, timeout_s=0.1)
    assert err.value.code == "order_pending"

    # Compensation after an SLA timeout: the pending line is terminated.
    terminate = await snaic.terminate_line(stuck.line_id, idempotency_key=_key())
    await receiver.wait_for(terminate.order_id)
    line = await snaic.get_line(stuck.line_id)
    assert line.status == "terminated"
    assert [o.status for o in line.offers] == ["ended"]


async def test_completion_latency_delays_the_order(snaic: SnaicClient, admin: SimAdmin) -> None:
    await admin.fault("complete_create_line", "latency", latency_ms=300)
    ack = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    started = time.monotonic()
    order = await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)
    assert order.status == "completed"
    assert time.monotonic() - started >= 0.2


async def test_failed_callbacks_are_retried_until_delivered(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver
) -> None:
    receiver.fail_next = 2
    ack = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    deliveries = await receiver.wait_for(ack.order_id, count=3)
    assert [d.headers["x-snaic-delivery-attempt"] for d in deliveries] == ["1", "2", "3"]
    assert len({d.body for d in deliveries}) == 1
    calls = await admin.wait_calls("callback", lambda calls: len(calls) == 3)
    assert [(c["applied"], c["status_code"], c["request"]["attempt"]) for c in calls] == [
        (False, 503, 1),
        (False, 503, 2),
        (True, 200, 3),
    ]


async def test_unreachable_callback_target_is_retried_then_given_up(snaic: SnaicClient, admin: SimAdmin) -> None:
    receiver = CallbackReceiver()
    await receiver.start()
    await receiver.stop()  # nobody listens on that port any more
    await admin.configure(callback_url=receiver.url, callback_max_attempts=3, callback_retry_delay_ms=5)
    ack = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    calls = await admin.wait_calls("callback", lambda calls: len(calls) == 3)
    assert not any(c["applied"] for c in calls)
    assert all(c["request"]["error"] for c in calls)
    assert (await snaic.get_order(ack.order_id)).status == "completed"


# --- idempotency ----------------------------------------------------------------------------------------


async def test_same_key_gives_the_same_order_and_one_callback(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver
) -> None:
    iccid = _iccid()
    args: dict[str, Any] = {"iccid": iccid, "msisdn": _msisdn(), "offer_code": "MOB_5GO", "idempotency_key": "act-1"}
    first = await snaic.create_line(**args)
    second = await snaic.create_line(**args)
    assert second == first
    assert [(c["applied"], c["replayed"]) for c in await admin.calls("create_line")] == [(True, False), (False, True)]
    assert len(await snaic.list_lines(iccid=iccid)) == 1

    await receiver.wait_for(first.order_id)
    later = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    await receiver.wait_for(later.order_id)
    assert len(receiver.for_order(first.order_id)) == 1
    assert len(await admin.calls("complete_create_line")) == 2


async def test_same_key_with_another_body_is_a_conflict(snaic: SnaicClient) -> None:
    await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key="act-2")
    with pytest.raises(ConflictError) as err:
        await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key="act-2")
    assert err.value.code == "idempotency_key_reused"


async def test_one_off_option_twice_with_the_same_key_orders_once(snaic: SnaicClient, admin: SimAdmin) -> None:
    line_id = await _active_line(snaic)
    args: dict[str, Any] = {
        "option_code": "RECHARGE_DATA_1GO",
        "quantity": 1,
        "reference": "topup-5",
        "idempotency_key": "topup-5:snaic",
    }
    first = await snaic.add_one_off_option(line_id, **args)
    second = await snaic.add_one_off_option(line_id, **args)
    assert second == first
    await snaic.wait_for_order(first.order_id, timeout_s=WAIT_S)
    assert len((await snaic.get_line(line_id)).options) == 1
    assert [c["applied"] for c in await admin.calls("add_one_off_option")] == [True, False]


# --- synchronous fault modes through the client ---------------------------------------------------------


@dataclass
class Case:
    op: str
    prepare: Callable[[SnaicClient], Awaitable[dict[str, Any]]]
    call: Callable[[SnaicClient, dict[str, Any], str], Awaitable[SnaicOrderAck]]
    effects: Callable[[SnaicClient, dict[str, Any]], Awaitable[int]]


async def _prepare_sim(_: SnaicClient) -> dict[str, Any]:
    return {"iccid": _iccid(), "msisdn": _msisdn()}


async def _call_create(c: SnaicClient, ctx: dict[str, Any], key: str) -> SnaicOrderAck:
    return await c.create_line(iccid=ctx["iccid"], msisdn=ctx["msisdn"], offer_code="MOB_5GO", idempotency_key=key)


async def _count_lines(c: SnaicClient, ctx: dict[str, Any]) -> int:
    return len(await c.list_lines(iccid=ctx["iccid"]))


async def _prepare_line(c: SnaicClient) -> dict[str, Any]:
    return {"line_id": await _active_line(c)}


async def _call_option(c: SnaicClient, ctx: dict[str, Any], key: str) -> SnaicOrderAck:
    return await c.add_one_off_option(
        ctx["line_id"], option_code="RECHARGE_DATA_1GO", quantity=1, reference="topup-f", idempotency_key=key
    )


async def _count_options(c: SnaicClient, ctx: dict[str, Any]) -> int:
    return len((await c.get_line(ctx["line_id"])).options)


CASES = [
    Case("create_line", _prepare_sim, _call_create, _count_lines),
    Case("add_one_off_option", _prepare_line, _call_option, _count_options),
]
case_ids = [case.op for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_error_fault_is_transient_and_orders_nothing(snaic: SnaicClient, admin: SimAdmin, case: Case) -> None:
    ctx = await case.prepare(snaic)
    await admin.fault(case.op, "error")
    with pytest.raises(TransientError) as err:
        await case.call(snaic, ctx, "key-error")
    assert err.value.status_code == 503
    assert await case.effects(snaic, ctx) == 0
    ack = await case.call(snaic, ctx, "key-error")
    assert await case.effects(snaic, ctx) == 1
    assert (await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)).status == "completed"


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_reject_fault_is_a_rejection_and_orders_nothing(snaic: SnaicClient, admin: SimAdmin, case: Case) -> None:
    ctx = await case.prepare(snaic)
    await admin.fault(case.op, "reject")
    with pytest.raises(RejectedError) as err:
        await case.call(snaic, ctx, "key-reject")
    assert not err.value.retryable
    assert err.value.status_code == 422
    assert await case.effects(snaic, ctx) == 0


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_timeout_fault_is_transient_and_orders_nothing(
    own_snaic_url: str, snaic: SnaicClient, admin: SimAdmin, case: Case
) -> None:
    ctx = await case.prepare(snaic)
    await admin.fault(case.op, "timeout", latency_ms=800)
    async with SnaicClient(own_snaic_url, timeout_s=0.2) as impatient:
        with pytest.raises(TransientError) as err:
            await case.call(impatient, ctx, "key-timeout")
    assert err.value.code == "timeout"
    await admin.wait_calls(case.op, lambda calls: any(c["fault"] == "timeout" for c in calls))
    assert await case.effects(snaic, ctx) == 0


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_lost_response_orders_once_and_the_retry_gets_the_same_order(
    snaic: SnaicClient, admin: SimAdmin, receiver: CallbackReceiver, case: Case
) -> None:
    ctx = await case.prepare(snaic)
    await admin.fault(case.op, "lost_response")
    with pytest.raises(TransientError) as err:
        await case.call(snaic, ctx, "key-lost")
    assert err.value.code == "transport"
    assert await case.effects(snaic, ctx) == 1

    ack = await case.call(snaic, ctx, "key-lost")
    assert await case.call(snaic, ctx, "key-lost") == ack
    assert await case.effects(snaic, ctx) == 1
    calls = [c for c in await admin.calls(case.op) if c["idempotency_key"] == "key-lost"]
    assert [(c["applied"], c["replayed"], c["fault"]) for c in calls] == [
        (True, False, "lost_response"),
        (False, True, None),
        (False, True, None),
    ]
    [delivery] = await receiver.wait_for(ack.order_id)
    assert delivery.callback.status == "completed"


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_latency_fault_only_delays(snaic: SnaicClient, admin: SimAdmin, case: Case) -> None:
    ctx = await case.prepare(snaic)
    await admin.fault(case.op, "latency", latency_ms=150)
    started = time.monotonic()
    ack = await case.call(snaic, ctx, "key-latency")
    assert time.monotonic() - started >= 0.15
    assert ack.status == "pending"
    assert await case.effects(snaic, ctx) == 1


@pytest.mark.parametrize("op", ["get_line", "get_order", "list_lines"])
async def test_faults_apply_to_reads(own_snaic_url: str, snaic: SnaicClient, admin: SimAdmin, op: str) -> None:
    ack = await snaic.create_line(iccid=_iccid(), msisdn=_msisdn(), offer_code="MOB_5GO", idempotency_key=_key())
    await snaic.wait_for_order(ack.order_id, timeout_s=WAIT_S)

    def read(client: SnaicClient) -> Awaitable[Any]:
        if op == "get_line":
            return client.get_line(ack.line_id)
        if op == "get_order":
            return client.get_order(ack.order_id)
        return client.list_lines()

    expected = await read(snaic)
    await admin.fault(op, "error")
    with pytest.raises(TransientError):
        await read(snaic)
    await admin.fault(op, "reject")
    with pytest.raises(RejectedError):
        await read(snaic)
    await admin.fault(op, "lost_response")
    with pytest.raises(TransientError):
        await read(snaic)
    await admin.fault(op, "timeout", latency_ms=600)
    async with SnaicClient(own_snaic_url, timeout_s=0.2) as impatient:
        with pytest.raises(TransientError):
            await read(impatient)
    await admin.wait_calls(op, lambda calls: any(c["fault"] == "timeout" for c in calls))
    assert await read(snaic) == expected
