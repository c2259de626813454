"""Request body size limits, enforced before authentication and before any parsing.

An ASGI middleware: a request whose `Content-Length` announces more than its route's limit is answered 413
without one byte of its body being read; a body without a length (chunked) is counted as it streams and
cut off at the limit, so nothing larger than the limit is ever spooled to disk or held in memory. Routes
taking a file (`UPLOAD_PATHS`) have `max_upload_body_bytes`; every other route `max_request_body_bytes`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

UPLOAD_PATHS = frozenset(
    (
        "/api/v1/sims/import",
        "/api/v1/bulk-operations/import-details",
        "/portal/imports",
        "/portal/bulk/import-details",
        "/api/v1/onboardings/{onboarding_id}/documents",
        "/portal/onboardings/{onboarding_id}/documents",
    )
)
# The route templates as patterns: a path parameter is one segment.
_UPLOAD_PATTERNS = tuple(
    re.compile("^" + re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(path)) + "$") for path in UPLOAD_PATHS
)


def is_upload(path: str) -> bool:
    """The routes taking a file (`UPLOAD_PATHS`, path parameters matched as one segment)."""
    return any(pattern.match(path) for pattern in _UPLOAD_PATTERNS)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised from `receive` when the streamed body passes its limit: whoever was reading stops there."""


def body_limit(scope: Scope) -> int | None:
    state = getattr(getattr(scope.get("app"), "state", None), "simflow", None)
    if state is None:
        return None
    settings = state.settings
    limit: int = (
        settings.max_upload_body_bytes if is_upload(str(scope.get("path", ""))) else settings.max_request_body_bytes
    )
    return limit


async def _refuse(send: Send, limit: int) -> None:
    from api.problems import problem
    from domain.errors import ErrorCode

    response = problem(
        413,
        f"corps de requête trop volumineux (maximum {limit} octets)",
        code=ErrorCode.PAYLOAD_TOO_LARGE,
        headers=None,
    )
    response.headers["Connection"] = "close"
    await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class BodySizeLimitMiddleware:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = body_limit(scope) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _refuse(send, limit)  # the body is never read
            return

        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the application answers to the cut-off body, the answer is the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:  # BodyTooLarge itself, or whatever the application made of it
                raise
        if exceeded and not started:
            await _refuse(send, limit)
