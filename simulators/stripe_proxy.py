"""Fault proxy in front of localstripe, with Stripe's idempotency semantics.

Everything (any method and path, form body, headers including `Authorization`) is forwarded to the
localstripe at `STRIPE_PROXY_UPSTREAM`; `/_sim/*` is the simulators' test contract (SPEC §3).

localstripe ignores `Idempotency-Key`, so the proxy does what Stripe does
(docs.stripe.com/api/idempotent_requests): for a POST with a key, the first answer (status and body,
errors included) is stored for 24 h and replayed with `Idempotent-Replayed: true`; the same key with
other parameters, or on another endpoint, is a 400 `idempotency_error`; requests with one key are
serialised, so ten concurrent creates make one object. Keys are scoped by API key and `Stripe-Account`
header, as Stripe scopes them by account. Upstream 5xx answers are not stored (nothing ran to completion),
so a retry runs again.

localstripe has no Stripe Connect: it ignores the `Stripe-Account` header and keeps one store for every
key. The call record keeps the header as `_stripe_account` (absent: the platform's own account), so tests
see which account each request was sent to.

Fault ops are named from method and path: `POST /v1/payment_intents` → `create_payment_intent`,
`POST /v1/payment_intents/{id}/confirm` → `confirm_payment_intent`, `GET /v1/refunds/{id}` →
`retrieve_refund`, `GET /v1/customers` → `list_customers`. Faults: `error` → 500 `api_error`, `reject` →
402 `card_error`, `timeout` → hangs then 504, `lost_response` → forwarded and stored under its key, then
the connection drops (a retry with the key gets the stored answer: no second PaymentIntent).
`POST /_sim/idempotency/expire` forgets every stored key, as Stripe does 24 h after a key's first use.

Two localstripe gaps are bridged: its confirm endpoint refuses `off_session` (every confirm we send is
off-session), so that parameter is dropped before forwarding (the call record keeps what was sent); and its
PaymentIntent list refuses the `customer` filter, so `GET /v1/payment_intents?customer=` is answered here
from the full upstream list.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from simulators._sim import DroppedResponse, FaultMode, Simulator

DEFAULT_UPSTREAM = "http://127.0.0.1:8420"
IDEMPOTENCY_TTL_S = 24 * 3600

# Not forwarded either way: connection-level headers, and lengths/encodings httpx and Starlette recompute.
_HOP_BY_HOP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "date",
        "server",
    }
)
_SECRET_PARAMS = re.compile(r"^card\[(number|cvc)\]$")
_OBJECT_ID = re.compile(r"^[a-z]{2,5}_[A-Za-z0-9]{8,}$")  # pi_3Nk…, cus_Q…, re_…
_CONFIRM_PATH = re.compile(r"^/v1/payment_intents/[^/]+/confirm$")
# localstripe's PaymentIntent confirm takes only `payment_method` (and refuses it, "Not implemented").
_LOCALSTRIPE_UNSUPPORTED = {_CONFIRM_PATH: frozenset({"off_session"})}


def op_name(method: str, path: str) -> str:
    """`POST /v1/payment_intents/pi_1/confirm` → `confirm_payment_intent`; a generic slug otherwise."""
    parts = [p for p in path.strip("/").split("/") if p]
    method = method.upper()
    if len(parts) >= 2 and parts[0] == "v1" and parts[1].endswith("s"):
        resource, singular = parts[1], parts[1][:-1]
        if len(parts) == 2:
            return {"POST": f"create_{singular}", "GET": f"list_{resource}"}.get(method, f"{method.lower()}_{resource}")
        if len(parts) == 3:
            verb = {"GET": "retrieve", "POST": "update", "DELETE": "delete"}.get(method, method.lower())
            return f"{verb}_{singular}"
        if len(parts) == 4 and method == "POST":
            return f"{parts[3]}_{singular}"
    slug = "_".join(re.sub(r"[^a-z0-9]+", "_", p.lower()) for p in parts if not _OBJECT_ID.match(p))
    return f"{method.lower()}_{slug}".strip("_")


def stripe_error(status: int, error_type: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"type": error_type, "message": message, **extra}}


def fault_answer(mode: FaultMode) -> tuple[int, dict[str, Any]]:
    if mode is FaultMode.REJECT:
        return stripe_error(
            402,
            "card_error",
            "Your card was declined. (injected fault)",
            code="card_declined",
            decline_code="generic_decline",
        )
    if mode is FaultMode.TIMEOUT:
        return stripe_error(504, "api_error", "Simulated timeout (injected fault).")
    return stripe_error(500, "api_error", "Simulated server error (injected fault).")


@dataclass(frozen=True)
class StoredAnswer:
    method: str
    path: str
    fingerprint: str
    status_code: int
    body: bytes
    content_type: str
    stored_at: float

    def expired(self, now: float) -> bool:
        return now - self.stored_at > IDEMPOTENCY_TTL_S


class IdempotencyStore:
    """First answers by (API key, idempotency key), with one lock per key."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], StoredAnswer] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def clear(self) -> None:
        self._answers.clear()
        self._locks.clear()

    def lock(self, scope: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(scope, asyncio.Lock())

    def get(self, scope: tuple[str, str]) -> StoredAnswer | None:
        stored = self._answers.get(scope)
        if stored is not None and stored.expired(time.monotonic()):
            del self._answers[scope]
            return None
        return stored

    def put(self, scope: tuple[str, str], answer: StoredAnswer) -> None:
        self._answers[scope] = answer

    def expire(self) -> int:
        """Forgets every stored answer, as Stripe does 24 h after a key's first use; returns how many."""
        forgotten = len(self._answers)
        self._answers.clear()
        return forgotten


def _form_params(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return []


def _fingerprint(params: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(params)).encode()).hexdigest()


def _recorded(params: list[tuple[str, str]]) -> dict[str, Any]:
    return {k: ("***" if _SECRET_PARAMS.match(k) else v) for k, v in params}


def _api_key_scope(request: Request) -> str:
    scope = f"{request.headers.get('authorization', '')}|{request.headers.get('stripe-account', '')}"
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _forward_body(path: str, body: bytes, params: list[tuple[str, str]]) -> bytes:
    for pattern, dropped in _LOCALSTRIPE_UNSUPPORTED.items():
        if pattern.match(path) and any(k in dropped for k, _ in params):
            return urlencode([(k, v) for k, v in params if k not in dropped]).encode()
    return body


def create_app(upstream: str | None = None) -> FastAPI:
    upstream_url = (upstream or os.environ.get("STRIPE_PROXY_UPSTREAM") or DEFAULT_UPSTREAM).rstrip("/")
    sim = Simulator()
    store = IdempotencyStore()
    http: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
            http["upstream"] = client
            yield

    def upstream_client() -> httpx.AsyncClient:
        return http["upstream"]

    async def reset() -> None:
        store.clear()
        response = await upstream_client().delete(f"{upstream_url}/_config/data")
        response.raise_for_status()

    app = FastAPI(title="Stripe fault proxy (in front of localstripe)", lifespan=lifespan)
    app.state.sim = sim
    app.state.idempotency = store
    sim.install(app, on_reset=reset)

    @app.post("/_sim/idempotency/expire")
    async def expire_idempotency_keys() -> dict[str, int]:
        """Test contract: every idempotency key is forgotten at once, as 24 h after its first use."""
        return {"forgotten": store.expire()}

    async def forward(request: Request, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = f"{upstream_url}{path}"
        if request.url.query:
            url = f"{url}?{request.url.query}"
        try:
            response = await upstream_client().request(request.method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            status, payload = stripe_error(502, "api_error", f"localstripe unreachable: {type(exc).__name__}")
            return status, json.dumps(payload).encode(), {"content-type": "application/json"}
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        return response.status_code, response.content, out_headers

    async def list_intents_of_customer(request: Request) -> tuple[int, bytes, dict[str, str]]:
        """`GET /v1/payment_intents?customer=` as Stripe answers it (localstripe refuses the filter): every
        page read upstream, filtered, then paged by `limit` and `starting_after`."""
        query = request.query_params
        customer = query["customer"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        intents: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            upstream_query: dict[str, Any] = {"limit": 100, **({"starting_after": after} if after else {})}
            try:
                response = await upstream_client().get(
                    f"{upstream_url}/v1/payment_intents", params=upstream_query, headers=headers
                )
            except httpx.HTTPError as exc:
                status, payload = stripe_error(502, "api_error", f"localstripe unreachable: {type(exc).__name__}")
                return status, json.dumps(payload).encode(), {"content-type": "application/json"}
            if response.status_code != 200:
                return response.status_code, response.content, {"content-type": "application/json"}
            page = response.json()
            intents.extend(pi for pi in page["data"] if pi.get("customer") == customer)
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]
        if query.get("starting_after"):
            ids = [pi["id"] for pi in intents]
            start = ids.index(query["starting_after"]) + 1 if query["starting_after"] in ids else len(ids)
            intents = intents[start:]
        limit = int(query.get("limit") or 10)
        body = {
            "object": "list",
            "url": "/v1/payment_intents",
            "has_more": len(intents) > limit,
            "data": intents[:limit],
        }
        return 200, json.dumps(body).encode(), {"content-type": "application/json"}

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"], include_in_schema=False)
    async def proxy(request: Request, path: str) -> Response:
        path = "/" + path
        method = request.method.upper()
        op = op_name(method, path)
        body = await request.body()
        params = _form_params(body) if method == "POST" else list(request.query_params.multi_items())
        recorded = _recorded(params)
        if request.headers.get("stripe-account"):
            recorded["_stripe_account"] = request.headers["stripe-account"]
        key = request.headers.get("idempotency-key") if method == "POST" else None

        fault = await sim.apply_fault(op, key, recorded)
        if fault is not None and fault.mode is not FaultMode.LOST_RESPONSE:
            status, payload = fault_answer(fault.mode)
            sim.record(op, key=key, applied=False, status_code=status, request=recorded, fault=fault.mode)
            return JSONResponse(payload, status_code=status)
        lost = fault is not None

        if not key:
            if method == "GET" and path == "/v1/payment_intents" and request.query_params.get("customer"):
                status, content, headers = await list_intents_of_customer(request)
            else:
                status, content, headers = await forward(request, path, _forward_body(path, body, params))
            sim.record(
                op,
                key=None,
                applied=status < 400,
                status_code=status,
                request=recorded,
                fault=FaultMode.LOST_RESPONSE if lost else None,
            )
            return DroppedResponse() if lost else Response(content, status_code=status, headers=headers)

        scope = (_api_key_scope(request), key)
        fingerprint = _fingerprint(params)
        async with store.lock(scope):
            stored = store.get(scope)
            if stored is not None:
                if (stored.method, stored.path) != (method, path):
                    status, payload = stripe_error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used for the same endpoint they were first "
                        f"used for ('{stored.method} {stored.path}' vs '{method} {path}'). "
                        f"Try using a key other than '{key}' if you meant to execute a different request.",
                    )
                    sim.record(op, key=key, applied=False, status_code=status, request=recorded)
                    return JSONResponse(payload, status_code=status)
                if stored.fingerprint != fingerprint:
                    status, payload = stripe_error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                    )
                    sim.record(op, key=key, applied=False, status_code=status, request=recorded)
                    return JSONResponse(payload, status_code=status)
                sim.record(
                    op,
                    key=key,
                    applied=False,
                    replayed=True,
                    status_code=stored.status_code,
                    request=recorded,
                    fault=FaultMode.LOST_RESPONSE if lost else None,
                )
                if lost:
                    return DroppedResponse()
                return Response(
                    stored.body,
                    status_code=stored.status_code,
                    headers={
                        "content-type": stored.content_type,
                        "idempotency-key": key,
                        "idempotent-replayed": "true",
                    },
                )

            status, content, headers = await forward(request, path, _forward_body(path, body, params))
            if status < 500:
                store.put(
                    scope,
                    StoredAnswer(
                        method=method,
                        path=path,
                        fingerprint=fingerprint,
                        status_code=status,
                        body=content,
                        content_type=headers.get("content-type", "application/json"),
                        stored_at=time.monotonic(),
                    ),
                )
        sim.record(
            op,
            key=key,
            applied=status < 400,
            status_code=status,
            request=recorded,
            fault=FaultMode.LOST_RESPONSE if lost else None,
        )
        if lost:
            return DroppedResponse()
        return Response(content, status_code=status, headers={**headers, "idempotency-key": key})

    return app
