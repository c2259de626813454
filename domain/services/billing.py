"""Transactions, invoices and credit notes: the one place that writes them.

- Every money movement is a `Transaction` (charges positive, credits negative), written once per `reference`.
  `retail_minor` is what the customer pays, tax included; `tax_minor` is the VAT inside it.
- `billed_by` says who issues the document carrying the transaction:
  `run` — the monthly billing run of simflow (the default for any movement);
  `receipt` — the paid invoice simflow issues when a card or wallet top-up completes;
  `cfast` — CFAST, on its own invoice (top-ups billed on account); simflow never issues a document for it;
  `none` — no document: a movement that is not a sale (money put into a wallet is a prepayment; the sale is
  documented when the wallet pays, by the top-up's receipt).
- Invoices and credit notes share one gapless series per organisation (`InvoiceCounter`, bumped in the very
  database transaction that issues the document; unique (org, number)). A credit note is negative and refers
  to the invoice it credits.
- Only an uninvoiced transaction of the billing run can be voided.
- Every document issued here is mailed with its PDF: an outbox row (`Notification`, attachment `invoice`) is
  written in the issuing database transaction, once per document (reference `invoice-mail/{invoice id}`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from domain.authz import Action, Principal, TenantChain, authorize
from domain.billing_contracts import Period
from domain.enums import InvoiceStatus, PaymentMethod, PaymentStatus
from domain.errors import IllegalTransition, NotFound, ValidationFailed
from domain.models import (
    Company,
    EndUser,
    Invoice,
    InvoiceCounter,
    Notification,
    Organisation,
    Payment,
    Refund,
    Transaction,
    new_id,
    utcnow,
)
from domain.money import DEFAULT_VAT_RATE_BP, Money

BILLED_BY_RUN = "run"
BILLED_BY_RECEIPT = "receipt"
BILLED_BY_CFAST = "cfast"
BILLED_BY_NONE = "none"
BILLED_BY = (BILLED_BY_RUN, BILLED_BY_RECEIPT, BILLED_BY_CFAST, BILLED_BY_NONE)

KIND_INVOICE = "invoice"
KIND_CREDIT_NOTE = "credit_note"
PAYMENT_TERM = timedelta(days=30)
INVOICE_ATTACHMENT = "invoice"  # resolved by the outbox relay into the document's PDF


def document_number(invoice: Invoice) -> str:
    """The number printed on the document: `F-000042` for an invoice, `AV-000043` for a credit note (avoir)."""
    prefix = "AV" if invoice.kind == KIND_CREDIT_NOTE else "F"
    return f"{prefix}-{invoice.number:06d}"


# --- numbering -------------------------------------------------------------------------------------------


async def next_invoice_number(session: AsyncSession, org_id: str) -> int:
    """Gapless per organisation: the counter row is incremented in the transaction issuing the document, so a
    rolled-back issue gives its number back. The row is created once (a concurrent creation is ignored), then
    the UPDATE write-locks it until commit: concurrent issuers of one organisation queue on it."""
    bind = session.get_bind()
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(InvoiceCounter).values(org_id=org_id, last_number=0).on_conflict_do_nothing(index_elements=["org_id"])
    )
    bump = (
        update(InvoiceCounter)
        .where(InvoiceCounter.org_id == org_id)
        .values(last_number=InvoiceCounter.last_number + 1)
        .returning(InvoiceCounter.last_number)
        .execution_options(synchronize_session=False)
    )
    return int((await session.execute(bump)).scalar_one())


# --- transactions ----------------------------------------------------------------------------------------


async def transaction_by_reference(session: AsyncSession, reference: str) -> Transaction | None:
    found = await session.execute(select(Transaction).where(Transaction.reference == reference))
    return found.scalar_one_or_none()


async def record_transaction(
    session: AsyncSession,
    *,
    org_id: str,
    company_id: str,
    reference: str,
    description: str,
    retail: Money,
    wholesale: Money | None = None,
    tax_rate_bp: int = DEFAULT_VAT_RATE_BP,
    line_id: str | None = None,
    billed_by: str = BILLED_BY_RUN,
) -> Transaction:
    """One money movement, written once: a second call with the same `reference` returns the first row.
    `retail` is tax included (positive: a charge; negative: a credit); the VAT inside it is computed here."""
    existing = await transaction_by_reference(session, reference)
    if existing is not None:
        return existing
    if billed_by not in BILLED_BY:
        raise ValidationFailed("billed_by", f"valeur inconnue, attendu : {', '.join(BILLED_BY)}")
    if not description.strip():
        raise ValidationFailed("description", "libellé obligatoire")
    wholesale = wholesale or Money.zero(retail.currency)
    transaction = Transaction(
        org_id=org_id,
        company_id=company_id,
        line_id=line_id,
        reference=reference,
        description=description[:300],
        retail_minor=retail.amount_minor,
        wholesale_minor=wholesale.amount_minor,
        tax_minor=retail.included_vat(tax_rate_bp).amount_minor,
        tax_rate_bp=tax_rate_bp,
        currency=retail.currency,
        billed_by=billed_by,
    )
    session.add(transaction)
    await session.flush()
    return transaction


async def record_reversal(
    session: AsyncSession, original: Transaction, *, reference: str, description: str
) -> Transaction:
    """The opposite of `original` (a refund), written once. When the original is already on a simflow
    document, the reversal is put on a credit note referring to it at once."""
    existing = await transaction_by_reference(session, reference)
    if existing is not None:
        return existing
    reversal = Transaction(
        org_id=original.org_id,
        company_id=original.company_id,
        line_id=original.line_id,
        reference=reference,
        description=description[:300],
        retail_minor=-original.retail_minor,
        wholesale_minor=-original.wholesale_minor,
        tax_minor=-original.tax_minor,
        tax_rate_bp=original.tax_rate_bp,
        currency=original.currency,
        billed_by=original.billed_by,
        reverses_id=original.id,
    )
    session.add(reversal)
    await session.flush()
    if original.invoice_id is not None and original.billed_by not in (BILLED_BY_CFAST, BILLED_BY_NONE):
        credited = await session.get(Invoice, original.invoice_id)
        if credited is not None:
            await issue_credit_note(session, credited, [reversal], reference=f"{reference}:credit-note")
    return reversal


# --- payments and refunds --------------------------------------------------------------------------------


async def record_payment(
    session: AsyncSession,
    *,
    org_id: str,
    company_id: str,
    reference: str,
    method: PaymentMethod,
    amount: Money,
    status: str,
    stripe_payment_intent_id: str | None = None,
) -> Payment:
    """The money received for a movement (a card charge, a wallet debit, an on-account sale), written once
    per `reference`: a second call returns the first row."""
    payment = await session.scalar(select(Payment).where(Payment.reference == reference))
    if payment is None:
        payment = Payment(
            org_id=org_id,
            company_id=company_id,
            method=method,
            amount_minor=amount.amount_minor,
            currency=amount.currency,
            status=status,
            reference=reference,
            stripe_payment_intent_id=stripe_payment_intent_id,
        )
        session.add(payment)
        await session.flush()
    return payment


async def record_refund(
    session: AsyncSession,
    *,
    charge: Transaction,
    payment: Payment,
    reversal_reference: str,
    refund_reference: str,
    description: str,
    provider_reference: str | None,
) -> Transaction:
    """A refunded payment: the reversal of its charge transaction (on a credit note when the charge was
    already on a simflow document) and its `Refund` row, once each; the payment is marked refunded.
    `provider_reference` is the refund's proof (Stripe `re_…`, a wallet entry); None: confirmed by staff."""
    reversal = await record_reversal(session, charge, reference=reversal_reference, description=description)
    if await session.scalar(select(Refund.id).where(Refund.reference == refund_reference)) is None:
        stripe_refund = provider_reference if (provider_reference or "").startswith("re_") else None
        session.add(
            Refund(
                org_id=payment.org_id,
                payment_id=payment.id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                reference=refund_reference,
                stripe_refund_id=stripe_refund,
                status=PaymentStatus.SUCCEEDED if provider_reference else PaymentStatus.MANUAL,
            )
        )
    payment.status = PaymentStatus.REFUNDED
    await session.flush()
    return reversal


