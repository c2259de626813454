"""httpx plumbing shared by the REST clients: one place turns transport failures and status codes
into the error tree of `integrations.errors`."""

from __future__ import annotations

from typing import Any

import httpx

from integrations.errors import ConflictError, IntegrationError, NotFoundError, RejectedError, TransientError


def make_http_client(
    base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)


async def request_json(
    client: httpx.AsyncClient,
    system: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Any:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    try:
        response = await client.request(method, path, json=json, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise TransientError(system, "timeout", f"{method} {path} timed out") from exc
    except httpx.TransportError as exc:
        raise TransientError(system, "transport", f"{method} {path}: {type(exc).__name__}: {exc}") from exc
    return decode_response(system, response)


def decode_response(system: str, response: httpx.Response) -> Any:
    try:
        body: Any = response.json() if response.content else None
    except ValueError:
        body = response.text
    if response.status_code < 400:
        return body
    code = str(body.get("error", response.status_code)) if isinstance(body, dict) else str(response.status_code)
    message = str(body.get("message", response.reason_phrase)) if isinstance(body, dict) else response.reason_phrase
    error_class: type[IntegrationError]
    if response.status_code == 404:
        error_class = NotFoundError
    elif response.status_code == 409:
        error_class = ConflictError
    elif response.status_code == 429 or response.status_code >= 500:
        error_class = TransientError
    else:
        error_class = RejectedError
    raise error_class(system, code, message, status_code=response.status_code, body=body)
