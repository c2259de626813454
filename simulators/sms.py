"""An SMS gateway: `POST /v1/messages` `{to, text, sender}` with an `Idempotency-Key` (a resend under the
same key is answered from the record, never sent twice), `GET /v1/messages` lists what was sent.

A number that is not E.164-like (`+` optional, 8 to 15 digits) is refused for good (422 `invalid_recipient`),
as a real gateway refuses an unknown destination. Faults (`/_sim/faults`) use the op `send_sms`.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from simulators._sim import Simulator

NUMBER = re.compile(r"^\+?[1-9][0-9]{7,14}$")


def create_app() -> FastAPI:
    app = FastAPI(title="SMS gateway simulator", version="1")
    sim = Simulator()
    sent: list[dict[str, Any]] = []
    sim.install(app, on_reset=sent.clear)
    app.state.sim = sim

    @app.post("/v1/messages")
    async def send(request: Request) -> Response:
        body = await request.json()
        payload = body if isinstance(body, dict) else {}
        to = str(payload.get("to") or "")
        text = str(payload.get("text") or "")
        sender = str(payload.get("sender") or "")

        async def effect() -> tuple[int, Any]:
            if not NUMBER.match(to):
                return 422, {"error": "invalid_recipient", "message": f"destination number refused: {to!r}"}
            if not 1 <= len(text) <= 640:
                return 422, {"error": "invalid_text", "message": "text: 1 to 640 characters"}
            message = {
                "id": f"sms_{uuid.uuid4().hex[:16]}",
                "status": "accepted",
                "to": to,
                "text": text,
                "sender": sender,
                "at": datetime.now(UTC).isoformat(),
            }
            sent.append(message)
            return 201, {"id": message["id"], "status": "accepted"}

        key = request.headers.get("Idempotency-Key")
        return await sim.run("send_sms", effect, key=key, request=payload)

    @app.get("/v1/messages")
    async def list_messages(to: str | None = None) -> list[dict[str, Any]]:
        return [m for m in sent if to is None or m["to"] == to]

    return app
