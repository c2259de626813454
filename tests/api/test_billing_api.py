"""Transactions and invoices through the API: lists with filters and cursor, scoped to the caller; void only
before invoicing (409 after); the invoice detail with its lines; the PDF download."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import httpx
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.billing_contracts import Period
from domain.models import Transaction
from domain.money import Money
from domain.services import billing
from tests.api._support import assert_problem
from tests.api.conftest import Tenant

Db = async_sessionmaker[AsyncSession]


async def _charge(db: Db, tenant: Tenant, company_id: str, amount: int) -> str:
    async with db.begin() as session:
        t = await billing.record_transaction(
            session,
            org_id=tenant.org_id,
            company_id=company_id,
            reference=f"api-test:{uuid.uuid4().hex}",
            description=f"Frais {amount}",
            retail=Money(amount),
        )
        return t.id


async def _bill(db: Db, tenant: Tenant, company_id: str) -> str:
    async with db() as session:
        invoice = await billing.issue_period_invoice(
            session, tenant.org_id, company_id, Period.parse(datetime.now(UTC).strftime("%Y-%m"))
        )
        assert invoice is not None
        await session.commit()
        return invoice.id


async def test_transactions_list_void_and_invoices(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    mine = [await _charge(db, tenant, tenant.company_id, amount) for amount in (100, 200, 300)]
    sibling = await _charge(db, tenant, tenant.sibling_company_id, 999)

    # Company staff see their company's transactions only; paging with the cursor has no gap or duplicate.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "invoiced": "false"}
        if cursor:
            params["cursor"] = cursor
        page = await app_client.get("/api/v1/transactions", params=params, headers=tenant.company_staff)
        assert page.status_code == 200, page.text
        seen += [t["id"] for t in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert set(mine) <= set(seen) and sibling not in seen and len(seen) == len(set(seen))

    voided = await app_client.post(f"/api/v1/transactions/{mine[2]}/void", headers=tenant.org_staff)
    assert voided.status_code == 200, voided.text
    assert voided.json()["voided"] is True
    listed = await app_client.get("/api/v1/transactions", headers=tenant.org_staff)
    assert mine[2] not in {t["id"] for t in listed.json()["items"]}
    with_voided = await app_client.get("/api/v1/transactions", params={"voided": "true"}, headers=tenant.org_staff)
    assert mine[2] in {t["id"] for t in with_voided.json()["items"]}

    invoice_id = await _bill(db, tenant, tenant.company_id)
    refused = await app_client.post(f"/api/v1/transactions/{mine[0]}/void", headers=tenant.org_staff)
    assert_problem(refused, 409)
    async with db() as session:
        still = await session.get(Transaction, mine[0])
        assert still is not None and not still.voided

    listing = await app_client.get(
        "/api/v1/invoices", params={"company_id": tenant.company_id}, headers=tenant.company_staff
    )
    assert listing.status_code == 200, listing.text
    (item,) = [i for i in listing.json()["items"] if i["id"] == invoice_id]
    assert item["kind"] == "invoice" and item["total_minor"] == 300 and item["document_number"].startswith("F-")

    detail = await app_client.get(f"/api/v1/invoices/{invoice_id}", headers=tenant.company_staff)
    assert detail.status_code == 200
    assert sorted(line["retail_minor"] for line in detail.json()["lines"]) == [100, 200]

    pdf = await app_client.get(f"/api/v1/invoices/{invoice_id}/pdf", headers=tenant.company_staff)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = " ".join(PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().split())
    assert item["document_number"] in text and "3,00" in text

    bad = await app_client.get("/api/v1/invoices", params={"period": "2026-13"}, headers=tenant.org_staff)
    assert_problem(bad, 422)

    # A refund of an invoiced transaction: a credit note, served by the credit-note routes too.
    async with db.begin() as session:
        original = await session.get(Transaction, mine[0])
        assert original is not None
        reversal = await billing.record_reversal(
            session, original, reference=f"api-refund:{mine[0]}", description="Remb."
        )
        note_id = reversal.invoice_id
    notes = await app_client.get("/api/v1/credit-notes", headers=tenant.company_staff)
    (note,) = [n for n in notes.json()["items"] if n["id"] == note_id]
    assert note["kind"] == "credit_note" and note["credited_invoice_id"] == invoice_id and note["total_minor"] == -100
    assert (await app_client.get(f"/api/v1/credit-notes/{invoice_id}", headers=tenant.org_staff)).status_code == 404
    note_pdf = await app_client.get(f"/api/v1/credit-notes/{note_id}/pdf", headers=tenant.org_staff)
    assert note_pdf.status_code == 200
    note_text = " ".join(PdfReader(io.BytesIO(note_pdf.content)).pages[0].extract_text().split())
    assert f"Avoir {note['document_number']}" in note_text and item["document_number"] in note_text


async def test_foreign_invoice_is_not_found(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _charge(db, other_tenant, other_tenant.company_id, 100)
    foreign = await _bill(db, other_tenant, other_tenant.company_id)
    for path in (f"/api/v1/invoices/{foreign}", f"/api/v1/invoices/{foreign}/pdf"):
        assert (await app_client.get(path, headers=tenant.org_staff)).status_code == 404
    listing = await app_client.get("/api/v1/invoices", headers=tenant.org_staff)
    assert foreign not in {i["id"] for i in listing.json()["items"]}
