"""Transactions, invoices and credit notes: lists (filters, cursor), details, PDF download, and voiding an
uninvoiced transaction. Tenancy: each list shows what the caller's subtree holds; the guard checks the ids in
the paths; the permission area is `billing` (api/guard.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.schemas import UtcDatetime, page_cursor
from domain.authz import Action, TenantChain, authorize, require_staff
from domain.billing_contracts import Period
from domain.errors import NotFound
from domain.models import Invoice, Transaction
from domain.pagination import ID_DIGITS, by_id
from domain.services.billing import KIND_CREDIT_NOTE, document_number, invoice_lines, void_transaction_by_id
from domain.services.invoice_pdf import pdf_filename, render_invoice_pdf
from domain.services.listings import readable_by, transactions_query

router = APIRouter(prefix="/api/v1", tags=["Facturation"])

PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class TransactionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    org_id: str
    company_id: str
    line_id: str | None
    reference: str
    description: str
    retail_minor: int
    wholesale_minor: int
    tax_minor: int
    tax_rate_bp: int
    currency: str
    billed_by: str
    invoice_id: str | None
    reverses_id: str | None
    voided: bool
    created_at: UtcDatetime


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class InvoiceOut(BaseModel):
    id: str
    org_id: str
    company_id: str
    kind: str
    number: int
    document_number: str
    title: str | None
    status: str
    total_minor: int
    tax_minor: int
    currency: str
    payment_reference: str | None
    credited_invoice_id: str | None
    period_start: str | None
    period_end: str | None
    due_on: str | None
    issued_at: UtcDatetime
    pdf_url: str


class InvoiceDetail(InvoiceOut):
    lines: list[TransactionOut]


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    next_cursor: str | None


def invoice_out(invoice: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        org_id=invoice.org_id,
        company_id=invoice.company_id,
        kind=invoice.kind,
        number=invoice.number,
        document_number=document_number(invoice),
        title=invoice.title,
        status=str(invoice.status),
        total_minor=invoice.total_minor,
        tax_minor=invoice.tax_minor,
        currency=invoice.currency,
        payment_reference=invoice.payment_reference,
        credited_invoice_id=invoice.credited_invoice_id,
        period_start=invoice.period_start.isoformat() if invoice.period_start else None,
        period_end=invoice.period_end.isoformat() if invoice.period_end else None,
        due_on=invoice.due_on.isoformat() if invoice.due_on else None,
        issued_at=invoice.issued_at,
        pdf_url=f"/api/v1/invoices/{invoice.id}/pdf",
    )


IdFilter = Annotated[str | None, Query(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")]
PeriodFilter = Annotated[str | None, Query(pattern=PERIOD_PATTERN, description="Mois AAAA-MM")]


@router.get("/transactions", response_model=TransactionPage)
async def list_transactions(
    principal: PrincipalDep,
    session: SessionDep,
    company_id: IdFilter = None,
    period: PeriodFilter = None,
    invoiced: Annotated[bool | None, Query(description="Facturées (true) ou non (false)")] = None,
    voided: Annotated[bool, Query(description="Inclure les transactions annulées")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> TransactionPage:
    """The transactions the caller can see, by id; voided ones only on request."""
    query = transactions_query(
        principal,
        company_id=company_id,
        period=Period.parse(period) if period is not None else None,
        invoiced=invoiced,
        voided=voided,
    )
    keyset = by_id(Transaction.id)
    rows = list((await session.execute(keyset.apply(query, cursor, limit))).scalars())
    items, next_cursor = keyset.page(rows, limit, lambda t: t.id)
    return TransactionPage(items=[TransactionOut.model_validate(t) for t in items], next_cursor=next_cursor)


@router.post("/transactions/{transaction_id}/void", response_model=TransactionOut)
async def void(transaction_id: str, principal: PrincipalDep, session: SessionDep) -> Transaction:
    """Annule une transaction non facturée (409 si elle est déjà facturée)."""
    require_staff(principal)
    return await void_transaction_by_id(session, principal, transaction_id)


async def _documents(
    principal: PrincipalDep,
    session: SessionDep,
    kind: str | None,
    company_id: str | None,
    period: str | None,
    limit: int,
    cursor: str | None,
) -> InvoicePage:
    query = select(Invoice).where(readable_by(principal, org=Invoice.org_id, company=Invoice.company_id))
    if company_id is not None:
        query = query.where(Invoice.company_id == company_id)
    if period is not None:
        bounds = Period.parse(period)
        query = query.where(Invoice.issued_at >= bounds.start_at, Invoice.issued_at < bounds.end_at)
    if kind is not None:
        query = query.where(Invoice.kind == kind)
    keyset = by_id(Invoice.id)
    rows = list((await session.execute(keyset.apply(query, cursor, limit))).scalars())
    items, next_cursor = keyset.page(rows, limit, lambda i: i.id)
    return InvoicePage(items=[invoice_out(i) for i in items], next_cursor=next_cursor)


@router.get("/invoices", response_model=InvoicePage)
async def list_invoices(
    principal: PrincipalDep,
    session: SessionDep,
    company_id: IdFilter = None,
    period: PeriodFilter = None,
    kind: Annotated[Literal["invoice", "credit_note"] | None, Query(description="Factures ou avoirs")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> InvoicePage:
    """Invoices and credit notes the caller can see, by id; `period` is the month they were issued in."""
    return await _documents(principal, session, kind, company_id, period, limit, cursor)


@router.get("/credit-notes", response_model=InvoicePage)
async def list_credit_notes(
    principal: PrincipalDep,
    session: SessionDep,
    company_id: IdFilter = None,
    period: PeriodFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> InvoicePage:
    """Credit notes (avoirs) only: `GET /invoices?kind=credit_note`."""
    return await _documents(principal, session, KIND_CREDIT_NOTE, company_id, period, limit, cursor)


async def _readable_invoice(
    session: SessionDep, principal: PrincipalDep, invoice_id: str, kind: str | None = None
) -> Invoice:
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None or (kind is not None and invoice.kind != kind):
        raise NotFound(None, "avoir introuvable" if kind == KIND_CREDIT_NOTE else "facture introuvable")
    authorize(principal, Action.READ, TenantChain(invoice.org_id, invoice.company_id), "facture")
    return invoice


async def _detail(invoice: Invoice, session: SessionDep) -> InvoiceDetail:
    lines = [TransactionOut.model_validate(t) for t in await invoice_lines(session, invoice.id)]
    return InvoiceDetail(**invoice_out(invoice).model_dump(), lines=lines)


@router.get("/invoices/{invoice_id}", response_model=InvoiceDetail)
async def get_invoice(invoice_id: str, principal: PrincipalDep, session: SessionDep) -> InvoiceDetail:
    return await _detail(await _readable_invoice(session, principal, invoice_id), session)


@router.get("/credit-notes/{credit_note_id}", response_model=InvoiceDetail)
async def get_credit_note(credit_note_id: str, principal: PrincipalDep, session: SessionDep) -> InvoiceDetail:
    return await _detail(await _readable_invoice(session, principal, credit_note_id, KIND_CREDIT_NOTE), session)


PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
}


def _pdf_response(pdf: bytes, invoice: Invoice) -> Response:
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{pdf_filename(invoice)}"'},
    )


@router.get("/invoices/{invoice_id}/pdf", response_class=Response, responses=PDF_RESPONSES)
async def get_invoice_pdf(invoice_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """Le PDF de la facture ou de l'avoir."""
    invoice = await _readable_invoice(session, principal, invoice_id)
    return _pdf_response(await render_invoice_pdf(session, invoice.id), invoice)


@router.get("/credit-notes/{credit_note_id}/pdf", response_class=Response, responses=PDF_RESPONSES)
async def get_credit_note_pdf(credit_note_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """Le PDF de l'avoir."""
    invoice = await _readable_invoice(session, principal, credit_note_id, KIND_CREDIT_NOTE)
    return _pdf_response(await render_invoice_pdf(session, invoice.id), invoice)
