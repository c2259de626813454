"""SMTP client of the outbox relay (stdlib `smtplib`, run in a thread: one connection per message).

Failures map onto `integrations.errors`: a 5xx answer to the sender, a recipient or the data is the
server's final word on that message (`RejectedError`); connection failures, timeouts and 4xx answers
may pass (`TransientError`). Refused credentials (535) are a configuration problem of every message,
not of this one: transient, so nothing is marked failed while the configuration is fixed.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal

from integrations.errors import RejectedError, TransientError

SYSTEM = "smtp"
Security = Literal["none", "starttls", "tls"]


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)


def _answer(code: int, message: bytes | str, what: str) -> TransientError | RejectedError:
    text = f"{what}: {code} {_text(message)}"
    if 500 <= code < 600:
        return RejectedError(SYSTEM, str(code), text, status_code=code)
    return TransientError(SYSTEM, str(code), text, status_code=code)


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "none",
        username: str = "",
        password: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=ssl.create_default_context())
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        return client

    def _send(self, message: EmailMessage) -> None:
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password)
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise TransientError(SYSTEM, "authentication", f"login refused: {exc.smtp_code}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            worst = max(codes) if codes else 550
            details = "; ".join(f"{to}: {code} {_text(text)}" for to, (code, text) in exc.recipients.items())
            raise _answer(worst, details, "recipient refused") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise _answer(exc.smtp_code, exc.smtp_error, "sender refused") from exc
        except smtplib.SMTPResponseException as exc:
            raise _answer(exc.smtp_code, exc.smtp_error, "message refused") from exc
        except (smtplib.SMTPException, OSError) as exc:  # connection refused or dropped, timeout, TLS
            raise TransientError(SYSTEM, "transport", f"{type(exc).__name__}: {exc}") from exc
        if refused:  # some recipients accepted: the message went out, the others are reported
            details = "; ".join(f"{to}: {code} {_text(text)}" for to, (code, text) in refused.items())
            raise RejectedError(SYSTEM, "partial", f"some recipients refused: {details}")
