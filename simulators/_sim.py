"""Test contract shared by every simulator: fault injection, call records, idempotency replay.

`POST /_sim/faults`, `DELETE /_sim/faults`, `GET /_sim/calls?op=`, `POST /_sim/reset` (SPEC §3).
A simulator route wraps its effect in `Simulator.run(...)`, which applies the next queued fault
for that operation, replays the stored answer for a known idempotency key, and records the call.
Beyond SPEC §3, a fault may carry `"match": "text"`: only a call whose idempotency key or request holds
the text takes it, so tests sharing one simulator each aim faults at their own accounts and payments.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class FaultMode(StrEnum):
    ERROR = "error"  # 503, nothing applied: a retryable server failure
    REJECT = "reject"  # 422, nothing applied: a business refusal, not retryable
    TIMEOUT = "timeout"  # hangs `latency_ms` (default 30 s) then 504, nothing applied
    LOST_RESPONSE = "lost_response"  # held `latency_ms` (default 0), the effect applied, then the connection drops
    LATENCY = "latency"  # waits `latency_ms`, then behaves normally


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str = Field(min_length=1)
    mode: FaultMode
    times: int = Field(default=1, ge=1, le=1_000_000)
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    # Only calls whose idempotency key or request holds this text take the fault (a test's own account,
    # payment or workflow id): calls of other tests sharing the simulator pass untouched.
    match: str | None = Field(default=None, min_length=1)

    def applies_to(self, op: str, subject: str) -> bool:
        return (self.op in (op, "*")) and (self.match is None or self.match in subject)


class CallRecord(BaseModel):
    op: str
    at: datetime
    idempotency_key: str | None
    applied: bool
    replayed: bool = False
    fault: FaultMode | None = None
    status_code: int
    request: dict[str, Any] = Field(default_factory=dict)


class DroppedResponse(Response):
    """Starts a response, sends part of the body, then aborts: the client sees a broken connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"4096"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"lost', "more_body": True})
        raise ConnectionAbortedError("simulated lost response")


def call_subject(key: str | None, request: Any) -> str:
    """What a fault's `match` is looked for in: the idempotency key and the request, as JSON."""
    return f"{key or ''} {json.dumps(request, sort_keys=True, default=str, ensure_ascii=False)}"


def _fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class _StoredAnswer(BaseModel):
    fingerprint: str
    status_code: int
    body: Any


Effect = Callable[[], Awaitable[tuple[int, Any]]]
# Called by `POST /_sim/reset` after the contract state is cleared; may be a coroutine function.
OnReset = Callable[[], Awaitable[None] | None]


def _applied_by_status(status: int, _body: Any) -> bool:
    return status < 400


