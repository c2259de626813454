"""Portal billing pages (permission area `billing`, as the API's `api.routes.billing`):

- "Factures": the invoices and credit notes the staff member can see (filter by company and month), each
  downloadable as PDF;
- "Transactions": the API's `GET /transactions` (same query, `domain.services.listings.transactions_query`,
  same filters kept in the URL, the shared cursor, CSV export), and voiding an uninvoiced transaction of the
  billing run after a confirmation page (`domain.services.billing.void_transaction_by_id`, as
  `POST /transactions/{id}/void`): refused with its reason when already voided, invoiced, or billed elsewhere.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.portal.admin import CSV_MAX_ROWS, _csv, _listing, _url
from api.portal.routes import page, scope_of
from api.portal.security import CsrfChecked, PortalForbidden, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.portal.templating import format_datetime_fr
from domain.authz import AREA_LABELS_FR, Action, Area, Principal, TenantChain, authorize
from domain.billing_contracts import Period
from domain.errors import DomainError, IllegalTransition, NotFound
from domain.models import Company, Invoice, Line, Transaction
from domain.pagination import by_id
from domain.services.billing import (
    BILLED_BY_CFAST,
    BILLED_BY_NONE,
    BILLED_BY_RECEIPT,
    BILLED_BY_RUN,
    KIND_CREDIT_NOTE,
    document_number,
    void_transaction_by_id,
)
from domain.services.invoice_pdf import pdf_filename, render_invoice_pdf, status_label
from domain.services.listings import companies_query, transactions_query

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


# --- transactions ----------------------------------------------------------------------------------------

TRANSACTIONS_PATH = "/portal/transactions"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
BILLED_BY_LABELS_FR = {
    BILLED_BY_RUN: "Facture mensuelle",
    BILLED_BY_RECEIPT: "Reçu de recharge",
    BILLED_BY_CFAST: "CFAST (sur compte)",
    BILLED_BY_NONE: "Sans facture (paiement d'avance)",
}
INVOICED_LABELS_FR = {"": "Toutes", "false": "Non facturées", "true": "Facturées"}
COMPANY_CHOICES_MAX = 500


def _not_voidable_reason(transaction: Transaction) -> str | None:
    """Why the list offers no "Annuler" on this row (the service gives the same refusals on a POST)."""
    if transaction.voided:
        return "Annulée"
    if transaction.invoice_id is not None:
        return "Facturée : émettre un avoir"
    if transaction.billed_by != BILLED_BY_RUN:
        return "Non annulable"
    return None


async def _names(session: SessionDep, transactions: list[Transaction]) -> tuple[dict[str, str], dict[str, str]]:
    """Company names and line numbers of a page's transactions (the rows themselves come from the API's query)."""
    company_ids = {t.company_id for t in transactions}
    line_ids = {t.line_id for t in transactions if t.line_id}
    companies: dict[str, str] = {}
    lines: dict[str, str] = {}
    if company_ids:
        rows = await session.execute(select(Company.id, Company.name).where(Company.id.in_(company_ids)))
        companies = {r[0]: r[1] for r in rows}
    if line_ids:
        rows = await session.execute(select(Line.id, Line.msisdn).where(Line.id.in_(line_ids)))
        lines = {r[0]: r[1] or r[0] for r in rows}
    return companies, lines


def _euros(amount_minor: int) -> str:
    sign = "-" if amount_minor < 0 else ""
    return f"{sign}{abs(amount_minor) // 100},{abs(amount_minor) % 100:02d}"


@router.get("/transactions")
async def transactions(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    company_id: Annotated[str, Query(max_length=64)] = "",
    period: Annotated[str, Query(max_length=16)] = "",
    invoiced: Annotated[str, Query(max_length=8)] = "",
    voided: Annotated[str, Query(max_length=8)] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
    format: Annotated[str, Query(max_length=8)] = "",
    done: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    problems: list[str] = []
    company_id = company_id.strip()
    if company_id and not ID_RE.match(company_id):
        problems.append("Entreprise : identifiant invalide")
        company_id = ""
    bounds: Period | None = None
    if period:
        try:
            bounds = Period.parse(period)
        except DomainError as err:
            problems.append(f"Période : {err.reason}")
            period = ""
    if invoiced not in INVOICED_LABELS_FR:
        invoiced = ""
    with_voided = voided in ("1", "true")
    query = transactions_query(
        principal,
        company_id=company_id or None,
        period=bounds,
        invoiced={"": None, "true": True, "false": False}[invoiced],
        voided=with_voided,
    )
    if format == "csv":
        rows = list((await session.execute(query.order_by(Transaction.id).limit(CSV_MAX_ROWS))).scalars())
        companies, lines = await _names(session, rows)
        return _csv(
            "transactions.csv",
            [
                "id",
                "date",
                "entreprise_id",
                "entreprise",
                "ligne_id",
                "ligne",
                "reference",
                "libelle",
                "montant_ttc",
                "dont_tva",
                "taux_tva",
                "prix_achat",
                "devise",
                "facturation",
                "facture_id",
                "annulee",
                "annulee_le",
                "annulee_par",
            ],
            [
                [
                    t.id,
                    t.created_at.isoformat(),
                    t.company_id,
                    companies.get(t.company_id, ""),
                    t.line_id or "",
                    lines.get(t.line_id, "") if t.line_id else "",
                    t.reference,
                    t.description,
                    _euros(t.retail_minor),
                    _euros(t.tax_minor),
                    f"{t.tax_rate_bp / 100:.2f}".replace(".", ","),
                    _euros(t.wholesale_minor),
                    t.currency,
                    BILLED_BY_LABELS_FR.get(t.billed_by, t.billed_by),
                    t.invoice_id or "",
                    "oui" if t.voided else "non",
                    t.voided_at.isoformat() if t.voided_at else "",
                    t.voided_by or "",
                ]
                for t in rows
            ],
        )
    params = {
        "company_id": company_id,
        "period": period,
        "invoiced": invoiced,
        "voided": "1" if with_voided else "",
    }
    listing = await _listing(
        session,
        query,
        by_id(Transaction.id),
        lambda t: t.id,
        path=TRANSACTIONS_PATH,
        params=params,
        cursor=cursor or None,
    )
    companies, lines = await _names(session, listing.items)
    company_rows = await session.execute(
        companies_query(principal).order_by(Company.name, Company.id).limit(COMPANY_CHOICES_MAX)
    )
    back = _url(TRANSACTIONS_PATH, params, cursor=cursor or None)
    context = {
        "listing": listing,
        "rows": [
            {
                "t": t,
                "company": companies.get(t.company_id, t.company_id),
                "line": lines.get(t.line_id) if t.line_id else None,
                "billed_by": BILLED_BY_LABELS_FR.get(t.billed_by, t.billed_by),
                "not_voidable": _not_voidable_reason(t),
            }
            for t in listing.items
        ],
        "params": params,
        "companies": [(c.id, c.name) for c in company_rows.scalars()],
        "invoiced_choices": INVOICED_LABELS_FR,
        "problems": problems,
        "can_void": principal.may(Area.BILLING, Action.WRITE),
        "back": back,
        "done": done if ID_RE.match(done) else None,
    }
    return page(request, settings, principal, "portal/invoices/transactions.html", context, nav="transactions")


def _safe_back(raw: object) -> str:
    """The list page to return to: only the transactions list itself, with its filters."""
    if isinstance(raw, str) and re.fullmatch(r"/portal/transactions(\?[A-Za-z0-9_=&%.+-]*)?", raw):
        return raw
    return TRANSACTIONS_PATH


def _require_void_permission(principal: Principal) -> None:
    if not principal.may(Area.BILLING, Action.WRITE):
        raise PortalForbidden(
            f"Annuler une transaction demande la permission « {AREA_LABELS_FR[Area.BILLING]} » en écriture."
        )


async def _transaction_for(session: SessionDep, principal: Principal, transaction_id: str) -> Transaction:
    transaction = await session.get(Transaction, transaction_id[:32])
    if transaction is None:
        raise PortalNotFound("Cette transaction n'existe pas ou n'est pas accessible avec votre compte.")
    try:
        authorize(principal, Action.READ, TenantChain(transaction.org_id, transaction.company_id), "transaction")
    except NotFound as err:
        raise PortalNotFound("Cette transaction n'existe pas ou n'est pas accessible avec votre compte.") from err
    return transaction


async def _void_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    transaction: Transaction,
    *,
    back: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    companies, lines = await _names(session, [transaction])
    context: dict[str, Any] = {
        "t": transaction,
        "company": companies.get(transaction.company_id, transaction.company_id),
        "line": lines.get(transaction.line_id) if transaction.line_id else None,
        "billed_by": BILLED_BY_LABELS_FR.get(transaction.billed_by, transaction.billed_by),
        "not_voidable": _not_voidable_reason(transaction),
        "back": back,
        "error": error,
    }
    return page(
        request,
        settings,
        principal,
        "portal/invoices/transaction_void.html",
        context,
        nav="transactions",
        status_code=status_code,
    )


@router.get("/transactions/{transaction_id}/void")
async def transaction_void_confirmation(
    transaction_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    back: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    """The confirmation page of "Annuler": the transaction, what voiding does, "Confirmer l'annulation"."""
    transaction = await _transaction_for(session, principal, transaction_id)
    _require_void_permission(principal)
    return await _void_page(request, principal, session, settings, transaction, back=_safe_back(back))


@router.post("/transactions/{transaction_id}/void", dependencies=[CsrfChecked])
async def transaction_void(
    transaction_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    form = await request.form()
    back = _safe_back(form.get("back"))
    transaction = await _transaction_for(session, principal, transaction_id)
    _require_void_permission(principal)
    if transaction.voided:  # the API answers such a replay with the voided row; here the click was a mistake
        when = f" le {format_datetime_fr(transaction.voided_at)}" if transaction.voided_at else ""
        by = f" par {transaction.voided_by}" if transaction.voided_by else ""
        error = f"Annulation refusée : transaction déjà annulée{when}{by}."
        return await _void_page(
            request, principal, session, settings, transaction, back=back, error=error, status_code=409
        )
    try:
        await void_transaction_by_id(session, principal, transaction.id)
    except IllegalTransition as err:
        await session.rollback()
        fresh = await _transaction_for(session, principal, transaction_id)
        error = f"Annulation refusée : {err.reason}."
        return await _void_page(request, principal, session, settings, fresh, back=back, error=error, status_code=409)
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}done={transaction.id}", status_code=303)
