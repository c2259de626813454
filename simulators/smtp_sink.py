"""The development mail sink: an SMTP server (aiosmtpd) that keeps every message in memory, and an HTTP page
to read them. `simflow dev` and the tests start it; the relay sends to it as to any SMTP server.

SMTP on `SMTP_SINK_SMTP_PORT` (env); HTTP on the simulator port:
* `GET /` — the messages as an HTML page (newest first);
* `GET /messages?to=` — the same as JSON (headers, text body, attachments, `duplicate_of` when a
  Message-ID arrives twice); `GET /messages/{n}.eml` the raw message; `GET /messages/{n}/attachments/{i}`;
* `DELETE /messages` — empties the sink; the test contract under `/_sim` (faults, calls, reset).

Recipients at a reserved `.invalid` domain are refused for good (550), as a real server refuses an unknown
mailbox. Faults use the SMTP command as op: `mail` (`error` answers 421, the server going away; `reject`
550), `rcpt` (451 / 550) and `data` (451 / 554).
"""

from __future__ import annotations

import email
import html
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from simulators._sim import FaultMode, Simulator

ANSWERS = {
    ("mail", FaultMode.ERROR): "421 4.3.0 service not available (injected fault)",
    ("mail", FaultMode.REJECT): "550 5.7.1 sender refused (injected fault)",
    ("rcpt", FaultMode.ERROR): "451 4.3.0 try again later (injected fault)",
    ("rcpt", FaultMode.REJECT): "550 5.1.1 mailbox unavailable (injected fault)",
    ("data", FaultMode.ERROR): "451 4.3.0 try again later (injected fault)",
    ("data", FaultMode.REJECT): "554 5.6.0 message refused (injected fault)",
}


class Sink:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.raw.clear()

    def fault(self, op: str) -> str | None:
        with self.lock:
            fault = self.sim.take_fault(op)
        if fault is None or (op, fault.mode) not in ANSWERS:
            return None
        answer = ANSWERS[(op, fault.mode)]
        self.sim.record(op, key=None, applied=False, status_code=int(answer[:3]), fault=fault.mode)
        return answer

    # aiosmtpd handler hooks (run in the controller's thread)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if answer := self.fault("mail"):
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if answer := self.fault("rcpt"):
            return answer
        if address.lower().rstrip(">").endswith(".invalid"):
            self.sim.record("rcpt", key=None, applied=False, status_code=550, request={"to": address})
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if answer := self.fault("data"):
            return answer
        raw = envelope.original_content or envelope.content or b""
        raw = raw if isinstance(raw, bytes) else raw.encode()
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            number = len(self.messages) + 1
            message_id = str(parsed.get("Message-ID", ""))
            first = next((m["n"] for m in self.messages if message_id and m["message_id"] == message_id), None)
            self.messages.append(_describe(number, parsed, envelope, first))
            self.raw.append(raw)
        self.sim.record("data", key=message_id or None, applied=True, status_code=250, request={"n": number})
        return "250 2.0.0 message accepted"


def _describe(number: int, parsed: EmailMessage, envelope: Envelope, duplicate_of: int | None) -> dict[str, Any]:
    body = parsed.get_body(preferencelist=("plain", "html"))
    attachments = [
        {
            "filename": part.get_filename(),
            "content_type": part.get_content_type(),
            "size": len(part.get_payload(decode=True) or b""),
        }
        for part in parsed.iter_attachments()
    ]
    return {
        "n": number,
        "received_at": datetime.now(UTC).isoformat(),
        "envelope_from": envelope.mail_from,
        "envelope_to": list(envelope.rcpt_tos),
        "message_id": str(parsed.get("Message-ID", "")),
        "from": str(parsed.get("From", "")),
        "to": str(parsed.get("To", "")),
        "subject": str(parsed.get("Subject", "")),
        "date": str(parsed.get("Date", "")),
        "text": body.get_content() if body is not None else "",
        "attachments": attachments,
        "duplicate_of": duplicate_of,
    }


def _page(messages: list[dict[str, Any]]) -> str:
    rows = []
    for m in reversed(messages):
        files = "".join(
            f'<li><a href="/messages/{m["n"]}/attachments/{i}">{html.escape(a["filename"] or "sans nom")}</a> '
            f"({html.escape(a['content_type'])}, {a['size']} octets)</li>"
            for i, a in enumerate(m["attachments"])
        )
        duplicate = f" — <strong>doublon du n° {m['duplicate_of']}</strong>" if m["duplicate_of"] else ""
        rows.append(
            f"<article><h2>{m['n']}. {html.escape(m['subject'])}</h2>"
            f"<p>À : {html.escape(m['to'])} — de : {html.escape(m['from'])} — {html.escape(m['date'])}"
            f"{duplicate}<br><small>{html.escape(m['message_id'])} — "
            f'<a href="/messages/{m["n"]}.eml">source</a></small></p>'
            f"<pre>{html.escape(m['text'])}</pre>{f'<ul>{files}</ul>' if files else ''}</article>"
        )
    body = "".join(rows) or "<p>Aucun message reçu.</p>"
    return (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Messages envoyés — simflow</title>'
        "<style>body{font-family:sans-serif;max-width:60rem;margin:auto}article{border-top:1px solid #ccc}"
        "pre{white-space:pre-wrap}</style></head>"
        f"<body><h1>Messages envoyés ({len(messages)})</h1>{body}</body></html>"
    )


def create_app() -> FastAPI:
    smtp_port = int(os.environ.get("SMTP_SINK_SMTP_PORT", "8025"))
    sim = Simulator()
    sink = Sink(sim)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        controller = Controller(sink, hostname="127.0.0.1", port=smtp_port, server_hostname="smtp-sink.simflow")
        controller.start()
        try:
            yield
        finally:
            controller.stop()

    app = FastAPI(title="SMTP sink", version="1", lifespan=lifespan)
    sim.install(app, on_reset=sink.clear)
    app.state.sim = sim

    def snapshot(to: str | None = None) -> list[dict[str, Any]]:
        with sink.lock:
            messages = list(sink.messages)
        if to is None:
            return messages
        wanted = to.lower()
        return [m for m in messages if wanted in (a.lower() for a in m["envelope_to"])]

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _page(snapshot())

    @app.get("/messages")
    async def list_messages(to: str | None = None) -> list[dict[str, Any]]:
        return snapshot(to)

    @app.delete("/messages", status_code=204)
    async def clear() -> None:
        sink.clear()

    def raw_message(number: int) -> EmailMessage:
        with sink.lock:
            if not 1 <= number <= len(sink.raw):
                raise HTTPException(404, "no such message")
            raw = sink.raw[number - 1]
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @app.get("/messages/{number}.eml")
    async def eml(number: int) -> Response:
        return Response(raw_message(number).as_bytes(), media_type="message/rfc822")

    @app.get("/messages/{number}/attachments/{index}")
    async def attachment(number: int, index: int) -> Response:
        parts = list(raw_message(number).iter_attachments())
        if not 0 <= index < len(parts):
            raise HTTPException(404, "no such attachment")
        part = parts[index]
        return Response(part.get_payload(decode=True) or b"", media_type=part.get_content_type())

    return app
