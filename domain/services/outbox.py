"""The outboxes the relay sends (`notifications`, `security_messages`: mail; `sim_messages`: SMS): claiming a
row, building its message, marking it sent or failed, and the attachment resolvers.

A row is pending while `sent_at` and `failed_at` are both empty. A relay claims it with one conditional
UPDATE (pending, and unclaimed or its claim expired): two relays racing for a row cannot both win. The
claim lasts `lease`; the mark (sent, failed, released) only applies while the claim is still the relay's.

Each mail carries a Message-ID derived from its row (`<notifications.42@sender-domain>`): the same on every
attempt, so a resend after a crash between the SMTP answer and the mark is recognisable by whoever reads it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import Invoice, Line, Notification, SecurityMessage, SimMessage
from domain.services.billing import INVOICE_ATTACHMENT
from domain.services.invoice_pdf import pdf_filename, render_invoice_pdf

# Sent in this order in each pass: account security first.
OUTBOX_MODELS: dict[str, type[Any]] = {
    "security_messages": SecurityMessage,
    "notifications": Notification,
    "sim_messages": SimMessage,
}
MAX_ERROR = 2000


class PermanentFailure(Exception):
    """The row cannot be sent, ever (no recipient, unknown attachment…): it is marked failed."""


# --- attachments --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


AttachmentResolver = Callable[[AsyncSession, str], Awaitable[Attachment]]
_RESOLVERS: dict[str, AttachmentResolver] = {}


def register_attachment_resolver(kind: str, resolver: AttachmentResolver) -> None:
    _RESOLVERS[kind] = resolver


def unregister_attachment_resolver(kind: str) -> None:
    _RESOLVERS.pop(kind, None)


async def invoice_attachment(session: AsyncSession, ref: str) -> Attachment:
    """An invoice or credit note as its PDF, rendered when the mail leaves (`attachment_ref` = its id)."""
    invoice = await session.get(Invoice, ref)
    if invoice is None:
        raise PermanentFailure(f"facture introuvable : {ref}")
    return Attachment(pdf_filename(invoice), "application/pdf", await render_invoice_pdf(session, ref))


register_attachment_resolver(INVOICE_ATTACHMENT, invoice_attachment)


async def resolve_attachment(session: AsyncSession, kind: str, ref: str) -> Attachment:
    resolver = _RESOLVERS.get(kind)
    if resolver is None:
        raise PermanentFailure(f"pièce jointe de type inconnu : {kind}")
    return await resolver(session, ref)


# --- claims -------------------------------------------------------------------------------------------


def _pending(model: type[Any]) -> Any:
    return (model.sent_at.is_(None), model.failed_at.is_(None))


async def claimable_ids(session: AsyncSession, model: type[Any], limit: int, now: datetime) -> list[int]:
    rows = await session.execute(
        select(model.id)
        .where(*_pending(model), or_(model.claimed_until.is_(None), model.claimed_until < now))
        .order_by(model.id)
        .limit(limit)
    )
    return [row_id for (row_id,) in rows]


def new_claim_token() -> str:
    return secrets.token_hex(16)


async def claim(
    session: AsyncSession, model: type[Any], row_id: int, token: str, now: datetime, lease: timedelta
) -> bool:
    """Takes the row for `lease` when it is pending and free; False when another relay holds or sent it."""
    result = await session.execute(
        update(model)
        .where(
            model.id == row_id,
            *_pending(model),
            or_(model.claimed_until.is_(None), model.claimed_until < now),
        )
        .values(claim_token=token, claimed_until=now + lease, attempts=model.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def _finish(session: AsyncSession, model: type[Any], row_id: int, token: str, **values: Any) -> bool:
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.claim_token == token, *_pending(model))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def mark_sent(session: AsyncSession, model: type[Any], row_id: int, token: str, now: datetime) -> bool:
    extra = {"status": "sent"} if model is SimMessage else {}
    return await _finish(session, model, row_id, token, sent_at=now, claimed_until=None, last_error=None, **extra)


async def mark_failed(
    session: AsyncSession, model: type[Any], row_id: int, token: str, now: datetime, error: str
) -> bool:
    extra = {"status": "failed"} if model is SimMessage else {}
    return await _finish(
        session, model, row_id, token, failed_at=now, claimed_until=None, last_error=error[:MAX_ERROR], **extra
    )


async def release(session: AsyncSession, model: type[Any], row_id: int, token: str, error: str) -> bool:
    """Gives the row back after a passing failure: the next pass retries it."""
    return await _finish(
        session, model, row_id, token, claim_token=None, claimed_until=None, last_error=error[:MAX_ERROR]
    )


# --- messages -----------------------------------------------------------------------------------------


def message_id(table: str, row_id: int, sender: str) -> str:
    """The stable Message-ID of an outbox row (RFC 5322 msg-id), in the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "simflow.local"
    return f"<{table}.{row_id}@{domain}>"


async def build_mail(session: AsyncSession, row: Notification | SecurityMessage, sender: str) -> EmailMessage:
    """The mail of an outbox row, its attachment resolved now (an invoice goes with its current PDF)."""
    if not row.recipient or "@" not in row.recipient:
        raise PermanentFailure("aucune adresse de destinataire")
    message = EmailMessage()
    name, address = parseaddr(sender)
    message["From"] = str(Address(display_name=name, addr_spec=address)) if name else address
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Message-ID"] = message_id(row.__tablename__, row.id, sender)
    message["Date"] = format_datetime(_aware(row.at))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row.body)
    if row.attachment_kind:
        attachment = await resolve_attachment(session, row.attachment_kind, row.attachment_ref or "")
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment.filename
        )
    return message


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def sms_recipient(session: AsyncSession, row: SimMessage) -> str:
    """The number of the line in service on the SIM (its latest line)."""
    msisdn = await session.scalar(
        select(Line.msisdn).where(Line.sim_id == row.sim_id).order_by(Line.created_at.desc()).limit(1)
    )
    if not msisdn:
        raise PermanentFailure("aucune ligne sur cette SIM")
    return msisdn
