"""SMS gateway client: `POST /v1/messages` with an `Idempotency-Key`, so a message sent again after a
crash (the relay's retry) is answered from the gateway's record instead of being sent twice.

The simulator (`simulators/sms.py`) implements this interface; a real gateway (an operator's or an SMS
provider's HTTP API) goes behind the same methods.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel

from integrations._http import make_http_client, request_json

SYSTEM = "sms"


class SmsAccepted(BaseModel):
    id: str
    status: str


class SmsGatewayClient:
    def __init__(self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = make_http_client(base_url, timeout_s, transport)

    async def __aenter__(self) -> SmsGatewayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def send(self, *, to: str, text: str, sender: str, idempotency_key: str) -> SmsAccepted:
        body: Any = await request_json(
            self._client,
            SYSTEM,
            "POST",
            "/v1/messages",
            json={"to": to, "text": text, "sender": sender},
            idempotency_key=idempotency_key,
        )
        return SmsAccepted.model_validate(body)
