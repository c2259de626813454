"""Transactions, invoices and credit notes on the real database (SQLite; PostgreSQL with
SIMFLOW_TEST_BACKEND=postgres): gapless numbering under concurrency, the period invoice, the credit note after
a refund, the void rules, and the PDF read back as text."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.billing_contracts import Period
from domain.enums import InvoiceStatus
from domain.errors import IllegalTransition
from domain.models import Company, EndUser, Invoice, InvoiceCounter, Notification, Organisation, Transaction
from domain.money import Money
from domain.services import billing
from domain.services.invoice_pdf import render_invoice_pdf
from infra.db import create_engine, create_sessionmaker


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 80, 160)).save(out, format="PNG")
    return out.getvalue()


LOGO = png(95, 95)


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def tenant(db: async_sessionmaker[AsyncSession], companies: int = 1) -> tuple[str, list[str]]:
    slug = f"bill-{uuid.uuid4().hex[:10]}"
    async with db.begin() as session:
        org = Organisation(
            name="Acola Mobile",
            slug=slug,
            brand_name="Acola Mobile",
            legal_name="Sarl 1.0 Acola",
            address="61 rue de Lyon, 75012 Paris",
            siret="74981255800017",
            vat_number="FR23749812558",
            customer_service_phone="09 67 40 91 57",
            customer_service_email="brc@bisatel.com",
            logo=LOGO,
        )
        session.add(org)
        await session.flush()
        ids = []
        for n in range(companies):
            company = Company(
                org_id=org.id,
                name=f"Transports Martin {n}",
                customer_reference=f"BILL-{uuid.uuid4().hex[:10]}",
                address="12 avenue des Gobelins, 75005 Paris",
            )
            session.add(company)
            await session.flush()
            ids.append(company.id)
        return org.id, ids


async def charge(
    db: async_sessionmaker[AsyncSession], org_id: str, company_id: str, amount_minor: int, **kwargs: object
) -> str:
    async with db.begin() as session:
        t = await billing.record_transaction(
            session,
            org_id=org_id,
            company_id=company_id,
            reference=f"test:{uuid.uuid4().hex}",
            description="Recharge DATA 1 Go",
            retail=Money(amount_minor),
            **kwargs,  # type: ignore[arg-type]
        )
        return t.id


def this_period() -> billing.Period:
    return Period.parse(datetime.now(UTC).strftime("%Y-%m"))


async def run_period(db: async_sessionmaker[AsyncSession], org_id: str, company_id: str) -> Invoice | None:
    async with db() as session:
        invoice = await billing.issue_period_invoice(session, org_id, company_id, this_period())
        if invoice is None:
            await session.rollback()
            return None
        await session.commit()
        return invoice


async def test_record_transaction_is_idempotent_and_computes_included_vat(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, (company_id,) = await tenant(db)
    async with db.begin() as session:
        kwargs = {"org_id": org_id, "company_id": company_id, "reference": f"once:{org_id}", "description": "x"}
        first = await billing.record_transaction(session, retail=Money(120), **kwargs)  # type: ignore[arg-type]
        again = await billing.record_transaction(session, retail=Money(999), **kwargs)  # type: ignore[arg-type]
        assert again.id == first.id
        assert (first.retail_minor, first.tax_minor, first.tax_rate_bp) == (120, 20, 2000)
        credit = await billing.record_transaction(
            session, org_id=org_id, company_id=company_id, reference=f"c:{org_id}", description="y", retail=Money(-120)
        )
        assert credit.tax_minor == -20


async def test_concurrent_issuing_numbers_without_gap_or_duplicate(db: async_sessionmaker[AsyncSession]) -> None:
    """Twenty documents issued at once, some rolled back: the numbers issued are exactly 1..n."""
    org_id, companies = await tenant(db, companies=4)
    transaction_ids = [await charge(db, org_id, companies[n % 4], 100) for n in range(20)]

    async def issue(n: int) -> int | None:
        for _ in range(50):  # SQLite answers "database is locked" under contention: try again
            try:
                async with db() as session:
                    transaction = await session.get(Transaction, transaction_ids[n])
                    assert transaction is not None
                    invoice = await billing.issue_invoice(
                        session,
                        org_id=org_id,
                        company_id=transaction.company_id,
                        reference=f"concurrent:{org_id}:{n}",
                        transactions=[transaction],
                    )
                    number = invoice.number
                    if n % 5 == 0:  # abandoned issue: its number must go back
                        await session.rollback()
                        return None
                    await session.commit()
                    return number
            except OperationalError:
                await asyncio.sleep(0.05)
        raise AssertionError("never issued")

    numbers = [n for n in await asyncio.gather(*(issue(n) for n in range(20))) if n is not None]
    assert sorted(numbers) == list(range(1, 17))
    async with db() as session:
        stored = (await session.execute(select(Invoice.number).where(Invoice.org_id == org_id))).scalars().all()
        counter = await session.get(InvoiceCounter, org_id)
    assert sorted(stored) == list(range(1, 17)) and counter is not None and counter.last_number == 16


async def test_period_invoice_is_issued_once_over_uninvoiced_non_voided(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, (company_id, other_id) = await tenant(db, companies=2)
    await charge(db, org_id, company_id, 500)
    await charge(db, org_id, company_id, 1_234_56)
    voided = await charge(db, org_id, company_id, 700)
    await charge(db, org_id, company_id, 300, billed_by=billing.BILLED_BY_CFAST)  # CFAST bills it
    await charge(db, org_id, company_id, 9000, billed_by=billing.BILLED_BY_NONE)  # a wallet funding: no document
    async with db.begin() as session:
        t = await session.get(Transaction, voided)
        assert t is not None
        await billing.void_transaction(session, t, "staff@test")

    async with db() as session:
        assert await billing.companies_to_bill(session, org_id, this_period()) == [company_id]
    invoice = await run_period(db, org_id, company_id)
    assert invoice is not None and invoice.number == 1
    assert invoice.total_minor == 500 + 1_234_56 and invoice.tax_minor == 83 + 20_576
    again = await run_period(db, org_id, company_id)
    assert again is not None and again.id == invoice.id
    assert await run_period(db, org_id, other_id) is None  # nothing to bill: no document, no number used
    await charge(db, org_id, other_id, 100)
    other = await run_period(db, org_id, other_id)
    assert other is not None and other.number == 2


async def test_void_only_uninvoiced_transactions_of_the_run(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, (company_id,) = await tenant(db)
    invoiced = await charge(db, org_id, company_id, 100)
    await run_period(db, org_id, company_id)
    cfast = await charge(db, org_id, company_id, 100, billed_by=billing.BILLED_BY_CFAST)
    prepaid = await charge(db, org_id, company_id, 5000, billed_by=billing.BILLED_BY_NONE)
    open_one = await charge(db, org_id, company_id, 100)
    for refused in (invoiced, cfast, prepaid):
        async with db.begin() as session:
            t = await session.get(Transaction, refused)
            assert t is not None
            with pytest.raises(IllegalTransition):
                await billing.void_transaction(session, t, "staff@test")
    async with db.begin() as session:
        t = await session.get(Transaction, open_one)
        assert t is not None
        done = await billing.void_transaction(session, t, "staff@test")
        assert done.voided and done.voided_by == "staff@test"
    # A voided transaction is never invoiced.
    assert await run_period(db, org_id, company_id) is not None  # the earlier invoice, answered again
    async with db() as session:
        t = await session.get(Transaction, open_one)
        assert t is not None and t.invoice_id is None


async def test_refund_after_invoicing_issues_a_credit_note(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, (company_id,) = await tenant(db)
    original_id = await charge(db, org_id, company_id, 1000)
    invoice = await run_period(db, org_id, company_id)
    assert invoice is not None
    async with db.begin() as session:
        original = await session.get(Transaction, original_id)
        assert original is not None
        reversal = await billing.record_reversal(session, original, reference=f"rev:{original_id}", description="Remb.")
        again = await billing.record_reversal(session, original, reference=f"rev:{original_id}", description="Remb.")
        assert again.id == reversal.id
        assert reversal.retail_minor == -1000 and reversal.tax_minor == -167
        note = await session.get(Invoice, reversal.invoice_id)
        assert note is not None
        assert note.kind == billing.KIND_CREDIT_NOTE and note.credited_invoice_id == invoice.id
        assert (note.number, note.total_minor, note.tax_minor) == (invoice.number + 1, -1000, -167)
        assert billing.document_number(note) == f"AV-{note.number:06d}"
    # A refund before invoicing: both movements stay for the next run, which nets them.
    second = await charge(db, org_id, company_id, 400)
    async with db.begin() as session:
        t = await session.get(Transaction, second)
        assert t is not None
        early = await billing.record_reversal(session, t, reference=f"rev:{second}", description="Remb.")
        assert early.invoice_id is None
        notes = await session.execute(
            select(func.count()).select_from(Invoice).where(Invoice.org_id == org_id, Invoice.kind == "credit_note")
        )
        assert notes.scalar_one() == 1


async def test_invoice_pdf_carries_number_totals_and_footer(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, (company_id,) = await tenant(db)
    await charge(db, org_id, company_id, 1_234_56)
    await charge(db, org_id, company_id, 50)
    invoice = await run_period(db, org_id, company_id)
    assert invoice is not None
    async with db() as session:
        pdf = await render_invoice_pdf(session, invoice.id)
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.pages[0].images, "the organisation's logo"
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.replace("\u202f", " ").replace("\u00a0", " ").split())
    assert f"Facture F-{invoice.number:06d}" in flat
    assert "Total TTC 1 235,06 €" in flat  # 1 234,56 € + 0,50 €
    assert "TVA 205,84 €" in flat and "Total HT 1 029,22 €" in flat
    for footer in ("Sarl 1.0 Acola", "61 rue de Lyon, 75012 Paris", "74981255800017", "FR23749812558"):
        assert footer in flat, footer
    assert "09 67 40 91 57" in flat and "brc@bisatel.com" in flat
    assert "ICS SEPA" not in flat  # the organisation has none
    assert "Transports Martin 0" in flat


async def test_invoice_pdf_of_a_branded_organisation_carries_its_logo_and_footer_banner(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Seed 002: the logo at the top of the invoice, the 760 × 95 banner at the bottom, as uploaded, and the ICS."""
    org_id, (company_id,) = await tenant(db)
    async with db.begin() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None
        org.footer_banner = png(760, 95)
        org.sepa_ics = "FR72ZZZ123456"
    await charge(db, org_id, company_id, 990)
    invoice = await run_period(db, org_id, company_id)
    assert invoice is not None
    async with db() as session:
        pdf = await render_invoice_pdf(session, invoice.id)
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    assert sorted(img.image.size for img in page.images) == [(95, 95), (760, 95)]
    assert "ICS SEPA : FR72ZZZ123456" in page.extract_text()


