"""The monthly billing run on a real Temporal server with the product's worker and database: one invoice per
company over the period's uninvoiced transactions, the same documents when the run is started again for the
same period, and the Schedule the worker creates."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.billing_contracts import BillingRunInput, Period
from domain.models import Company, Invoice, InvoiceCounter, Notification, Organisation, Transaction
from domain.money import Money
from domain.outbox_contracts import OutboxRelay
from domain.services import billing
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.conftest import SmtpSink
from workflows.billing_run import SCHEDULE_ID, BillingRunWorkflow, workflow_id
from workflows.outbox_relay import OutboxRelayWorkflow

pytestmark = pytest.mark.usefixtures("worker")


@pytest_asyncio.fixture
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_billing_run_issues_one_invoice_per_company_once_per_period(
    db: async_sessionmaker[AsyncSession], temporal_client: Client, settings: Settings
) -> None:
    period = Period.parse(datetime.now(UTC).strftime("%Y-%m")).label
    async with db.begin() as session:
        org = Organisation(name="Facturation", slug=f"run-{uuid.uuid4().hex[:10]}")
        session.add(org)
        await session.flush()
        companies = [
            Company(org_id=org.id, name=name, customer_reference=f"RUN-{uuid.uuid4().hex[:10]}")
            for name in ("Alpha", "Beta", "Gamma")
        ]
        session.add_all(companies)
        await session.flush()
        alpha, beta, gamma = (c.id for c in companies)
        org_id = org.id
        for company_id, amounts in ((alpha, (500, 250)), (beta, (1200,))):
            for amount in amounts:
                await billing.record_transaction(
                    session,
                    org_id=org_id,
                    company_id=company_id,
                    reference=f"run-test:{uuid.uuid4().hex}",
                    description="Frais de service",
                    retail=Money(amount),
                )
        # Gamma has only a transaction billed by CFAST: nothing for simflow to issue.
        await billing.record_transaction(
            session,
            org_id=org_id,
            company_id=gamma,
            reference=f"run-test:{uuid.uuid4().hex}",
            description="Recharge sur compte",
            retail=Money(100),
            billed_by=billing.BILLED_BY_CFAST,
        )

    async def run() -> list[tuple[str, int | None, int]]:
        result = await temporal_client.execute_workflow(
            BillingRunWorkflow.run,
            BillingRunInput(org_id=org_id, period=period),
            id=workflow_id(org_id, period),
            task_queue=settings.task_queue,
        )
        return sorted((i.company_id, i.number, i.total_minor) for i in result.invoices)

    first = await run()
    assert {c: total for c, _n, total in first} == {alpha: 750, beta: 1200}
    assert [n for _c, n, _t in first] == [1, 2]  # companies in id order, numbers without gap
    # Started again for the same period: the same documents, no new number.
    assert await run() == first
    async with db() as session:
        invoices = (await session.execute(select(Invoice).where(Invoice.org_id == org_id))).scalars().all()
        assert len(invoices) == 2 and {i.period_start.isoformat()[:7] for i in invoices if i.period_start} == {period}
        counter = await session.get(InvoiceCounter, org_id)
        assert counter is not None and counter.last_number == 2
        open_ = await session.execute(
            select(func.count())
            .select_from(Transaction)
            .where(Transaction.org_id == org_id, Transaction.invoice_id.is_(None))
        )
        assert open_.scalar_one() == 1  # Gamma's, billed by CFAST


async def test_the_worker_creates_the_monthly_billing_schedule(temporal_client: Client, settings: Settings) -> None:
    from starters.schedules import ensure_schedules

    await ensure_schedules(temporal_client, settings)
    await ensure_schedules(temporal_client, settings)  # twice is harmless
    described = await temporal_client.get_schedule_handle(SCHEDULE_ID).describe()
    calendar = described.schedule.spec.calendars[0]
    assert [r.start for r in calendar.day_of_month] == [1] and [r.start for r in calendar.hour] == [2]
    assert getattr(described.schedule.action, "workflow", None) == "MonthlyBillingWorkflow"


async def relay_mail(client: Client, settings: Settings) -> None:
    """One relay until the outboxes are empty (the product's workflow and activity, mail to the SMTP sink)."""
    await client.execute_workflow(
        OutboxRelayWorkflow.run,
        OutboxRelay(batch_size=50, lease_s=60, poll_s=0.2, stop_when_idle=True),
        id=f"outbox-relay-billing-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )


def pdf_text(sink: SmtpSink, mail: dict[str, object]) -> str:
    content = httpx.get(f"{sink.url}/messages/{mail['n']}/attachments/0", timeout=10).content
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    return " ".join(text.replace("\u202f", " ").replace("\u00a0", " ").split())


async def test_each_invoice_and_credit_note_is_mailed_once_with_its_pdf(
    db: async_sessionmaker[AsyncSession], temporal_client: Client, settings: Settings, smtp_sink: SmtpSink
) -> None:
    period = Period.parse(datetime.now(UTC).strftime("%Y-%m")).label
    tag = uuid.uuid4().hex[:10]
    async with db.begin() as session:
        org = Organisation(name="Facturation par mail", slug=f"mail-{tag}")
        session.add(org)
        await session.flush()
        alpha, beta, silent = (
            Company(org_id=org.id, name=name, customer_reference=f"MAIL-{name}-{tag}", billing_email=email)
            for name, email in (
                ("Alpha", f"compta-alpha-{tag}@example.test"),
                ("Beta", f"compta-beta-{tag}@example.test"),
                ("Sans-adresse", None),
            )
        )
        session.add_all([alpha, beta, silent])
        await session.flush()
        org_id, emails = org.id, {alpha.id: alpha.billing_email, beta.id: beta.billing_email}
        beta_charge_ref = f"mail-test:{tag}:beta"
        for company, amount, reference in (
            (alpha, 123456, f"mail-test:{tag}:alpha-1"),
            (alpha, 50, f"mail-test:{tag}:alpha-2"),
            (beta, 2000, beta_charge_ref),
            (silent, 700, f"mail-test:{tag}:silent"),
        ):
            await billing.record_transaction(
                session,
                org_id=org_id,
                company_id=company.id,
                reference=reference,
                description="Frais de service",
                retail=Money(amount),
            )
        silent_id = silent.id

    result = await temporal_client.execute_workflow(
        BillingRunWorkflow.run,
        BillingRunInput(org_id=org_id, period=period),
        id=workflow_id(org_id, period),
        task_queue=settings.task_queue,
    )
    issued = {i.company_id: i for i in result.invoices}
    assert set(issued) == {alpha.id, beta.id, silent_id}
    # Started again: the same documents, and no second mail row.
    await temporal_client.execute_workflow(
        BillingRunWorkflow.run,
        BillingRunInput(org_id=org_id, period=period),
        id=f"{workflow_id(org_id, period)}-again",
        task_queue=settings.task_queue,
    )
    # A refund after invoicing: a credit note, mailed to whoever received the invoice.
    async with db.begin() as session:
        charge = await billing.transaction_by_reference(session, beta_charge_ref)
        assert charge is not None
        reversal = await billing.record_reversal(
            session, charge, reference=f"{beta_charge_ref}:reversal", description="Remboursement"
        )
        note = await session.get(Invoice, reversal.invoice_id)
        assert note is not None and note.kind == billing.KIND_CREDIT_NOTE
        note_id, note_number = note.id, note.number

    await relay_mail(temporal_client, settings)

    for company_id, expected_total in ((alpha.id, "1 235,06 €"), (beta.id, "20,00 €")):
        invoice = issued[company_id]
        [mail] = [m for m in smtp_sink.messages(to=emails[company_id]) if str(m["subject"]).startswith("Votre facture")]
        assert mail["subject"] == f"Votre facture F-{invoice.number:06d}"
        attachments = mail["attachments"]
        assert isinstance(attachments, list) and [a["content_type"] for a in attachments] == ["application/pdf"]
        text = pdf_text(smtp_sink, mail)
        assert f"Facture F-{invoice.number:06d}" in text and f"Total TTC {expected_total}" in text
    beta_mails = smtp_sink.messages(to=emails[beta.id])
    assert len(beta_mails) == 2  # the invoice and the credit note, nothing twice
    [note_mail] = [m for m in beta_mails if m["subject"] == f"Votre avoir AV-{note_number:06d}"]
    assert "Total TTC -20,00 €" in pdf_text(smtp_sink, note_mail)
    async with db() as session:
        rows = {
            row.attachment_ref: row
            for row in (await session.scalars(select(Notification).where(Notification.org_id == org_id))).all()
        }
    assert set(rows) == {issued[alpha.id].invoice_id, issued[beta.id].invoice_id, issued[silent_id].invoice_id, note_id}
    assert all(row.attachment_kind == "invoice" for row in rows.values())
    # The company without a billing address: the document is not lost silently, its mail shows as failed.
    unsent = rows[issued[silent_id].invoice_id]
    assert unsent.sent_at is None and unsent.failed_at is not None and "aucune adresse" in (unsent.last_error or "")