class Simulator:
    """State of one simulator's test contract. The business state lives in the simulator itself."""

    default_timeout_ms = 30_000

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.calls: list[CallRecord] = []
        self._answers: dict[tuple[str, str], _StoredAnswer] = {}
        self._key_locks: dict[tuple[str, str], asyncio.Lock] = {}

    def reset(self) -> None:
        self.faults.clear()
        self.calls.clear()
        self._answers.clear()
        self._key_locks.clear()

    def take_fault(self, op: str, subject: str = "") -> Fault | None:
        """The next fault queued for `op` whose `match` (if any) is in `subject` (the call's key and
        request); a wildcard (`*`) fault applies only when none names the op."""
        candidates = [f for f in self.faults if f.applies_to(op, subject)]
        fault = next((f for f in candidates if f.op == op), None) or next(iter(candidates), None)
        if fault is None:
            return None
        fault.times -= 1
        if fault.times <= 0:
            self.faults.remove(fault)
        return fault

    def record(
        self,
        op: str,
        *,
        key: str | None,
        applied: bool,
        status_code: int,
        request: dict[str, Any] | None = None,
        fault: FaultMode | None = None,
        replayed: bool = False,
    ) -> None:
        self.calls.append(
            CallRecord(
                op=op,
                at=datetime.now(UTC),
                idempotency_key=key,
                applied=applied,
                replayed=replayed,
                fault=fault,
                status_code=status_code,
                request=request or {},
            )
        )

    async def apply_fault(self, op: str, key: str | None = None, request: Any = None) -> Fault | None:
        """Waits out latency faults; returns the fault that must stop the call, if any."""
        fault = self.take_fault(op, call_subject(key, request))
        if fault is None:
            return None
        if fault.mode is FaultMode.LATENCY:
            await asyncio.sleep(fault.latency_ms / 1000)
            return None
        if fault.mode is FaultMode.LOST_RESPONSE:
            # Held `latency_ms` (default 0) before the effect: a slow call whose answer is then lost.
            await asyncio.sleep(fault.latency_ms / 1000)
            return fault
        if fault.mode is FaultMode.TIMEOUT:
            await asyncio.sleep((fault.latency_ms or self.default_timeout_ms) / 1000)
        return fault

    async def run(
        self,
        op: str,
        effect: Effect,
        *,
        key: str | None = None,
        request: dict[str, Any] | None = None,
        error_body: Callable[[FaultMode], tuple[int, Any]] | None = None,
        replay_by_key: bool = True,
        is_applied: Callable[[int, Any], bool] | None = None,
    ) -> Response:
        """Runs one mutating or reading operation under the fault and idempotency contract.

        `effect` returns (status_code, json_body). With a key, the first answer is stored and
        replayed for later calls with the same key; another payload under the same key is a 409.
        `replay_by_key=False` only records the key (a system without request idempotency, like
        CGRateS); `is_applied` decides from (status, body) whether the effect happened (default:
        status < 400; JSON-RPC systems answer errors with HTTP 200).
        """
        applied_by = is_applied or _applied_by_status
        request = request or {}
        fault = await self.apply_fault(op, key, request)
        if fault is not None and fault.mode is not FaultMode.LOST_RESPONSE:
            status, body = (error_body or _default_error_body)(fault.mode)
            self.record(op, key=key, applied=False, status_code=status, request=request, fault=fault.mode)
            return JSONResponse(body, status_code=status)

        if key is None or not replay_by_key:
            status, body = await effect()
            applied = applied_by(status, body)
        else:
            lock = self._key_locks.setdefault((op, key), asyncio.Lock())
            async with lock:
                stored = self._answers.get((op, key))
                fingerprint = _fingerprint(request)
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        body = {
                            "error": "idempotency_key_reused",
                            "message": f"key {key!r} was used with a different request",
                        }
                        self.record(op, key=key, applied=False, status_code=409, request=request)
                        return JSONResponse(body, status_code=409)
                    self.record(
                        op, key=key, applied=False, replayed=True, status_code=stored.status_code, request=request
                    )
                    return JSONResponse(stored.body, status_code=stored.status_code)
                status, body = await effect()
                applied = applied_by(status, body)
                if status < 500:
                    self._answers[(op, key)] = _StoredAnswer(fingerprint=fingerprint, status_code=status, body=body)

        fault_mode = fault.mode if fault is not None else None
        self.record(op, key=key, applied=applied, status_code=status, request=request, fault=fault_mode)
        if fault_mode is FaultMode.LOST_RESPONSE:
            return DroppedResponse()
        return JSONResponse(body, status_code=status)

    def router(self, on_reset: OnReset | None = None) -> APIRouter:
        router = APIRouter(prefix="/_sim", tags=["simulator test contract"])

        @router.post("/faults", status_code=201)
        async def add_fault(fault: Fault) -> Fault:
            self.faults.append(fault)
            return fault

        @router.delete("/faults", status_code=204)
        async def clear_faults() -> None:
            self.faults.clear()

        @router.get("/calls")
        async def list_calls(op: str | None = Query(default=None)) -> list[CallRecord]:
            return [c for c in self.calls if op is None or c.op == op]

        @router.post("/reset", status_code=204)
        async def reset() -> None:
            self.reset()
            if on_reset is not None:
                outcome = on_reset()
                if inspect.isawaitable(outcome):
                    await outcome

        return router

    def install(self, app: FastAPI, on_reset: OnReset | None = None) -> None:
        app.include_router(self.router(on_reset))

        @app.get("/_sim/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}


def _default_error_body(mode: FaultMode) -> tuple[int, Any]:
    if mode is FaultMode.REJECT:
        return 422, {"error": "rejected", "message": "request rejected by the simulator (injected fault)"}
    if mode is FaultMode.TIMEOUT:
        return 504, {"error": "timeout", "message": "simulated timeout (injected fault)"}
    return 503, {"error": "unavailable", "message": "simulated server error (injected fault)"}
