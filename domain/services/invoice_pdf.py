"""Invoice and credit-note PDFs: Jinja2 HTML rendered by WeasyPrint, French formatting by Babel.

The header carries the organisation's logo; the footer banner (seed 002) its legal name, address, SIRET,
intra-community VAT number, customer-service number and e-mail (and its SEPA creditor identifier when it has one),
under its banner image if it has one.
`render_invoice_pdf(session, invoice_id)` is what the API, the portal and the mail relay call.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date
from babel.numbers import format_percent
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from domain.enums import InvoiceStatus
from domain.errors import NotFound
from domain.models import Company, Invoice, Organisation
from domain.money import Money
from domain.services.billing import KIND_CREDIT_NOTE, document_number, invoice_lines

TEMPLATES = Path(__file__).resolve().parent / "invoice_templates"
DISPLAY_TZ = ZoneInfo("Europe/Paris")
LOCALE = "fr_FR"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]), auto_reload=False
)

STATUS_LABELS_FR = {
    InvoiceStatus.DRAFT: "Brouillon",
    InvoiceStatus.ISSUED: "À payer",
    InvoiceStatus.PAID: "Payée",
    InvoiceStatus.VOID: "Annulée",
}


def date_fr(value: date | datetime | None) -> str:
    """`7 décembre 2026` (dates and times in Paris time)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(DISPLAY_TZ).date()
    return str(format_date(value, format="long", locale=LOCALE))


def status_label(invoice: Invoice) -> str:
    if invoice.kind == KIND_CREDIT_NOTE:
        return "Avoir émis"
    return STATUS_LABELS_FR.get(invoice.status, str(invoice.status))


def _image(data: bytes | None) -> str | None:
    """A data URL for a PNG or JPEG; anything else is left out rather than breaking the document."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            kind = image.format
    except (OSError, SyntaxError, ValueError):
        return None
    mime = {"PNG": "image/png", "JPEG": "image/jpeg"}.get(kind or "")
    if mime is None:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def invoice_context(session: AsyncSession, invoice: Invoice) -> dict[str, Any]:
    org = await session.get(
        Organisation, invoice.org_id, options=[undefer(Organisation.logo), undefer(Organisation.footer_banner)]
    )
    company = await session.get(Company, invoice.company_id)
    assert org is not None and company is not None
    lines = []
    for t in await invoice_lines(session, invoice.id):
        gross, tax = Money(t.retail_minor, t.currency), Money(t.tax_minor, t.currency)
        lines.append(
            {
                "date": date_fr(t.created_at),
                "description": t.description,
                "net": (gross - tax).format_fr(),
                "tax": tax.format_fr(),
                "rate": format_percent(Decimal(t.tax_rate_bp) / 10_000, locale=LOCALE),
                "gross": gross.format_fr(),
            }
        )
    total, tax = Money(invoice.total_minor, invoice.currency), Money(invoice.tax_minor, invoice.currency)
    credited = await session.get(Invoice, invoice.credited_invoice_id) if invoice.credited_invoice_id else None
    period = None
    if invoice.period_start and invoice.period_end:
        period = f"{format_date(invoice.period_start, format='MMMM y', locale=LOCALE)}"
    return {
        "kind_label": "Avoir" if invoice.kind == KIND_CREDIT_NOTE else "Facture",
        "number": document_number(invoice),
        "issued_on": date_fr(invoice.issued_at),
        "due_on": date_fr(invoice.due_on) if invoice.due_on else None,
        "period": period,
        "credited_number": document_number(credited) if credited else None,
        "status_label": status_label(invoice),
        "payment_reference": invoice.payment_reference,
        "org": {
            "brand": org.brand_name or org.name,
            "legal_name": org.legal_name or org.name,
            "address": org.address,
            "siret": org.siret,
            "vat_number": org.vat_number,
            "phone": org.customer_service_phone,
            "email": org.customer_service_email or org.contact_email,
            "sepa_ics": org.sepa_ics,
        },
        "logo": _image(org.logo),
        "banner": _image(org.footer_banner),
        "company": company,
        "lines": lines,
        "totals": {"net": (total - tax).format_fr(), "tax": tax.format_fr(), "gross": total.format_fr()},
        "note": invoice.title,
    }


def pdf_filename(invoice: Invoice) -> str:
    return f"{'avoir' if invoice.kind == KIND_CREDIT_NOTE else 'facture'}-{document_number(invoice)}.pdf"


_fonts = threading.local()


def _write_pdf(html: str) -> bytes:
    """One font configuration per rendering thread, reused by its documents (WeasyPrint builds a new one per
    document otherwise: about a tenth of a receipt's rendering time); never shared between threads."""
    from weasyprint import HTML  # heavy import (Pango): only where a PDF is made
    from weasyprint.text.fonts import FontConfiguration

    if not hasattr(_fonts, "config"):
        _fonts.config = FontConfiguration()
    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf(font_config=_fonts.config)
    return pdf


async def render_invoice_pdf(session: AsyncSession, invoice_id: str) -> bytes:
    """The PDF of an invoice or credit note (the caller checks who may read it)."""
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound("invoice_id", "facture introuvable")
    html = _env.get_template("invoice.html").render(**await invoice_context(session, invoice))
    # Layout is CPU work: off the event loop, so the API keeps answering meanwhile.
    return await asyncio.to_thread(_write_pdf, html)