async def test_numbering_survives_a_status_change(db: async_sessionmaker[AsyncSession]) -> None:
    """The paid receipt path (status PAID, payment reference) numbers in the same series."""
    org_id, (company_id,) = await tenant(db)
    first = await charge(db, org_id, company_id, 100, billed_by=billing.BILLED_BY_RECEIPT)
    async with db.begin() as session:
        t = await session.get(Transaction, first)
        assert t is not None
        paid = await billing.issue_invoice(
            session,
            org_id=org_id,
            company_id=company_id,
            reference=f"receipt:{first}",
            transactions=[t],
            status=InvoiceStatus.PAID,
            payment_reference="pi_123",
        )
        assert paid.number == 1 and paid.due_on is None and t.invoice_id == paid.id


async def test_each_document_queues_its_mail_in_the_issuing_transaction(db: async_sessionmaker[AsyncSession]) -> None:
    """The receipt of an end user's top-up goes to the end user, its credit note to the same address; an issue
    rolled back leaves no mail; an issue answered again by its reference writes no second mail."""
    org_id, [company_id] = await tenant(db)
    user_email = f"usager-{uuid.uuid4().hex[:8]}@example.test"
    async with db.begin() as session:
        company = await session.get(Company, company_id)
        assert company is not None
        company.billing_email = "compta@example.test"
        user = EndUser(org_id=org_id, company_id=company_id, email=user_email, full_name="Léa Martin")
        session.add(user)
        await session.flush()
        user_id = user.id
    charge_id = await charge(db, org_id, company_id, 500, billed_by=billing.BILLED_BY_RECEIPT)

    async with db() as session:  # rolled back: neither the document nor its mail
        lost = await billing.issue_invoice(
            session,
            org_id=org_id,
            company_id=company_id,
            reference=f"receipt:{charge_id}",
            transactions=[await session.get_one(Transaction, charge_id)],
            end_user_id=user_id,
        )
        assert await session.scalar(select(Notification).where(Notification.attachment_ref == lost.id)) is not None
        await session.rollback()
    for _ in range(2):  # the second call answers the first document
        async with db.begin() as session:
            receipt = await billing.issue_invoice(
                session,
                org_id=org_id,
                company_id=company_id,
                reference=f"receipt:{charge_id}",
                transactions=[await session.get_one(Transaction, charge_id)],
                status=InvoiceStatus.PAID,
                end_user_id=user_id,
            )
            receipt_id, receipt_number = receipt.id, receipt.number
    async with db.begin() as session:
        original = await session.get_one(Transaction, charge_id)
        reversal = await billing.record_reversal(session, original, reference=f"{charge_id}:r", description="Remb.")
        note_id = reversal.invoice_id
    async with db() as session:
        rows = (await session.scalars(select(Notification).where(Notification.org_id == org_id))).all()
    mails = sorted((r.attachment_ref, r.recipient, r.attachment_kind, r.subject) for r in rows)
    assert mails == sorted(
        [
            (receipt_id, user_email, "invoice", f"Votre facture F-{receipt_number:06d}"),
            (note_id, user_email, "invoice", f"Votre avoir AV-{receipt_number + 1:06d}"),
        ]
    )
    assert lost.id not in {r.attachment_ref for r in rows} and receipt_number == 1  # the number came back too
