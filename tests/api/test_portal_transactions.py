"""The staff portal's "Transactions" page over HTTP (ASGI): the API's list (same query, filters kept in the
URL, the shared cursor, CSV `;` with BOM), and voiding through a confirmation page with the API's service:
refused with its reason (already voided, invoiced, billed by CFAST), refused without the `billing` write
permission, and another organisation's transaction is a 404 (nothing changes)."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from domain.billing_contracts import Period
from domain.enums import StaffRole
from domain.models import Line, StaffUser, Transaction
from domain.money import Money
from domain.security import hash_password
from domain.services import billing
from tests.api import test_portal
from tests.api.test_portal import Portal, csrf_from, logged_in
from tests.browser.portal_seed import PASSWORD

portal = test_portal.portal  # the module fixture: its own app and seed

ROW_RE = re.compile(r'data-transaction-id="([0-9a-f]{32})"')


async def _charge(
    portal: Portal,
    org_id: str,
    company_id: str,
    label: str,
    amount: int = 1000,
    *,
    line_id: str | None = None,
    billed_by: str = billing.BILLED_BY_RUN,
) -> str:
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        transaction = await billing.record_transaction(
            session,
            org_id=org_id,
            company_id=company_id,
            reference=f"portal-test:{uuid.uuid4().hex}",
            description=label,
            retail=Money(amount),
            line_id=line_id,
            billed_by=billed_by,
        )
        return transaction.id


async def _transaction(portal: Portal, transaction_id: str) -> Transaction:
    async with portal.app.state.simflow.sessionmaker() as session:
        transaction = await session.get(Transaction, transaction_id)
        assert transaction is not None
        return transaction


async def _line_a1(portal: Portal) -> Line:
    async with portal.app.state.simflow.sessionmaker() as session:
        line = (await session.execute(select(Line).where(Line.company_id == portal.seed.company_a1))).scalars().first()
        assert line is not None and line.msisdn
        return line


async def _staff(portal: Portal, permissions: list[str]) -> str:
    email = f"facturation-{uuid.uuid4().hex[:8]}@alpha.test"
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            StaffUser(
                email=email,
                password_hash=hash_password(PASSWORD),
                role=StaffRole.ORG_STAFF,
                org_id=portal.seed.org_a,
                permissions=permissions,
            )
        )
    return email


def _ids(page: str) -> list[str]:
    return ROW_RE.findall(page)


async def test_list_filters_cursor_and_csv(portal: Portal) -> None:
    seed = portal.seed
    marker = uuid.uuid4().hex[:8]
    line = await _line_a1(portal)
    on_line = await _charge(portal, seed.org_a, seed.company_a1, f"Recharge {marker}", 990, line_id=line.id)
    a2 = [await _charge(portal, seed.org_a, seed.company_a2, f"Frais A2 {marker} {n}", 100 + n) for n in range(51)]
    foreign = await _charge(portal, seed.org_b, seed.company_b1, f"Secret Bêta {marker}")

    async with logged_in(portal, seed.staff_a) as client:
        menu = await client.get("/portal/sims")
        assert 'href="/portal/transactions"' in menu.text
        company_page = await client.get(f"/portal/companies/{seed.company_a1}")
        assert f'href="/portal/transactions?company_id={seed.company_a1}"' in company_page.text

        everything = await client.get("/portal/transactions")
        assert everything.status_code == 200
        assert foreign not in everything.text and "Secret Bêta" not in everything.text

        # A1's transaction: its company and its line are linked.
        a1 = await client.get("/portal/transactions", params={"company_id": seed.company_a1})
        assert on_line in _ids(a1.text) and not set(_ids(a1.text)) & set(a2)
        assert f'href="/portal/lines/{line.id}"' in a1.text and line.msisdn in a1.text
        assert f'href="/portal/companies/{seed.company_a1}"' in a1.text and "9,90" in a1.text

        # 51 rows of A2 (at least): pages of 50 whose next-page link keeps the filters, no gap nor duplicate.
        params = {"company_id": seed.company_a2, "invoiced": "false", "period": datetime.now(UTC).strftime("%Y-%m")}
        page = await client.get("/portal/transactions", params=params)
        assert page.status_code == 200 and len(_ids(page.text)) == 50
        seen = _ids(page.text)
        while match := re.search(r'href="([^"]+)" rel="next"', page.text):
            next_link = html.unescape(match.group(1))
            kept = parse_qs(urlsplit(next_link).query)
            assert {k: v[0] for k, v in kept.items() if k != "cursor"} == params and kept["cursor"]
            page = await client.get(next_link)
            seen += _ids(page.text)
        assert set(a2) <= set(seen) and len(seen) == len(set(seen)) and on_line not in seen

        assert _ids((await client.get("/portal/transactions", params={**params, "period": "2001-01"})).text) == []
        assert _ids((await client.get("/portal/transactions", params={**params, "invoiced": "true"})).text) == []
        bad = await client.get("/portal/transactions", params={"period": "2026-13"})
        assert bad.status_code == 200 and "Période : période au format AAAA-MM attendue" in bad.text

        exported = await client.get("/portal/transactions", params={"company_id": seed.company_a1, "format": "csv"})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        assert exported.content.startswith(b"\xef\xbb\xbf")
        header, *rows = exported.content.decode("utf-8-sig").splitlines()
        assert header.startswith("id;date;entreprise_id;entreprise;ligne_id;ligne;")
        assert len(rows) == 1 and rows[0].startswith(f"{on_line};")
        assert f";{line.id};{line.msisdn};" in rows[0] and f"Recharge {marker};9,90;" in rows[0]


async def test_void_confirms_then_refuses_with_its_reason(portal: Portal) -> None:
    seed = portal.seed
    marker = uuid.uuid4().hex[:8]
    company = seed.company_a2
    voidable = await _charge(portal, seed.org_a, company, f"Frais à annuler {marker}")
    cfast = await _charge(portal, seed.org_a, company, f"Sur compte {marker}", billed_by=billing.BILLED_BY_CFAST)

    async with logged_in(portal, seed.staff_a) as client:
        listing = await client.get("/portal/transactions", params={"company_id": company})
        assert f"/portal/transactions/{voidable}/void?" in listing.text
        assert f"/portal/transactions/{cfast}/void" not in listing.text  # not offered: "Non annulable"

        back = f"/portal/transactions?company_id={company}"
        confirm = await client.get(f"/portal/transactions/{voidable}/void", params={"back": back})
        assert confirm.status_code == 200
        assert "Confirmer l'annulation" in confirm.text and f"Frais à annuler {marker}" in confirm.text
        token = csrf_from(confirm.text)

        refused_csrf = await client.post(f"/portal/transactions/{voidable}/void", data={"back": back})
        assert refused_csrf.status_code == 403
        assert not (await _transaction(portal, voidable)).voided

        done = await client.post(f"/portal/transactions/{voidable}/void", data={"csrf_token": token, "back": back})
        assert done.status_code == 303
        assert done.headers["location"] == f"{back}&done={voidable}"
        voided = await _transaction(portal, voidable)
        assert voided.voided and voided.voided_by == seed.staff_a
        after = await client.get(done.headers["location"])
        assert 'id="transaction-voided"' in after.text and voidable not in _ids(after.text)
        assert voidable in _ids((await client.get(back + "&voided=1")).text)

        again = await client.post(f"/portal/transactions/{voidable}/void", data={"csrf_token": token, "back": back})
        assert again.status_code == 409
        assert "Annulation refusée : transaction déjà annulée le" in html.unescape(again.text)

        by_cfast = await client.post(f"/portal/transactions/{cfast}/void", data={"csrf_token": token})
        assert by_cfast.status_code == 409
        assert "Annulation refusée : transaction facturée par CFAST : non annulable" in html.unescape(by_cfast.text)
        assert not (await _transaction(portal, cfast)).voided

        # Once the billing run invoiced it: an error naming the reason, nothing changes.
        invoiced = await _charge(portal, seed.org_a, company, f"Frais facturés {marker}")
        async with portal.app.state.simflow.sessionmaker.begin() as session:
            invoice = await billing.issue_period_invoice(
                session, seed.org_a, company, Period.parse(datetime.now(UTC).strftime("%Y-%m"))
            )
            assert invoice is not None
        refused = await client.post(f"/portal/transactions/{invoiced}/void", data={"csrf_token": token})
        assert refused.status_code == 409
        assert "Annulation refusée : transaction déjà facturée : émettez un avoir" in html.unescape(refused.text)
        assert not (await _transaction(portal, invoiced)).voided
        billed = await client.get("/portal/transactions", params={"company_id": company, "invoiced": "true"})
        assert invoiced in _ids(billed.text) and f"/portal/invoices/{invoice.id}/pdf" in billed.text


async def test_void_needs_the_billing_write_permission(portal: Portal) -> None:
    seed = portal.seed
    transaction = await _charge(portal, seed.org_a, seed.company_a1, f"Frais {uuid.uuid4().hex[:8]}")
    reader = await _staff(portal, ["billing:read", "sim_card"])
    async with logged_in(portal, reader) as client:
        listing = await client.get("/portal/transactions", params={"company_id": seed.company_a1})
        assert listing.status_code == 200 and transaction in _ids(listing.text)
        assert 'href="/portal/transactions"' in listing.text  # the menu entry: read is enough
        assert f"/portal/transactions/{transaction}/void" not in listing.text
        confirm = await client.get(f"/portal/transactions/{transaction}/void")
        assert confirm.status_code == 403 and "Accès refusé" in confirm.text
        token = csrf_from(listing.text)
        refused = await client.post(f"/portal/transactions/{transaction}/void", data={"csrf_token": token})
        assert refused.status_code == 403 and "Accès refusé" in refused.text
    assert not (await _transaction(portal, transaction)).voided

    outsider = await _staff(portal, ["sim_card"])
    async with logged_in(portal, outsider) as client:
        assert 'href="/portal/transactions"' not in (await client.get("/portal/sims")).text
        refused_list = await client.get("/portal/transactions")
        assert refused_list.status_code == 403 and "Accès refusé" in refused_list.text


async def test_other_organisations_transaction_is_not_found(portal: Portal) -> None:
    seed = portal.seed
    transaction = await _charge(portal, seed.org_a, seed.company_a1, f"Frais Alpha {uuid.uuid4().hex[:8]}")
    async with logged_in(portal, seed.staff_b) as client:
        listing = await client.get("/portal/transactions")
        assert listing.status_code == 200 and transaction not in listing.text
        confirm = await client.get(f"/portal/transactions/{transaction}/void")
        assert confirm.status_code == 404 and "Frais Alpha" not in confirm.text
        refused = await client.post(
            f"/portal/transactions/{transaction}/void", data={"csrf_token": csrf_from(listing.text)}
        )
        assert refused.status_code == 404
        foreign_filter = await client.get("/portal/transactions", params={"company_id": seed.company_a1})
        assert transaction not in foreign_filter.text
    assert not (await _transaction(portal, transaction)).voided
