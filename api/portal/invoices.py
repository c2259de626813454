"""Portal "Factures": the invoices and credit notes the staff member can see (filter by company and month),
each downloadable as PDF."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.portal.routes import page, scope_of
from api.portal.security import PortalNotFound, PortalPrincipalDep, PortalRoute
from domain.authz import Action, TenantChain, authorize
from domain.billing_contracts import Period
from domain.errors import DomainError
from domain.models import Company, Invoice
from domain.services.billing import KIND_CREDIT_NOTE, document_number
from domain.services.invoice_pdf import pdf_filename, render_invoice_pdf, status_label

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

PAGE_SIZE = 200


@router.get("/invoices")
async def invoices(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    company_id: Annotated[str, Query(max_length=32)] = "",
    period: Annotated[str, Query(max_length=7)] = "",
) -> Response:
    scope = scope_of(principal)
    query = (
        select(Invoice, Company.name)
        .join(Company, Company.id == Invoice.company_id)
        .order_by(Invoice.issued_at.desc(), Invoice.number.desc())
    )
    if scope.org_id is not None:
        query = query.where(Invoice.org_id == scope.org_id)
    if scope.company_id is not None:
        query = query.where(Invoice.company_id == scope.company_id)
    if company_id:
        query = query.where(Invoice.company_id == company_id)
    problem = None
    if period:
        try:
            bounds = Period.parse(period)
            query = query.where(Invoice.issued_at >= bounds.start_at, Invoice.issued_at < bounds.end_at)
        except DomainError as err:
            problem = f"Période : {err.reason}"
    rows = (await session.execute(query.limit(PAGE_SIZE))).all()
    company_name = next((name for _invoice, name in rows), None) if company_id else None
    context = {
        "rows": [
            {
                "invoice": invoice,
                "company": name,
                "number": document_number(invoice),
                "kind": "Avoir" if invoice.kind == KIND_CREDIT_NOTE else "Facture",
                "status": status_label(invoice),
            }
            for invoice, name in rows
        ],
        "company_id": company_id,
        "company_name": company_name,
        "period": period,
        "problem": problem,
    }
    return page(request, settings, principal, "portal/invoices/list.html", context, nav="invoices")


@router.get("/invoices/{invoice_id}/pdf")
async def invoice_pdf(invoice_id: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    invoice = await session.get(Invoice, invoice_id[:32])
    if invoice is None:
        raise PortalNotFound("Cette facture n'existe pas ou n'est pas accessible avec votre compte.")
    try:
        authorize(principal, Action.READ, TenantChain(invoice.org_id, invoice.company_id))
    except DomainError as err:
        raise PortalNotFound("Cette facture n'existe pas ou n'est pas accessible avec votre compte.") from err
    pdf = await render_invoice_pdf(session, invoice.id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{pdf_filename(invoice)}"'},
    )
