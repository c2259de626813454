"""Typed async client for SNAIC, the supplier / provisioning system (SPEC §3).

SNAIC orders are asynchronous: every order-creating call returns an acknowledgement (`order_id`, status
`pending`); the result arrives later by a signed callback to our API (`SnaicCallback`, checked with
`verify_callback_signature`) and can also be read by polling `get_order`. Every mutating method takes an
idempotency key (header `Idempotency-Key`): the same key gives back the same order, never a second one.
An optional `reference` (workflow id, top-up id) is echoed in the order and its callback.

Errors are those of `integrations.errors` only: `TransientError` (transport, timeout, 5xx: retry with
the same key), `RejectedError` (422), `NotFoundError`, `ConflictError` (409: key reused with another
body, or the line's state forbids the order, e.g. `invalid_line_state`, `duplicate_reference`; the
answer body is in `err.body`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from integrations._http import make_http_client, request_json
from integrations.errors import NotFoundError, TransientError

SYSTEM = "snaic"
SIGNATURE_HEADER = "X-Snaic-Signature"

OrderType = Literal["create_line", "change_offer", "suspend_line", "resume_line", "terminate_line", "one_off_option"]
OrderStatus = Literal["pending", "completed", "rejected"]
LineStatus = Literal["pending", "active", "suspended", "terminated", "rejected"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PortIn(_Model):
    msisdn: str
    rio: str


class SnaicOrderAck(_Model):
    """The synchronous answer to an order: accepted, to be completed later."""

    order_id: str
    line_id: str
    type: OrderType
    status: OrderStatus


class SnaicOrder(_Model):
    order_id: str
    line_id: str
    type: OrderType
    status: OrderStatus
    reason: str | None = None
    reference: str | None = None
    created_at: datetime
    completed_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status != "pending"


class SnaicOffer(_Model):
    offer_code: str
    label: str
    purchase_price: int
    status: Literal["pending", "active", "ended", "rejected"]
    order_id: str
    started_at: datetime | None = None
    ended_at: datetime | None = None


class SnaicOneOffOption(_Model):
    option_code: str
    label: str
    quantity: int
    unit_purchase_price: int
    purchase_price: int
    reference: str
    status: Literal["pending", "active", "rejected", "cancelled"]
    order_id: str
    activated_at: datetime | None = None
    cancelled_at: datetime | None = None


class SnaicLine(_Model):
    line_id: str
    iccid: str
    msisdn: str
    status: LineStatus
    offer_code: str | None = None
    port_in: PortIn | None = None
    offers: tuple[SnaicOffer, ...] = ()
    active_offers: tuple[SnaicOffer, ...] = ()
    options: tuple[SnaicOneOffOption, ...] = ()
    activated_at: datetime | None = None
    terminated_at: datetime | None = None

    def option(self, reference: str) -> SnaicOneOffOption | None:
        """The one-off option ordered under `reference` (e.g. a top-up id), if any."""
        for option in self.options:
            if option.reference == reference:
                return option
        return None


class SnaicCallback(_Model):
    """The body SNAIC posts to our API when an order completes (verify the signature on the raw body first)."""

    order_id: str
    line_id: str
    type: OrderType | None = None
    status: Literal["completed", "rejected"]
    reason: str | None = None
    reference: str | None = None
    completed_at: datetime | None = None


def sign_callback(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_callback_signature(body: bytes, signature: str, secret: str) -> bool:
    """True when `signature` (hex HMAC-SHA256 of the raw body, optionally `sha256=`-prefixed) is valid."""
    if not signature or not secret:
        return False
    candidate = signature.strip().removeprefix("sha256=").lower()
    return hmac.compare_digest(candidate, sign_callback(body, secret))


def _seg(value: str) -> str:
    return quote(value, safe="")


class SnaicClient:
    def __init__(
        self, base_url: str, timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = make_http_client(base_url, timeout_s, transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    verify_callback_signature = staticmethod(verify_callback_signature)

    async def _order(self, path: str, payload: dict[str, Any], idempotency_key: str) -> SnaicOrderAck:
        body = await request_json(self._http, SYSTEM, "POST", path, json=payload, idempotency_key=idempotency_key)
        return SnaicOrderAck.model_validate(body)

    # --- orders ---

    async def create_line(
        self,
        *,
        iccid: str,
        offer_code: str,
        idempotency_key: str,
        msisdn: str | None = None,
        port_in: PortIn | None = None,
        reference: str | None = None,
    ) -> SnaicOrderAck:
        """Orders a new line on a new MSISDN, or on a ported-in one (`port_in` with its RIO)."""
        payload: dict[str, Any] = {"iccid": iccid, "offer_code": offer_code}
        if msisdn is not None:
            payload["msisdn"] = msisdn
        if port_in is not None:
            payload["port_in"] = port_in.model_dump()
        if reference is not None:
            payload["reference"] = reference
        return await self._order("/lines", payload, idempotency_key)

    async def change_offer(
        self, line_id: str, offer_code: str, *, idempotency_key: str, reference: str | None = None
    ) -> SnaicOrderAck:
        payload: dict[str, Any] = {"offer_code": offer_code}
        if reference is not None:
            payload["reference"] = reference
        return await self._order(f"/lines/{_seg(line_id)}/offer", payload, idempotency_key)

    async def suspend_line(self, line_id: str, *, idempotency_key: str, reference: str | None = None) -> SnaicOrderAck:
        return await self._order(f"/lines/{_seg(line_id)}/suspend", _ref(reference), idempotency_key)

    async def resume_line(self, line_id: str, *, idempotency_key: str, reference: str | None = None) -> SnaicOrderAck:
        return await self._order(f"/lines/{_seg(line_id)}/resume", _ref(reference), idempotency_key)

    async def terminate_line(
        self, line_id: str, *, idempotency_key: str, reference: str | None = None
    ) -> SnaicOrderAck:
        """Orders the termination; on a line already terminated (or being terminated) returns that order."""
        return await self._order(f"/lines/{_seg(line_id)}/terminate", _ref(reference), idempotency_key)

    async def add_one_off_option(
        self, line_id: str, *, option_code: str, quantity: int, reference: str, idempotency_key: str
    ) -> SnaicOrderAck:
        """Orders a one-off option (data recharge) on an active line; `reference` is unique per line."""
        payload = {"option_code": option_code, "quantity": quantity, "reference": reference}
        return await self._order(f"/lines/{_seg(line_id)}/one-off-options", payload, idempotency_key)

    async def cancel_one_off_option(
        self, line_id: str, *, reference: str, idempotency_key: str
    ) -> SnaicOneOffOption | None:
        """Cancels the one-off option ordered under `reference` (pending or active): it will not (or no
        longer) give data. Idempotent; None when the line has no option under that reference."""
        try:
            body = await request_json(
                self._http,
                SYSTEM,
                "POST",
                f"/lines/{_seg(line_id)}/one-off-options/cancel",
                json={"reference": reference},
                idempotency_key=idempotency_key,
            )
        except NotFoundError:
            return None
        return SnaicOneOffOption.model_validate(body)

    # --- reads ---

    async def get_line(self, line_id: str) -> SnaicLine:
        body = await request_json(self._http, SYSTEM, "GET", f"/lines/{_seg(line_id)}")
        return SnaicLine.model_validate(body)

    async def list_lines(
        self, *, msisdn: str | None = None, iccid: str | None = None, status: LineStatus | None = None
    ) -> list[SnaicLine]:
        params = {k: v for k, v in {"msisdn": msisdn, "iccid": iccid, "status": status}.items() if v is not None}
        body = await request_json(self._http, SYSTEM, "GET", "/lines", params=params)
        return [SnaicLine.model_validate(item) for item in body["lines"]]

    async def find_line_by_msisdn(self, msisdn: str) -> SnaicLine | None:
        """The live line (not terminated nor rejected) with this MSISDN, else the latest one, else None."""
        lines = await self.list_lines(msisdn=msisdn)
        live = [line for line in lines if line.status not in ("terminated", "rejected")]
        return (live or lines)[-1] if lines else None

    async def get_order(self, order_id: str) -> SnaicOrder:
        body = await request_json(self._http, SYSTEM, "GET", f"/orders/{_seg(order_id)}")
        return SnaicOrder.model_validate(body)

    async def find_order(self, order_id: str) -> SnaicOrder | None:
        try:
            return await self.get_order(order_id)
        except NotFoundError:
            return None

    async def wait_for_order(self, order_id: str, *, timeout_s: float, poll_interval_s: float = 0.05) -> SnaicOrder:
        """Polls until the order is completed or rejected; TransientError(`order_pending`) after `timeout_s`.

        For tools and tests: workflows wait for the callback signal with an SLA timer instead.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            order = await self.get_order(order_id)
            if order.done:
                return order
            if time.monotonic() >= deadline:
                raise TransientError(SYSTEM, "order_pending", f"order {order_id} still pending after {timeout_s} s")
            await asyncio.sleep(poll_interval_s)


def _ref(reference: str | None) -> dict[str, Any]:
    return {"reference": reference} if reference is not None else {}