async def void_transaction(session: AsyncSession, transaction: Transaction, actor: str) -> Transaction:
    """Only a transaction of the billing run not yet invoiced; the UPDATE re-checks it so a billing run
    issuing at the same moment wins or loses cleanly."""
    if transaction.voided:
        return transaction
    if transaction.invoice_id is not None:
        raise IllegalTransition("transaction_id", "transaction déjà facturée : émettez un avoir")
    if transaction.billed_by != BILLED_BY_RUN:
        why = {
            BILLED_BY_CFAST: "transaction facturée par CFAST",
            BILLED_BY_RECEIPT: "transaction facturée par le reçu de la recharge",
        }.get(transaction.billed_by, "mouvement sans facture (paiement d'avance)")
        raise IllegalTransition("transaction_id", f"{why} : non annulable")
    done = await session.execute(
        update(Transaction)
        .where(Transaction.id == transaction.id, Transaction.invoice_id.is_(None), Transaction.voided.is_(False))
        .values(voided=True, voided_at=utcnow(), voided_by=actor)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise IllegalTransition("transaction_id", "transaction facturée entre-temps : émettez un avoir")
    await session.refresh(transaction)
    return transaction


async def void_transaction_by_id(session: AsyncSession, principal: Principal, transaction_id: str) -> Transaction:
    """`void_transaction` for a caller (the API's `POST /transactions/{id}/void`, the portal's "Annuler"):
    404 outside the caller's subtree, 403 without write on it."""
    transaction = await session.get(Transaction, transaction_id)
    if transaction is None:
        raise NotFound(None, "transaction introuvable")
    authorize(principal, Action.WRITE, TenantChain(transaction.org_id, transaction.company_id), "transaction")
    return await void_transaction(session, transaction, principal.label)


# --- documents -------------------------------------------------------------------------------------------


async def issue_invoice(
    session: AsyncSession,
    *,
    org_id: str,
    company_id: str,
    reference: str,
    transactions: list[Transaction],
    status: InvoiceStatus = InvoiceStatus.ISSUED,
    payment_reference: str | None = None,
    title: str | None = None,
    end_user_id: str | None = None,
) -> Invoice:
    """An invoice over the given (uninvoiced) transactions, numbered in the same database transaction;
    written once per `reference`, and mailed with its PDF (to `end_user_id`'s address when given, else to
    the company's billing address)."""
    existing = (await session.execute(select(Invoice).where(Invoice.reference == reference))).scalar_one_or_none()
    if existing is not None:
        return existing
    invoice = Invoice(
        id=new_id(),
        org_id=org_id,
        company_id=company_id,
        number=await next_invoice_number(session, org_id),
        reference=reference,
        status=status,
        total_minor=sum(t.retail_minor for t in transactions),
        tax_minor=sum(t.tax_minor for t in transactions),
        currency=transactions[0].currency if transactions else "EUR",
        payment_reference=payment_reference,
        kind=KIND_INVOICE,
        title=title,
        due_on=(utcnow() + PAYMENT_TERM).date() if status is InvoiceStatus.ISSUED else None,
    )
    session.add(invoice)
    await session.flush()
    for transaction in transactions:
        transaction.invoice_id = invoice.id
    await session.flush()
    await queue_invoice_mail(session, invoice, end_user_id=end_user_id)
    return invoice


async def issue_credit_note(
    session: AsyncSession, credited: Invoice, transactions: list[Transaction], *, reference: str
) -> Invoice:
    """A negative document with its own number in the series, referring to the invoice it credits."""
    existing = (await session.execute(select(Invoice).where(Invoice.reference == reference))).scalar_one_or_none()
    if existing is not None:
        return existing
    note = Invoice(
        id=new_id(),
        org_id=credited.org_id,
        company_id=credited.company_id,
        number=await next_invoice_number(session, credited.org_id),
        reference=reference,
        status=InvoiceStatus.ISSUED,
        total_minor=sum(t.retail_minor for t in transactions),
        tax_minor=sum(t.tax_minor for t in transactions),
        currency=credited.currency,
        kind=KIND_CREDIT_NOTE,
        credited_invoice_id=credited.id,
        title=f"Avoir sur la facture {document_number(credited)}",
    )
    session.add(note)
    await session.flush()
    for transaction in transactions:
        transaction.invoice_id = note.id
    await session.flush()
    await queue_invoice_mail(session, note, recipient=await _mailed_to(session, credited))
    return note


# --- the document by mail ---------------------------------------------------------------------------------


def invoice_mail_reference(invoice_id: str) -> str:
    return f"invoice-mail/{invoice_id}"


async def _mailed_to(session: AsyncSession, invoice: Invoice) -> str | None:
    """Whoever received `invoice` (a credit note goes to the same address as the invoice it credits)."""
    return await session.scalar(
        select(Notification.recipient).where(Notification.reference == invoice_mail_reference(invoice.id))
    )


async def queue_invoice_mail(
    session: AsyncSession, invoice: Invoice, *, end_user_id: str | None = None, recipient: str | None = None
) -> Notification:
    """The document's mail with its PDF attached, in the caller's database transaction, once per document.
    The address: `recipient` if given, else the end user's, else the company's billing address; a company
    without one still gets its row, which the relay marks failed ("aucune adresse de destinataire") so the
    unsent document shows."""
    reference = invoice_mail_reference(invoice.id)
    existing = await session.scalar(select(Notification).where(Notification.reference == reference))
    if existing is not None:
        return existing
    company = await session.get(Company, invoice.company_id)
    if recipient is None and end_user_id is not None:
        user = await session.get(EndUser, end_user_id)
        recipient = user.email if user is not None else None
    if recipient is None and company is not None:
        recipient = company.billing_email
    org = await session.get(Organisation, invoice.org_id)
    sender = (org.brand_name or org.name) if org is not None else ""
    number = document_number(invoice)
    total = Money(invoice.total_minor, invoice.currency).format_fr()
    if invoice.kind == KIND_CREDIT_NOTE:
        subject = f"Votre avoir {number}"
        what = f"votre avoir {number}, d'un montant de {total} TTC"
    else:
        subject = f"Votre facture {number}"
        what = f"votre facture {number}, d'un montant de {total} TTC"
        if invoice.status is InvoiceStatus.PAID:
            what += ", déjà réglée"
        elif invoice.due_on is not None:
            what += f", à régler avant le {invoice.due_on.strftime('%d/%m/%Y')}"
    body = f"Bonjour,\n\nVous trouverez ci-joint {what}.\n\nCordialement,\n{sender}\n"
    row = Notification(
        org_id=invoice.org_id,
        company_id=invoice.company_id,
        reference=reference,
        recipient=recipient,
        subject=subject[:300],
        body=body,
        attachment_kind=INVOICE_ATTACHMENT,
        attachment_ref=invoice.id,
    )
    session.add(row)
    await session.flush()
    return row


# --- the monthly billing run -----------------------------------------------------------------------------


def run_reference(org_id: str, period: Period, company_id: str) -> str:
    return f"billing-run/{org_id}/{period.label}/{company_id}"


def _billable(org_id: str, period: Period) -> list[object]:
    """Uninvoiced, non-voided transactions of the billing run, up to the end of the period (a movement left
    over from an earlier month goes on the next invoice rather than nowhere)."""
    return [
        Transaction.org_id == org_id,
        Transaction.billed_by == BILLED_BY_RUN,
        Transaction.invoice_id.is_(None),
        Transaction.voided.is_(False),
        Transaction.created_at < period.end_at,
    ]


async def companies_to_bill(session: AsyncSession, org_id: str, period: Period) -> list[str]:
    """Companies with something to bill for the period, plus those already billed for it (so a rerun answers
    the same documents)."""
    pending = select(Transaction.company_id).where(*_billable(org_id, period)).distinct()  # type: ignore[arg-type]
    billed = select(Invoice.company_id).where(
        Invoice.org_id == org_id, Invoice.reference.like(f"billing-run/{org_id}/{period.label}/%")
    )
    rows = (await session.execute(pending.union(billed))).scalars()
    return sorted(set(rows))


async def issue_period_invoice(session: AsyncSession, org_id: str, company_id: str, period: Period) -> Invoice | None:
    """The company's invoice for the period, issued once (by reference): the transactions are claimed by one
    UPDATE … WHERE invoice_id IS NULL, so a void or another run at the same moment cannot share them. Nothing
    to bill: nothing issued, no number used (the caller rolls back)."""
    reference = run_reference(org_id, period, company_id)
    existing = (await session.execute(select(Invoice).where(Invoice.reference == reference))).scalar_one_or_none()
    if existing is not None:
        return existing
    company = await session.get(Company, company_id)
    if company is None or company.org_id != org_id:
        raise NotFound("company_id", "entreprise introuvable")
    invoice = Invoice(
        id=new_id(),
        org_id=org_id,
        company_id=company_id,
        number=await next_invoice_number(session, org_id),
        reference=reference,
        status=InvoiceStatus.ISSUED,
        total_minor=0,
        tax_minor=0,
        kind=KIND_INVOICE,
        title=f"Facture pour {period.start.strftime('%m/%Y')}",
        period_start=period.start,
        period_end=period.end,
        due_on=period.end + PAYMENT_TERM,
    )
    session.add(invoice)
    await session.flush()
    claimed = (
        await session.execute(
            update(Transaction)
            .where(Transaction.company_id == company_id, *_billable(org_id, period))  # type: ignore[arg-type]
            .values(invoice_id=invoice.id)
            .returning(Transaction.retail_minor, Transaction.tax_minor, Transaction.currency)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if not claimed:
        return None
    invoice.total_minor = sum(row.retail_minor for row in claimed)
    invoice.tax_minor = sum(row.tax_minor for row in claimed)
    invoice.currency = claimed[0].currency
    await session.flush()
    await queue_invoice_mail(session, invoice)
    return invoice


async def invoice_lines(session: AsyncSession, invoice_id: str) -> list[Transaction]:
    rows = await session.execute(
        select(Transaction).where(Transaction.invoice_id == invoice_id).order_by(Transaction.created_at, Transaction.id)
    )
    return list(rows.scalars())


async def uninvoiced_total(session: AsyncSession, org_id: str, company_id: str) -> int:
    total = await session.execute(
        select(func.coalesce(func.sum(Transaction.retail_minor), 0)).where(
            Transaction.org_id == org_id,
            Transaction.company_id == company_id,
            Transaction.billed_by == BILLED_BY_RUN,
            Transaction.invoice_id.is_(None),
            Transaction.voided.is_(False),
        )
    )
    return int(total.scalar_one())
