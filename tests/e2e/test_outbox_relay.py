"""The outbox relay end to end: the real workflow on the test Temporal server, the worker in-process, mail to the
SMTP sink (a real SMTP server, simulators/smtp_sink.py) and SMS to the gateway simulator, both over the network.

Every test runs relays with `stop_when_idle` (they end once the outboxes are drained) and checks the effects:
the sink's messages by Message-ID, the rows' `sent_at` / `failed_at` / `attempts`, the simulator's records.
Rows other tests left pending are drained too; the assertions only look at this module's rows.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pypdf import PdfReader, PdfWriter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.enums import StaffRole
from domain.models import (
    Line,
    Notification,
    PasswordResetToken,
    SecurityMessage,
    SimMessage,
    StaffUser,
)
from domain.outbox_contracts import OutboxRelay, OutboxRelayResult
from domain.security import hash_password
from domain.services import outbox
from domain.services.accounts import AccountKeys
from domain.services.outbox import Attachment, register_attachment_resolver, unregister_attachment_resolver
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.mail import SmtpMailer
from tests.browser.portal_seed import PortalSeed, seed_portal
from tests.conftest import SmtpSink
from workflows.outbox_relay import OutboxRelayWorkflow

pytestmark = pytest.mark.usefixtures("worker")
Db = async_sessionmaker[AsyncSession]


@pytest_asyncio.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def seed(db: async_sessionmaker[AsyncSession]) -> PortalSeed:
    async with db.begin() as session:
        return await session.run_sync(seed_portal)


@pytest.fixture(autouse=True)
def clean_faults(smtp_sink: SmtpSink, sms_url: str) -> None:
    for url in (smtp_sink.url, sms_url):
        httpx.delete(f"{url}/_sim/faults", timeout=5).raise_for_status()


async def relay(client: Client, settings: Settings, *, batch_size: int = 50) -> OutboxRelayResult:
    return await client.execute_workflow(
        OutboxRelayWorkflow.run,
        OutboxRelay(batch_size=batch_size, lease_s=60, poll_s=0.2, stop_when_idle=True),
        id=f"outbox-relay-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )


async def notifications(
    db: async_sessionmaker[AsyncSession], org_id: str, recipients: list[str | None], **extra: Any
) -> list[int]:
    async with db.begin() as session:
        rows = [
            Notification(
                org_id=org_id,
                reference=f"test-outbox:{uuid.uuid4().hex}",
                recipient=recipient,
                subject="Reçu de votre recharge",
                body=f"Bonjour,\n\nVotre recharge est faite ({recipient}).\n",
                **extra,
            )
            for recipient in recipients
        ]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def rows_of(db: async_sessionmaker[AsyncSession], model: type[Any], ids: list[int]) -> list[Any]:
    async with db() as session:
        return list((await session.scalars(select(model).where(model.id.in_(ids)).order_by(model.id))).all())


def sink_messages(sink: SmtpSink, message_ids: set[str]) -> list[dict[str, Any]]:
    return [m for m in sink.messages() if m["message_id"] in message_ids]


def mail_id(table: str, row_id: int) -> str:
    return f"<{table}.{row_id}@simflow.local>"


async def test_two_relays_racing_send_each_row_once(
    db: async_sessionmaker[AsyncSession],
    seed: PortalSeed,
    temporal_client: Client,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    tag = secrets.token_hex(3)
    ids = await notifications(db, seed.org_a, [f"client-{tag}-{i}@example.test" for i in range(24)])
    async with db.begin() as session:
        resets = [
            SecurityMessage(kind="password_reset", recipient=f"staff-{tag}-{i}@example.test", subject="S", body="B")
            for i in range(6)
        ]
        session.add_all(resets)
        await session.flush()
        reset_ids = [row.id for row in resets]

    # Small pages: the two relays interleave their claims over many passes.
    first, second = await asyncio.gather(
        relay(temporal_client, settings, batch_size=4), relay(temporal_client, settings, batch_size=4)
    )

    expected = {mail_id("notifications", i) for i in ids} | {mail_id("security_messages", i) for i in reset_ids}
    received = sink_messages(smtp_sink, expected)
    assert sorted(m["message_id"] for m in received) == sorted(expected)  # each once, none missing
    assert all(m["duplicate_of"] is None for m in received)
    assert first.sent + second.sent >= len(expected)
    for row in [*await rows_of(db, Notification, ids), *await rows_of(db, SecurityMessage, reset_ids)]:
        assert row.sent_at is not None and row.failed_at is None
        assert row.attempts == 1, f"{row.__tablename__} {row.id} claimed {row.attempts} times"
        assert row.claim_token is not None and row.claimed_until is None
    by_id = {m["message_id"]: m for m in received}
    first_mail = by_id[mail_id("notifications", ids[0])]
    assert first_mail["envelope_to"] == [f"client-{tag}-0@example.test"]
    assert first_mail["subject"] == "Reçu de votre recharge"
    assert "Votre recharge est faite" in first_mail["text"]


async def test_sink_outage_then_recovery_sends_once(
    db: async_sessionmaker[AsyncSession],
    seed: PortalSeed,
    temporal_client: Client,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    [row_id] = await notifications(db, seed.org_a, [f"outage-{secrets.token_hex(3)}@example.test"])
    # The server goes away three times (421 at MAIL FROM): the relay's pass fails, Temporal retries it.
    for _ in range(3):
        httpx.post(f"{smtp_sink.url}/_sim/faults", json={"op": "mail", "mode": "error"}, timeout=5).raise_for_status()

    result = await relay(temporal_client, settings)

    [row] = await rows_of(db, Notification, [row_id])
    assert row.sent_at is not None and row.failed_at is None and row.last_error is None
    assert row.attempts == 4  # three deferred claims, then the send
    assert [m["message_id"] for m in sink_messages(smtp_sink, {mail_id("notifications", row_id)})] == [
        mail_id("notifications", row_id)
    ]
    assert result.sent >= 1
    faults = httpx.get(f"{smtp_sink.url}/_sim/calls", params={"op": "mail"}, timeout=5).json()
    assert [c["status_code"] for c in faults if c["fault"] == "error"][-3:] == [421, 421, 421]


async def test_permanent_failures_are_marked_not_retried(
    db: async_sessionmaker[AsyncSession],
    seed: PortalSeed,
    temporal_client: Client,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    invalid = f"nobody-{secrets.token_hex(3)}@mailbox.invalid"
    refused, no_recipient = await notifications(db, seed.org_a, [invalid, None])
    [unknown_attachment] = await notifications(
        db, seed.org_a, ["someone@example.test"], attachment_kind="no-such-kind", attachment_ref="1"
    )
    [missing_invoice] = await notifications(
        db, seed.org_a, ["someone@example.test"], attachment_kind="invoice", attachment_ref="no-such-invoice"
    )

    result = await relay(temporal_client, settings)

    row_ids = [refused, no_recipient, unknown_attachment, missing_invoice]
    rows = {row.id: row for row in await rows_of(db, Notification, row_ids)}
    for row in rows.values():
        assert row.failed_at is not None and row.sent_at is None
        assert row.attempts == 1
    assert "550" in rows[refused].last_error
    assert rows[no_recipient].last_error == "aucune adresse de destinataire"
    assert rows[unknown_attachment].last_error == "pièce jointe de type inconnu : no-such-kind"
    assert rows[missing_invoice].last_error == "facture introuvable : no-such-invoice"  # the real resolver's answer
    assert result.failed >= 4
    ids = {mail_id("notifications", i) for i in rows}
    assert sink_messages(smtp_sink, ids) == []
    # A later pass leaves them alone.
    await relay(temporal_client, settings)
    assert [row.attempts for row in await rows_of(db, Notification, list(rows))] == [1, 1, 1, 1]


def small_pdf(text: str) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": text})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_attachment_resolved_at_send_time(
    db: async_sessionmaker[AsyncSession],
    seed: PortalSeed,
    temporal_client: Client,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    seen: list[str] = []

    async def test_document(session: AsyncSession, ref: str) -> Attachment:
        seen.append(ref)
        return Attachment(f"document-{ref}.pdf", "application/pdf", small_pdf(f"Document {ref}"))

    register_attachment_resolver("test-document", test_document)
    try:
        ref = secrets.token_hex(4)
        [row_id] = await notifications(
            db, seed.org_a, ["compta@example.test"], attachment_kind="test-document", attachment_ref=ref
        )
        await relay(temporal_client, settings)
    finally:
        unregister_attachment_resolver("test-document")

    assert seen == [ref]
    [mail] = sink_messages(smtp_sink, {mail_id("notifications", row_id)})
    assert mail["attachments"] == [
        {
            "filename": f"document-{ref}.pdf",
            "content_type": "application/pdf",
            "size": len(small_pdf(f"Document {ref}")),
        }
    ]
    content = httpx.get(f"{smtp_sink.url}/messages/{mail['n']}/attachments/0", timeout=5).content
    pdf = PdfReader(io.BytesIO(content))
    assert len(pdf.pages) == 1 and pdf.metadata is not None and pdf.metadata.title == f"Document {ref}"


async def test_sms_through_the_gateway_once_even_when_its_answer_is_lost(
    db: async_sessionmaker[AsyncSession], seed: PortalSeed, temporal_client: Client, settings: Settings, sms_url: str
) -> None:
    async with db.begin() as session:
        line = (await session.scalars(select(Line).where(Line.org_id == seed.org_a, Line.sim_id.is_not(None)))).first()
        assert line is not None and line.sim_id is not None
        text = f"Votre forfait est renouvelé ({secrets.token_hex(3)})"
        message = SimMessage(
            org_id=seed.org_a, sim_id=line.sim_id, reference=f"test-sms:{uuid.uuid4().hex}", text=text, created_by="t"
        )
        session.add(message)
        await session.flush()
        row_id, msisdn = message.id, line.msisdn
    # The gateway sends the SMS, then the connection drops before its answer: the relay retries under the
    # same key, and the gateway answers from its record.
    httpx.post(f"{sms_url}/_sim/faults", json={"op": "send_sms", "mode": "lost_response"}, timeout=5)

    await relay(temporal_client, settings)

    [row] = await rows_of(db, SimMessage, [row_id])
    assert row.status == "sent" and row.sent_at is not None and row.attempts == 2
    sent = [m for m in httpx.get(f"{sms_url}/v1/messages", timeout=5).json() if m["text"] == text]
    assert len(sent) == 1 and sent[0]["to"] == msisdn and sent[0]["sender"] == settings.sms_sender
    calls = httpx.get(f"{sms_url}/_sim/calls", params={"op": "send_sms"}, timeout=5).json()
    mine = [c for c in calls if c["idempotency_key"] == f"outbox:sim_messages:{row_id}"]
    assert [(c["applied"], c["replayed"]) for c in mine] == [(True, False), (False, True)]


async def test_password_reset_mail_relayed_and_token_stored_as_hash_only(
    db: async_sessionmaker[AsyncSession],
    seed: PortalSeed,
    temporal_client: Client,
    settings: Settings,
    smtp_sink: SmtpSink,
    app_client: httpx.AsyncClient,
) -> None:
    email = f"reset-{secrets.token_hex(3)}@example.com"
    async with db.begin() as session:
        session.add(
            StaffUser(
                email=email,
                password_hash=hash_password("Ancien-mot-2026!"),
                role=StaffRole.ORG_STAFF,
                org_id=seed.org_a,
            )
        )
    response = await app_client.post("/api/v1/auth/password/forgot", json={"email": email})
    assert response.status_code == 202, response.text

    await relay(temporal_client, settings)

    [mail] = smtp_sink.messages(to=email)
    assert mail["subject"] == "Réinitialisation de votre mot de passe simflow"
    link = re.search(r"(\S+/portal/password/reset)#token=(\S+)", mail["text"])
    assert link is not None and link.group(1) == f"{settings.public_base_url}/portal/password/reset"
    token = link.group(2)
    async with db() as session:
        staff = await session.scalar(select(StaffUser).where(StaffUser.email == email))
        assert staff is not None
        [stored] = (
            await session.scalars(select(PasswordResetToken).where(PasswordResetToken.account_id == staff.id))
        ).all()
    # Only the keyed hash is kept: the token appears in no column of its row.
    assert stored.token_hash == AccountKeys.from_secret(settings.secrets_key.get_secret_value()).hash(token)
    assert all(token not in str(value) for value in vars(stored).values())

    response = await app_client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "Nouveau-mot-2026!"}
    )
    assert response.status_code == 204, response.text
    login = await app_client.post("/api/v1/auth/token", data={"username": email, "password": "Nouveau-mot-2026!"})
    assert login.status_code == 200, login.text


async def test_crash_between_send_and_mark_resends_under_the_same_message_id(
    db: Db, seed: PortalSeed, temporal_client: Client, settings: Settings, smtp_sink: SmtpSink
) -> None:
    """The residual window (docs/decisions.md, "Outbox relay"): a relay claims a row, the server accepts the mail,
    the relay dies before marking it. Once the claim expires the row is sent again, with the same Message-ID,
    so the duplicate is recognisable (the sink flags it)."""
    [row_id] = await notifications(db, seed.org_a, [f"crash-{secrets.token_hex(3)}@example.test"])
    async with db.begin() as session:
        assert await outbox.claim(session, Notification, row_id, "crashed-relay", datetime.now(UTC), timedelta(0))
    async with db() as session:
        row = await session.get(Notification, row_id)
        assert row is not None
        message = await outbox.build_mail(session, row, settings.mail_sender)
    await SmtpMailer("127.0.0.1", smtp_sink.smtp_port, timeout_s=5).send(message)  # … and no mark: the crash

    await relay(temporal_client, settings)

    [row] = await rows_of(db, Notification, [row_id])
    assert row.sent_at is not None and row.attempts == 2
    first, second = sink_messages(smtp_sink, {mail_id("notifications", row_id)})
    assert first["duplicate_of"] is None and second["duplicate_of"] == first["n"]
