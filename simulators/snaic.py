"""SNAIC simulator: the supplier / provisioning system (SPEC §3). Orders are asynchronous.

In memory and stateful. Every order-creating route accepts the order at once (202 `{order_id, line_id,
type, status: "pending"}`) and completes it after `completion_delay_ms`; the result is then readable by
polling `GET /orders/{order_id}` and pushed by callback. Every route goes through `Simulator.run` under
the op name in brackets; mutating routes honour `Idempotency-Key` (same key → the same order, no second
order and no second callback; same key with another body → 409). An optional `reference` (e.g. the
workflow id or top-up id) is echoed in the order and its callback.

Routes:
- `POST /lines` [create_line] `{iccid, msisdn?, offer_code, port_in?: {msisdn, rio}, reference?}`: a new
  line (status `pending` → `active`, or `rejected`). `msisdn` is required without port-in; with port-in
  the line takes `port_in.msisdn`. 409 `iccid_in_use` / `msisdn_in_use` (with `line_id`).
- `POST /lines/{line_id}/offer` [change_offer] `{offer_code, reference?}` (line active or suspended).
- `POST /lines/{line_id}/suspend` [suspend_line] (line active), `/resume` [resume_line] (line suspended),
  `/terminate` [terminate_line] (any line not rejected; on a line already terminated or being terminated
  it answers 200 with that termination order instead of creating another one).
- `POST /lines/{line_id}/one-off-options` [add_one_off_option] `{option_code, quantity, reference}` (data
  recharge, line active); 409 `duplicate_reference` (with `order_id`) when a non-rejected option of the
  line already has that reference.
- `POST /lines/{line_id}/one-off-options/cancel` [cancel_one_off_option] `{reference}`: cancels the option
  ordered under that reference, pending or active (synchronous, 200 with the option, status `cancelled`;
  again: the same answer); a pending order ends `rejected` (reason `cancelled`) and never activates it.
  404 when the line has no such option (or only a rejected one).
- `GET /lines/{line_id}` [get_line]: status, offers (active, pending, ended) and one-off options with
  purchase prices; `GET /lines?msisdn=&iccid=&status=` [list_lines] → `{"lines": [...]}`.
- `GET /orders/{order_id}` [get_order]: `status` pending | completed | rejected, `reason`.
Wrong line state → 409 `invalid_line_state`; validation → 422 `{"error": "validation", ...}`; unknown
ids → 404 `{"error": "not_found", ...}`. Purchase prices are integers in minor units from the catalogue
(`OFFERS`, `OPTIONS`, overridable by config); unknown codes are accepted at price 0 unless
`strict_catalogue` is set (then 422 `unknown_offer` / `unknown_option`).

Callbacks: on completion the simulator POSTs `{order_id, line_id, type, status: completed|rejected,
reason, reference, completed_at}` (compact JSON, sorted keys) to `callback_url` with the header
`X-Snaic-Signature: <hex HMAC-SHA256 of the raw body>` (secret `SNAIC_SIM_CALLBACK_SECRET`, default
`snaic-dev-secret`) and `X-Snaic-Delivery-Attempt: n`. A non-2xx answer or a transport failure is retried
(`callback_max_attempts`, backoff from `callback_retry_delay_ms`, doubling). Each attempt is recorded
as a call of op `callback` (`applied` = delivered; `request` = url, attempt, payload, error).

Configuration (`GET|POST /_sim/config`, POST merges the given fields; `DELETE /_sim/config` restores the
defaults from the environment; `/_sim/reset` clears lines, orders, faults, calls and pending
completions but keeps the config):
- `completion_delay_ms` (env `SNAIC_SIM_COMPLETION_DELAY_MS`, default 50)
- `callback_url` (env `SNAIC_SIM_CALLBACK_URL`, default none: no callback), `callback_secret`
- `callbacks_enabled` (default true; false: the callback never arrives, polling still shows the result)
- `callback_max_attempts` (5), `callback_retry_delay_ms` (100), `callback_timeout_ms` (5000)
- `strict_catalogue` (false), `offer_prices` / `option_prices` (`{code: minor units}`, extend the catalogue)

Asynchronous faults: a fault queued on op `complete_<order type>` (order types: create_line,
change_offer, suspend_line, resume_line, terminate_line, one_off_option) applies to the next orders of
that type when they are accepted (one per `times`), and shapes their completion instead of the HTTP
answer: `reject` → the order ends `rejected` (reason `rejected_by_supplier`), `error` → `rejected`
(reason `supplier_error`), `timeout` → the order stays `pending` for ever (no callback), `lost_response`
→ the order completes but its callback is never sent, `latency` → completion delayed by `latency_ms`.
A fault on the synchronous op (e.g. `reject` on `add_one_off_option`) refuses the request itself (422).
Completions are recorded as calls of op `complete_<order type>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from starlette.responses import Response
from stdnum import luhn

from simulators._sim import Fault, FaultMode, Simulator, call_subject

SYSTEM = "snaic"

OrderType = Literal["create_line", "change_offer", "suspend_line", "resume_line", "terminate_line", "one_off_option"]
LineStatus = Literal["pending", "active", "suspended", "terminated", "rejected"]

# Catalogue: code → (label, purchase price in minor units per period / per unit).
OFFERS: dict[str, tuple[str, int]] = {
    "MOB_ILLIMITE_50GO": ("Illimité Voix France&EUROF 50Go", 900),
    "MOB_ILLIMITE_100GO": ("Illimité Voix France&EUROF VoLTE 100Go", 1100),
    "MOB_5GO": ("Forfait 5Go", 300),
    "M2M_1GO": ("M2M 1Go", 150),
}
OPTIONS: dict[str, tuple[str, int]] = {
    "RECHARGE_DATA_1GO": ("Recharge DATA 1Go", 25),
    "RECHARGE_DATA_5GO": ("Recharge DATA 5Go", 110),
}

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
# Order references carry the placing workflow's id (`sim-activation/{org}/{iccid}:create_line`).
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=250)]
Msisdn = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9]{9,15}$")]
# RIO: operator code (2 digits), contract type (P or E), customer reference (6), check key (3).
Rio = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[0-9]{2}[PE][0-9A-Z]{9}$")]


def _now() -> datetime:
    return datetime.now(UTC)


class ApiError(Exception):
    def __init__(self, status_code: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{kind} {ident!r} not found", kind=kind, id=ident)


def validation_error(fields: list[dict[str, str]]) -> ApiError:
    message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
    return ApiError(422, "validation", message, fields=fields)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "reason": err["msg"]} for err in exc.errors()
        ]
        raise validation_error(fields) from exc


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- requests -------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortIn(_In):
    msisdn: Msisdn
    rio: Rio


class CreateLineIn(_In):
    iccid: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{19,20}$")]
    msisdn: Msisdn | None = None
    offer_code: Code
    port_in: PortIn | None = None
    reference: Reference | None = None

    @field_validator("iccid")
    @classmethod
    def _luhn(cls, value: str) -> str:
        if not luhn.is_valid(value):
            raise ValueError("invalid ICCID check digit (Luhn)")
        return value

    @model_validator(mode="after")
    def _number(self) -> CreateLineIn:
        if self.port_in is None and self.msisdn is None:
            raise ValueError("msisdn is required without port_in")
        if self.port_in is not None and self.msisdn is not None and self.msisdn != self.port_in.msisdn:
            raise ValueError("msisdn and port_in.msisdn differ")
        return self

    @property
    def number(self) -> str:
        return self.port_in.msisdn if self.port_in is not None else str(self.msisdn)


class ChangeOfferIn(_In):
    offer_code: Code
    reference: Reference | None = None


class LineActionIn(_In):
    reference: Reference | None = None


class OneOffOptionIn(_In):
    option_code: Code
    quantity: Annotated[int, Field(strict=True, ge=1, le=1000)]
    reference: Reference


class CancelOptionIn(_In):
    reference: Reference


class SnaicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completion_delay_ms: int = Field(default=50, ge=0, le=3_600_000)
    callback_url: str | None = None
    callback_secret: str = "snaic-dev-secret"
    callbacks_enabled: bool = True
    callback_max_attempts: int = Field(default=5, ge=1, le=50)
    callback_retry_delay_ms: int = Field(default=100, ge=0, le=600_000)
    callback_timeout_ms: int = Field(default=5000, ge=1, le=600_000)
    strict_catalogue: bool = False
    offer_prices: dict[str, int] = Field(default_factory=dict)
    option_prices: dict[str, int] = Field(default_factory=dict)

    @field_validator("callback_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @classmethod
    def from_env(cls) -> SnaicConfig:
        return cls(
            completion_delay_ms=int(os.environ.get("SNAIC_SIM_COMPLETION_DELAY_MS", "50")),
            callback_url=os.environ.get("SNAIC_SIM_CALLBACK_URL") or None,
            callback_secret=os.environ.get("SNAIC_SIM_CALLBACK_SECRET", "snaic-dev-secret"),
        )


# --- state ----------------------------------------------------------------------------------------------


class Offer(BaseModel):
    offer_code: str
    label: str
    purchase_price: int
    status: Literal["pending", "active", "ended", "rejected"]
    order_id: str
    requested_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


class OneOffOption(BaseModel):
    option_code: str
    label: str
    quantity: int
    unit_purchase_price: int
    purchase_price: int
    reference: str
    status: Literal["pending", "active", "rejected", "cancelled"] = "pending"
    order_id: str
    requested_at: datetime
    activated_at: datetime | None = None
    cancelled_at: datetime | None = None


class Line(BaseModel):
    line_id: str
    iccid: str
    msisdn: str
    status: LineStatus = "pending"
    port_in: dict[str, str] | None = None
    offers: list[Offer] = Field(default_factory=list)
    options: list[OneOffOption] = Field(default_factory=list)
    created_at: datetime
    activated_at: datetime | None = None
    terminated_at: datetime | None = None
    terminate_order_id: str | None = None

    def view(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", exclude={"terminate_order_id"})
        active = [o for o in self.offers if o.status == "active"]
        body["offer_code"] = active[-1].offer_code if active else (self.offers[-1].offer_code if self.offers else None)
        body["active_offers"] = [o.model_dump(mode="json") for o in active]
        return body


class Order(BaseModel):
    order_id: str
    line_id: str
    type: OrderType
    status: Literal["pending", "completed", "rejected"] = "pending"
    reason: str | None = None
    reference: str | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    completed_at: datetime | None = None

    @property
    def settled(self) -> bool:
        return self.status != "pending"

    def ack(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "line_id": self.line_id, "type": self.type, "status": self.status}


class SnaicState:
    def __init__(self) -> None:
        self.lines: dict[str, Line] = {}
        self.orders: dict[str, Order] = {}
        self._counters: dict[str, int] = {}

    def next_id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}-{self._counters[prefix]:06d}"

    def line(self, line_id: str) -> Line:
        if line_id not in self.lines:
            raise not_found("line", line_id)
        return self.lines[line_id]

    def order(self, order_id: str) -> Order:
        if order_id not in self.orders:
            raise not_found("order", order_id)
        return self.orders[order_id]


class SnaicSimulator:
    """Business state, configuration and the background completions of one simulator process."""

    def __init__(self) -> None:
        self.sim = Simulator()
        self.state = SnaicState()
        self.config = SnaicConfig.from_env()
        self.tasks: set[asyncio.Task[None]] = set()
        self.http: httpx.AsyncClient | None = None

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.state = SnaicState()

    # --- catalogue ---

    def _price(self, code: str, kind: Literal["offer", "option"]) -> tuple[str, int]:
        catalogue = OFFERS if kind == "offer" else OPTIONS
        overrides = self.config.offer_prices if kind == "offer" else self.config.option_prices
        label, price = catalogue.get(code, (code, 0))
        if code in overrides:
            return label, overrides[code]
        if code not in catalogue and self.config.strict_catalogue:
            raise ApiError(422, f"unknown_{kind}", f"unknown {kind} code {code!r}", **{f"{kind}_code": code})
        return label, price

    # --- orders ---

    def _take_completion_fault(self, order_type: OrderType, subject: str) -> Fault | None:
        op = f"complete_{order_type}"
        for fault in self.sim.faults:
            if fault.op == op and fault.applies_to(op, subject):
                fault.times -= 1
                if fault.times <= 0:
                    self.sim.faults.remove(fault)
                return fault
        return None

    def _new_order(self, line: Line, order_type: OrderType, reference: str | None, request: dict[str, Any]) -> Order:
        order = Order(
            order_id=self.state.next_id("ORD"),
            line_id=line.line_id,
            type=order_type,
            reference=reference,
            request=request,
            created_at=_now(),
        )
        self.state.orders[order.order_id] = order
        fault = self._take_completion_fault(
            order_type, call_subject(reference, {**request, "line_id": line.line_id, "iccid": line.iccid})
        )
        task = asyncio.get_running_loop().create_task(self._complete_later(order, fault))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return order

    async def _complete_later(self, order: Order, fault: Fault | None) -> None:
        op = f"complete_{order.type}"
        mode = fault.mode if fault is not None else None
        if mode is FaultMode.TIMEOUT:
            self.sim.record(op, key=None, applied=False, status_code=0, request=order.ack(), fault=mode)
            return
        extra_ms = fault.latency_ms if fault is not None and mode is FaultMode.LATENCY else 0
        delay_ms = self.config.completion_delay_ms + extra_ms
        await asyncio.sleep(delay_ms / 1000)
        if order.settled:  # cancelled meanwhile: nothing left to complete
            self.sim.record(op, key=None, applied=False, status_code=409, request=order.ack(), fault=mode)
            return
        if mode is FaultMode.REJECT:
            self._finish(order, rejected="rejected_by_supplier")
        elif mode is FaultMode.ERROR:
            self._finish(order, rejected="supplier_error")
        else:
            self._finish(order, rejected=None)
        self.sim.record(
            op, key=None, applied=order.status == "completed", status_code=200, request=order.ack(), fault=mode
        )
        if mode is FaultMode.LOST_RESPONSE:
            return
        await self._deliver_callback(order)

    def _finish(self, order: Order, rejected: str | None) -> None:
        line = self.state.lines[order.line_id]
        now = _now()
        order.completed_at = now
        if rejected is not None:
            order.status = "rejected"
            order.reason = rejected
        else:
            order.status = "completed"
        ok = rejected is None
        match order.type:
            case "create_line":
                for offer in line.offers:
                    if offer.order_id == order.order_id and offer.status == "pending":
                        offer.status = "active" if ok and line.status == "pending" else "rejected"
                        offer.started_at = now if offer.status == "active" else None
                if line.status == "pending":
                    line.status = "active" if ok else "rejected"
                    line.activated_at = now if ok else None
            case "change_offer":
                ok = ok and line.status in ("active", "suspended")
                for offer in line.offers:
                    if offer.order_id == order.order_id and offer.status == "pending":
                        offer.status = "active" if ok else "rejected"
                        offer.started_at = now if ok else None
                    elif ok and offer.status == "active":
                        offer.status = "ended"
                        offer.ended_at = now
            case "suspend_line":
                if ok and line.status == "active":
                    line.status = "suspended"
            case "resume_line":
                if ok and line.status == "suspended":
                    line.status = "active"
            case "terminate_line":
                if ok:
                    line.status = "terminated"
                    line.terminated_at = now
                    for offer in line.offers:
                        if offer.status in ("active", "pending"):
                            offer.status = "ended"
                            offer.ended_at = now
                elif line.terminate_order_id == order.order_id:
                    line.terminate_order_id = None
            case "one_off_option":
                for option in line.options:
                    if option.order_id == order.order_id:
                        option.status = "active" if ok else "rejected"
                        option.activated_at = now if ok else None

    async def _deliver_callback(self, order: Order) -> None:
        config = self.config
        if not config.callbacks_enabled or not config.callback_url or self.http is None:
            return
        payload = {
            "order_id": order.order_id,
            "line_id": order.line_id,
            "type": order.type,
            "status": order.status,
            "reason": order.reason,
            "reference": order.reference,
            "completed_at": order.completed_at.isoformat() if order.completed_at else None,
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Snaic-Signature": sign(body, config.callback_secret)}
        delay_s = config.callback_retry_delay_ms / 1000
        for attempt in range(1, config.callback_max_attempts + 1):
            error: str | None = None
            status_code = 0
            try:
                response = await self.http.post(
                    config.callback_url,
                    content=body,
                    headers={**headers, "X-Snaic-Delivery-Attempt": str(attempt)},
                    timeout=config.callback_timeout_ms / 1000,
                )
                status_code = response.status_code
                if not response.is_success:
                    error = f"HTTP {status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivered = error is None
            self.sim.record(
                "callback",
                key=None,
                applied=delivered,
                status_code=status_code,
                request={"url": config.callback_url, "attempt": attempt, "payload": payload, "error": error},
            )
            if delivered:
                return
            if attempt < config.callback_max_attempts:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    # --- effects ---

    def create_line(self, data: CreateLineIn) -> tuple[int, Any]:
        msisdn = data.number
        for line in self.state.lines.values():
            if line.status in ("rejected", "terminated"):
                continue
            if line.iccid == data.iccid:
                raise ApiError(
                    409, "iccid_in_use", f"ICCID {data.iccid} is used by line {line.line_id}", line_id=line.line_id
                )
            if line.msisdn == msisdn:
                raise ApiError(
                    409, "msisdn_in_use", f"MSISDN {msisdn} is used by line {line.line_id}", line_id=line.line_id
                )
        label, price = self._price(data.offer_code, "offer")
        line = Line(
            line_id=self.state.next_id("LN"),
            iccid=data.iccid,
            msisdn=msisdn,
            port_in=data.port_in.model_dump() if data.port_in is not None else None,
            created_at=_now(),
        )
        self.state.lines[line.line_id] = line
        order = self._new_order(line, "create_line", data.reference, data.model_dump(mode="json"))
        line.offers.append(
            Offer(
                offer_code=data.offer_code,
                label=label,
                purchase_price=price,
                status="pending",
                order_id=order.order_id,
                requested_at=order.created_at,
            )
        )
        return 202, order.ack()

    @staticmethod
    def _require(line: Line, *allowed: LineStatus) -> None:
        if line.status not in allowed:
            raise ApiError(
                409,
                "invalid_line_state",
                f"line {line.line_id} is {line.status}; expected {' or '.join(allowed)}",
                line_id=line.line_id,
                line_status=line.status,
            )

    def change_offer(self, line_id: str, data: ChangeOfferIn) -> tuple[int, Any]:
        line = self.state.line(line_id)
        self._require(line, "active", "suspended")
        if any(o.offer_code == data.offer_code and o.status == "active" for o in line.offers):
            raise ApiError(409, "offer_already_active", f"offer {data.offer_code} is already active", line_id=line_id)
        label, price = self._price(data.offer_code, "offer")
        order = self._new_order(line, "change_offer", data.reference, data.model_dump(mode="json"))
        line.offers.append(
            Offer(
                offer_code=data.offer_code,
                label=label,
                purchase_price=price,
                status="pending",
                order_id=order.order_id,
                requested_at=order.created_at,
            )
        )
        return 202, order.ack()

    def suspend_line(self, line_id: str, data: LineActionIn) -> tuple[int, Any]:
        line = self.state.line(line_id)
        self._require(line, "active")
        return 202, self._new_order(line, "suspend_line", data.reference, data.model_dump(mode="json")).ack()

    def resume_line(self, line_id: str, data: LineActionIn) -> tuple[int, Any]:
        line = self.state.line(line_id)
        self._require(line, "suspended")
        return 202, self._new_order(line, "resume_line", data.reference, data.model_dump(mode="json")).ack()

    def terminate_line(self, line_id: str, data: LineActionIn) -> tuple[int, Any]:
        line = self.state.line(line_id)
        self._require(line, "pending", "active", "suspended", "terminated")
        if line.terminate_order_id is not None:
            return 200, self.state.orders[line.terminate_order_id].ack()
        order = self._new_order(line, "terminate_line", data.reference, data.model_dump(mode="json"))
        line.terminate_order_id = order.order_id
        return 202, order.ack()

    def add_one_off_option(self, line_id: str, data: OneOffOptionIn) -> tuple[int, Any]:
        line = self.state.line(line_id)
        self._require(line, "active")
        for option in line.options:
            if option.reference == data.reference and option.status != "rejected":
                raise ApiError(
                    409,
                    "duplicate_reference",
                    f"reference {data.reference!r} already has an option on line {line_id}",
                    order_id=option.order_id,
                    line_id=line_id,
                )
        label, unit_price = self._price(data.option_code, "option")
        order = self._new_order(line, "one_off_option", data.reference, data.model_dump(mode="json"))
        line.options.append(
            OneOffOption(
                option_code=data.option_code,
                label=label,
                quantity=data.quantity,
                unit_purchase_price=unit_price,
                purchase_price=unit_price * data.quantity,
                reference=data.reference,
                order_id=order.order_id,
                requested_at=order.created_at,
            )
        )
        return 202, order.ack()

    def cancel_one_off_option(self, line_id: str, data: CancelOptionIn) -> tuple[int, Any]:
        """Cancels the option ordered under `reference`, pending or active; cancelling it again answers the
        same. A pending order ends `rejected` (reason `cancelled`) and never activates the option."""
        line = self.state.line(line_id)
        options = [o for o in line.options if o.reference == data.reference and o.status != "rejected"]
        if not options:
            raise not_found("option", data.reference)
        option = options[-1]
        if option.status != "cancelled":
            option.status = "cancelled"
            option.cancelled_at = _now()
            order = self.state.orders.get(option.order_id)
            if order is not None and order.status == "pending":
                order.status = "rejected"
                order.reason = "cancelled"
                order.completed_at = option.cancelled_at
        return 200, option.model_dump(mode="json")

    def list_lines(self, query: dict[str, str]) -> tuple[int, Any]:
        lines = [
            line.view()
            for line in self.state.lines.values()
            if all(query.get(k) in (None, "", getattr(line, k)) for k in ("msisdn", "iccid", "status"))
        ]
        return 200, {"lines": lines}


# --- HTTP -----------------------------------------------------------------------------------------------

_INVALID_JSON = object()


async def _read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return _INVALID_JSON


def create_app() -> FastAPI:
    snaic = SnaicSimulator()
    sim = snaic.sim

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as http:
            snaic.http = http
            yield
            snaic.reset()
            snaic.http = None

    app = FastAPI(title="SNAIC simulator", version="1", lifespan=lifespan)
    app.state.snaic = snaic
    sim.install(app, on_reset=snaic.reset)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse(validation_error(fields).body(), status_code=422)

    @app.get("/_sim/config")
    async def get_config() -> SnaicConfig:
        return snaic.config

    @app.post("/_sim/config")
    async def set_config(request: Request) -> Response:
        data = await _read_body(request)
        if not isinstance(data, dict):
            return JSONResponse(validation_error([{"field": "body", "reason": "JSON object expected"}]).body(), 422)
        try:
            snaic.config = parse(SnaicConfig, {**snaic.config.model_dump(), **data})
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status_code)
        return JSONResponse(snaic.config.model_dump(mode="json"))

    @app.delete("/_sim/config")
    async def reset_config() -> SnaicConfig:
        snaic.config = SnaicConfig.from_env()
        return snaic.config

    async def handle(
        request: Request,
        op: str,
        action: Callable[[Any], tuple[int, Any]],
        *,
        path: dict[str, str] | None = None,
        mutating: bool = True,
    ) -> Response:
        data: Any = await _read_body(request) if mutating else dict(request.query_params)
        record = {**(path or {}), **(data if isinstance(data, dict) else {"body": "<invalid json>"})}

        async def effect() -> tuple[int, Any]:
            try:
                if data is _INVALID_JSON:
                    raise validation_error([{"field": "body", "reason": "invalid JSON"}])
                return action(data)
            except ApiError as exc:
                return exc.status_code, exc.body()

        key = request.headers.get("Idempotency-Key") if mutating else None
        return await sim.run(op, effect, key=key, request=record)

    @app.post("/lines")
    async def create_line(request: Request) -> Response:
        return await handle(request, "create_line", lambda d: snaic.create_line(parse(CreateLineIn, d)))

    @app.get("/lines")
    async def list_lines(request: Request) -> Response:
        return await handle(request, "list_lines", snaic.list_lines, mutating=False)

    @app.get("/lines/{line_id}")
    async def get_line(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "get_line",
            lambda _: (200, snaic.state.line(line_id).view()),
            path={"line_id": line_id},
            mutating=False,
        )

    @app.post("/lines/{line_id}/offer")
    async def change_offer(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "change_offer",
            lambda d: snaic.change_offer(line_id, parse(ChangeOfferIn, d)),
            path={"line_id": line_id},
        )

    @app.post("/lines/{line_id}/suspend")
    async def suspend_line(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "suspend_line",
            lambda d: snaic.suspend_line(line_id, parse(LineActionIn, d)),
            path={"line_id": line_id},
        )

    @app.post("/lines/{line_id}/resume")
    async def resume_line(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "resume_line",
            lambda d: snaic.resume_line(line_id, parse(LineActionIn, d)),
            path={"line_id": line_id},
        )

    @app.post("/lines/{line_id}/terminate")
    async def terminate_line(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "terminate_line",
            lambda d: snaic.terminate_line(line_id, parse(LineActionIn, d)),
            path={"line_id": line_id},
        )

    @app.post("/lines/{line_id}/one-off-options")
    async def add_one_off_option(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "add_one_off_option",
            lambda d: snaic.add_one_off_option(line_id, parse(OneOffOptionIn, d)),
            path={"line_id": line_id},
        )

    @app.post("/lines/{line_id}/one-off-options/cancel")
    async def cancel_one_off_option(request: Request, line_id: str) -> Response:
        return await handle(
            request,
            "cancel_one_off_option",
            lambda d: snaic.cancel_one_off_option(line_id, parse(CancelOptionIn, d)),
            path={"line_id": line_id},
        )

    @app.get("/orders/{order_id}")
    async def get_order(request: Request, order_id: str) -> Response:
        return await handle(
            request,
            "get_order",
            lambda _: (200, snaic.state.order(order_id).model_dump(mode="json")),
            path={"order_id": order_id},
            mutating=False,
        )

    return app
