"""Bad input on every route: a 4xx RFC 9457 body naming the field and the reason, and nothing written.

Each request runs inside `unchanged(db)`, which counts the rows of every table before and after. Tenants are
created directly in the database (see conftest), so no workflow writes anything while a test runs.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.enums import ArticleKind, SimStatus
from domain.models import CatalogueArticle, EndUser, SimCard
from infra.settings import Settings
from integrations.snaic import SIGNATURE_HEADER, sign_callback
from tests.api._support import (
    STRONG_PASSWORD,
    VALID_SIRET,
    assert_problem,
    bad_luhn,
    random_iccid,
    random_imsi,
    unchanged,
)
from tests.api.conftest import Tenant
from tests.conftest import ADMIN_EMAIL

Db = async_sessionmaker[AsyncSession]
Headers = dict[str, str]

# --- POST /api/v1/organisations -------------------------------------------------------------------


def _org(**extra: Any) -> dict[str, Any]:
    slug = f"o-{uuid.uuid4().hex[:10]}"
    return {"name": f"Intégrateur {slug}", "slug": slug, **extra}


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        pytest.param(_org(siret="73282932000075"), "siret", "Luhn", id="siret-bad-luhn"),
        pytest.param(_org(siret="7328293200"), "siret", "longueur", id="siret-too-short"),
        pytest.param(_org(siret="7328293200007A"), "siret", "format", id="siret-letters"),
        pytest.param(_org(vat_number="FR00732829320"), "vat_number", "clé", id="vat-bad-key"),
        pytest.param(_org(vat_number="XX123"), "vat_number", "pays", id="vat-no-country"),
        pytest.param(_org(vat_number="DE12345678"), "vat_number", None, id="vat-de-too-short"),
        pytest.param({"slug": "o-missing-name"}, "name", "required", id="name-missing"),
        pytest.param(_org(name="X"), "name", "at least 2", id="name-too-short"),
        pytest.param({"name": "Intégrateur"}, "slug", "required", id="slug-missing"),
        pytest.param({"name": "Intégrateur", "slug": "Bad Slug!"}, "slug", "pattern", id="slug-pattern"),
        pytest.param(_org(contact_email="not-an-email"), "contact_email", None, id="email-invalid"),
        pytest.param(_org(id="0" * 32), "id", "extra", id="extra-id"),
        pytest.param(_org(stripe_account_ref="acct_1"), "stripe_account_ref", "extra", id="extra-stripe"),
        pytest.param(_org(invoice_footer="x"), "invoice_footer", "extra", id="extra-footer"),
    ],
)
async def test_organisation_bad_input(
    app_client: httpx.AsyncClient, admin_headers: Headers, db: Db, payload: dict[str, Any], field: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/organisations", json=payload, headers=admin_headers)
    assert_problem(response, 422, field, reason)


async def test_organisation_duplicate_slug(
    app_client: httpx.AsyncClient, admin_headers: Headers, db: Db, tenant: Tenant
) -> None:
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/organisations", json={"name": "Copie", "slug": tenant.org_slug}, headers=admin_headers
        )
    assert_problem(response, 409, "slug", "déjà utilisé")


async def test_organisation_by_org_staff_is_forbidden(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/organisations", json=_org(), headers=tenant.org_staff)
    assert_problem(response, 403)


async def test_organisation_without_credentials(app_client: httpx.AsyncClient, db: Db) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/organisations", json=_org())
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_malformed_json_body(app_client: httpx.AsyncClient, admin_headers: Headers, db: Db) -> None:
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/organisations",
            content=b'{"name": "Integrateur", "slug":',
            headers={**admin_headers, "Content-Type": "application/json"},
        )
    body = assert_problem(response, 422)
    assert body["errors"][0]["reason"], body


# --- POST /api/v1/companies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        pytest.param({"name": "X Corp", "siret": "73282932000075"}, "siret", "Luhn", id="siret-bad-luhn"),
        pytest.param({"name": "X Corp", "siret": "123"}, "siret", "longueur", id="siret-short"),
        pytest.param({"name": "X Corp", "vat_number": "FR00732829320"}, "vat_number", "clé", id="vat-bad-key"),
        pytest.param({"name": "X Corp", "vat_number": "12"}, "vat_number", None, id="vat-garbage"),
        pytest.param({"name": "X"}, "name", "at least 2", id="name-too-short"),
        pytest.param({"siret": VALID_SIRET}, "name", "required", id="name-missing"),
        pytest.param({"name": "X Corp", "billing_email": "nope"}, "billing_email", None, id="email-invalid"),
        pytest.param({"name": "X Corp", "address": "a" * 501}, "address", "at most 500", id="address-too-long"),
        pytest.param({"name": "X Corp", "is_virtual": "maybe"}, "is_virtual", None, id="is-virtual-not-bool"),
        pytest.param({"name": "X Corp", "cfast_customer_id": "C1"}, "cfast_customer_id", "extra", id="x-cfast-id"),
        pytest.param({"name": "X Corp", "cfast_status": "synced"}, "cfast_status", "extra", id="x-cfast-status"),
        pytest.param({"name": "X Corp", "status": "active"}, "status", "extra", id="x-status"),
        pytest.param({"name": "X Corp", "customer_reference": "R"}, "customer_reference", "extra", id="x-ref"),
        pytest.param({"name": "X Corp", "id": "0" * 32}, "id", "extra", id="x-id"),
    ],
)
async def test_company_bad_input(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, payload: dict[str, Any], field: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/companies", json=payload, headers=tenant.org_staff)
    assert_problem(response, 422, field, reason)


async def test_company_duplicate_siret_in_organisation(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/companies", json={"name": "Doublon", "siret": "732 829 320 00074"}, headers=tenant.org_staff
        )
    assert_problem(response, 409, "siret", "SIRET")


async def test_company_in_another_organisation_is_not_found(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Mass assignment of `org_id` by organisation staff: another tenant's organisation does not exist for them."""
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/companies", json={"name": "Intrus", "org_id": other_tenant.org_id}, headers=tenant.org_staff
        )
    assert_problem(response, 404, "org_id")


async def test_company_by_company_staff_is_forbidden(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/companies", json={"name": "Filiale"}, headers=tenant.company_staff)
    assert_problem(response, 403)


async def test_company_by_admin_needs_a_known_organisation(
    app_client: httpx.AsyncClient, admin_headers: Headers, db: Db
) -> None:
    async with unchanged(db):
        missing = await app_client.post("/api/v1/companies", json={"name": "Sans org"}, headers=admin_headers)
        unknown = await app_client.post(
            "/api/v1/companies", json={"name": "Org inconnue", "org_id": uuid.uuid4().hex}, headers=admin_headers
        )
    assert_problem(missing, 422, "org_id", "obligatoire")
    assert_problem(unknown, 404, "org_id")


# --- POST /api/v1/end-users -----------------------------------------------------------------------


def _user(company_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "company_id": company_id,
        "email": f"user-{uuid.uuid4().hex[:10]}@test.simflow",
        "full_name": "Jeanne Martin",
        "password": STRONG_PASSWORD,
        **extra,
    }


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        pytest.param({"email": "jeanne.martin"}, "email", None, id="email-invalid"),
        pytest.param({"password": "court"}, "password", "trop faible", id="password-short"),
        pytest.param({"password": "alllowercase-1234"}, "password", "majuscule", id="password-no-upper"),
        pytest.param({"password": "NoDigitsHere-Really"}, "password", "chiffre", id="password-no-digit"),
        pytest.param({"password": "NoSymbolsHere12345"}, "password", "symbole", id="password-no-symbol"),
        pytest.param({"password": "Aa1!" * 60}, "password", "at most 200", id="password-too-long"),
        pytest.param({"full_name": ""}, "full_name", "at least 1", id="name-empty"),
        pytest.param({"org_id": "0" * 32}, "org_id", "extra", id="x-org-id"),
        pytest.param({"active": False}, "active", "extra", id="x-active"),
        pytest.param({"password_hash": "$argon2id$..."}, "password_hash", "extra", id="x-password-hash"),
        pytest.param({"totp_secret_encrypted": "x"}, "totp_secret_encrypted", "extra", id="x-totp"),
    ],
)
async def test_end_user_bad_input(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, extra: dict[str, Any], field: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/end-users", json=_user(tenant.company_id, **extra), headers=tenant.org_staff
        )
    assert_problem(response, 422, field, reason)


@pytest.mark.parametrize("missing", ["company_id", "email", "full_name"])
async def test_end_user_missing_field(app_client: httpx.AsyncClient, db: Db, tenant: Tenant, missing: str) -> None:
    payload = _user(tenant.company_id)
    del payload[missing]
    async with unchanged(db):
        response = await app_client.post("/api/v1/end-users", json=payload, headers=tenant.org_staff)
    assert_problem(response, 422, missing, "required")


async def test_end_user_email_already_used(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, admin_headers: Headers
) -> None:
    created = await app_client.post("/api/v1/end-users", json=_user(tenant.company_id), headers=tenant.org_staff)
    assert created.status_code == 201, created.text
    email = created.json()["email"]
    async with unchanged(db):
        again = await app_client.post(
            "/api/v1/end-users", json=_user(tenant.sibling_company_id, email=email.upper()), headers=tenant.org_staff
        )
        staff_email = await app_client.post(
            "/api/v1/end-users", json=_user(tenant.company_id, email=ADMIN_EMAIL), headers=tenant.org_staff
        )
    assert_problem(again, 409, "email", "déjà utilisée")
    assert_problem(staff_email, 409, "email", "déjà utilisée")
    async with db() as session:
        count = await session.scalar(select(func.count()).select_from(EndUser).where(EndUser.email == email))
    assert count == 1


async def test_end_user_wrong_tenant_is_not_found(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with unchanged(db):
        other_org = await app_client.post(
            "/api/v1/end-users", json=_user(other_tenant.company_id), headers=tenant.org_staff
        )
        sibling = await app_client.post(
            "/api/v1/end-users", json=_user(tenant.sibling_company_id), headers=tenant.company_staff
        )
        unknown = await app_client.post("/api/v1/end-users", json=_user(uuid.uuid4().hex), headers=tenant.org_staff)
    for response in (other_org, sibling, unknown):
        assert_problem(response, 404, "company_id", "introuvable")
    # Same answer whether the company exists elsewhere or not at all: nothing leaks across tenants.
    assert other_org.json()["detail"] == unknown.json()["detail"]


# --- POST /api/v1/plans ---------------------------------------------------------------------------


def _plan(**extra: Any) -> dict[str, Any]:
    return {"name": "Forfait 10 Go", "plan_type": "prepaid", "price_minor": 999, "carrier": "Orange", **extra}


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        pytest.param(_plan(price_minor=99), "price_minor", "greater than or equal to 100", id="price-below-1eur"),
        pytest.param(_plan(price_minor=0), "price_minor", "greater than or equal to 100", id="price-zero"),
        pytest.param(_plan(price_minor=-500), "price_minor", "greater than or equal to 100", id="price-negative"),
        pytest.param(_plan(price_minor=10**12), "price_minor", "less than or equal", id="price-absurd"),
        pytest.param(_plan(price_minor=9.99), "price_minor", "integer", id="price-float"),
        pytest.param(_plan(price_minor="beaucoup"), "price_minor", "integer", id="price-text"),
        pytest.param(_plan(plan_type="galactic"), "plan_type", "prepaid", id="plan-type-unknown"),
        pytest.param(_plan(plan_type="subscription"), "subscription_kind", "obligatoire", id="sub-kind-missing"),
        pytest.param(_plan(subscription_kind="monthly"), "subscription_kind", "réservé", id="sub-kind-on-prepaid"),
        pytest.param(
            _plan(plan_type="subscription", subscription_kind="yearly"), "subscription_kind", None, id="sub-kind-bad"
        ),
        pytest.param(_plan(currency="euro"), "currency", "pattern", id="currency"),
        pytest.param(_plan(data_allowance_mb=-1), "data_allowance_mb", "greater than", id="data-negative"),
        pytest.param(_plan(data_allowance_mb=10**9), "data_allowance_mb", "less than", id="data-absurd"),
        pytest.param(_plan(validity_days=0), "validity_days", "greater than", id="validity-zero"),
        pytest.param(_plan(auto_renew_mode="sometimes"), "auto_renew_mode", None, id="auto-renew-bad"),
        pytest.param(_plan(carrier=""), "carrier", "at least 1", id="carrier-empty"),
        pytest.param(_plan(price=500), "price", "extra", id="x-price"),
        pytest.param(_plan(data_allowance_bytes=1), "data_allowance_bytes", "extra", id="x-bytes"),
        pytest.param(_plan(id="0" * 32), "id", "extra", id="x-id"),
        pytest.param(_plan(price_per_mb_by_country={"FR": 1}), "price_per_mb_by_country", "extra", id="x-per-mb"),
    ],
)
async def test_plan_bad_input(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, payload: dict[str, Any], field: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/plans", json=payload, headers=tenant.org_staff)
    assert_problem(response, 422, field, reason)


@pytest.mark.parametrize("missing", ["name", "plan_type", "price_minor", "carrier"])
async def test_plan_missing_field(app_client: httpx.AsyncClient, db: Db, tenant: Tenant, missing: str) -> None:
    payload = _plan()
    del payload[missing]
    async with unchanged(db):
        response = await app_client.post("/api/v1/plans", json=payload, headers=tenant.org_staff)
    assert_problem(response, 422, missing, "required")


async def test_plan_wrong_tenant(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant, admin_headers: Headers
) -> None:
    async with unchanged(db):
        other_org = await app_client.post(
            "/api/v1/plans", json=_plan(org_id=other_tenant.org_id), headers=tenant.org_staff
        )
        other_company = await app_client.post(
            "/api/v1/plans", json=_plan(company_id=other_tenant.company_id), headers=tenant.org_staff
        )
        by_company_staff = await app_client.post("/api/v1/plans", json=_plan(), headers=tenant.company_staff)
        admin_unknown_org = await app_client.post(
            "/api/v1/plans", json=_plan(org_id=uuid.uuid4().hex), headers=admin_headers
        )
        admin_no_org = await app_client.post("/api/v1/plans", json=_plan(), headers=admin_headers)
    assert_problem(other_org, 404, "org_id")
    assert_problem(other_company, 404, "company_id")
    assert_problem(by_company_staff, 403)
    assert_problem(admin_unknown_org, 404, "org_id")
    assert_problem(admin_no_org, 422, "org_id", "obligatoire")


# --- POST /api/v1/catalogue/articles --------------------------------------------------------------


def _article(**extra: Any) -> dict[str, Any]:
    return {
        "code": f"RECH-{uuid.uuid4().hex[:6]}",
        "label": "Recharge DATA 1Go",
        "kind": "one_off_option",
        "sale_price_minor": 50,
        **extra,
    }


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        pytest.param(_article(sale_price_minor=-1), "sale_price_minor", "greater than", id="sale-negative"),
        pytest.param(_article(sale_price_minor=10**9), "sale_price_minor", "less than", id="sale-absurd"),
        pytest.param(_article(purchase_price_minor=-50), "purchase_price_minor", "greater than", id="buy-negative"),
        pytest.param(_article(sale_price_minor=0.5), "sale_price_minor", "integer", id="sale-float"),
        pytest.param(_article(kind="subscription"), "kind", "one_off_option", id="kind-unknown"),
        pytest.param(_article(code="RECH 1GO"), "code", "pattern", id="code-space"),
        pytest.param(_article(code="x" * 65), "code", "at most 64", id="code-too-long"),
        pytest.param(_article(data_mb=-5), "data_mb", "greater than", id="data-negative"),
        pytest.param(_article(currency="eur"), "currency", "pattern", id="currency-lower"),
        pytest.param(_article(data_bytes=1), "data_bytes", "extra", id="x-data-bytes"),
        pytest.param(_article(active=False), "active", "extra", id="x-active"),
        pytest.param(_article(price=50), "price", "extra", id="x-price"),
    ],
)
async def test_article_bad_input(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, payload: dict[str, Any], field: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/catalogue/articles", json=payload, headers=tenant.org_staff)
    assert_problem(response, 422, field, reason)


@pytest.mark.parametrize("missing", ["code", "label", "kind", "sale_price_minor"])
async def test_article_missing_field(app_client: httpx.AsyncClient, db: Db, tenant: Tenant, missing: str) -> None:
    payload = _article()
    del payload[missing]
    async with unchanged(db):
        response = await app_client.post("/api/v1/catalogue/articles", json=payload, headers=tenant.org_staff)
    assert_problem(response, 422, missing, "required")


async def test_article_duplicate_code(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    code = f"DUP-{uuid.uuid4().hex[:6]}"
    async with db.begin() as session:
        session.add(
            CatalogueArticle(
                org_id=tenant.org_id, code=code, label="Existant", kind=ArticleKind.ONE_OFF_OPTION, sale_price_minor=50
            )
        )
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/catalogue/articles", json=_article(code=code), headers=tenant.org_staff
        )
    assert_problem(response, 409, "code", "existe déjà")


async def test_article_wrong_tenant(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with unchanged(db):
        other_org = await app_client.post(
            "/api/v1/catalogue/articles", json=_article(org_id=other_tenant.org_id), headers=tenant.org_staff
        )
        by_company_staff = await app_client.post(
            "/api/v1/catalogue/articles", json=_article(), headers=tenant.company_staff
        )
    assert_problem(other_org, 404, "org_id")
    assert_problem(by_company_staff, 403)


# --- POST /api/v1/sims/import ---------------------------------------------------------------------

HEADER = "iccid;imsi;puk1;puk2;carrier;esim"


def _csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _row(iccid: str | None = None, imsi: str | None = None, puk1: str = "12345678", carrier: str = "Orange") -> str:
    return f"{iccid or random_iccid()};{imsi or random_imsi()};{puk1};87654321;{carrier};0"


async def _import(
    client: httpx.AsyncClient, headers: Headers, content: bytes, data: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/api/v1/sims/import", files={"file": ("sims.csv", content, "text/csv")}, data=data or {}, headers=headers
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"iccid;imsi;puk1\n", "colonnes manquantes", id="header-missing-columns"),
        pytest.param(b"iccid,imsi,puk1,puk2,carrier,esim\n", "colonnes manquantes", id="header-comma"),
        pytest.param(b"", "colonnes manquantes", id="empty-file"),
        pytest.param(_csv(_row()).replace(b"Orange", "Orangé".encode("latin-1")), "UTF-8", id="latin-1"),
        pytest.param(b"\xff\xfe" + HEADER.encode("utf-16-le"), "UTF-8", id="utf-16"),
        # Over the csv module's field size limit (128 Kio): was a 500.
        pytest.param(_csv("1" * 200_000 + ";x"), "illisible", id="huge-field"),
        pytest.param(("x" * 200_000 + "\n").encode(), "illisible", id="huge-header"),
    ],
)
async def test_import_rejects_unreadable_file(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, content: bytes, reason: str
) -> None:
    async with unchanged(db):
        response = await _import(app_client, tenant.org_staff, content)
    assert_problem(response, 422, "file", reason)


async def test_import_rejects_oversized_file(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    row = _row().encode() + b"\n"
    content = _csv() + row * (5 * 1024 * 1024 // len(row) + 1)
    assert len(content) > 5 * 1024 * 1024
    async with unchanged(db):
        response = await _import(app_client, tenant.org_staff, content)
    assert_problem(response, 422, "file", "volumineux")


async def test_import_request_errors(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant, admin_headers: Headers
) -> None:
    async with unchanged(db):
        no_file = await app_client.post("/api/v1/sims/import", data={"x": "y"}, headers=tenant.org_staff)
        other_org = await _import(app_client, tenant.org_staff, _csv(_row()), {"org_id": other_tenant.org_id})
        company_staff = await _import(app_client, tenant.company_staff, _csv(_row()))
        admin_no_org = await _import(app_client, admin_headers, _csv(_row()))
        admin_unknown_org = await _import(app_client, admin_headers, _csv(_row()), {"org_id": uuid.uuid4().hex})
    assert_problem(no_file, 422, "file", "required")
    assert_problem(other_org, 404, "org_id")
    assert_problem(company_staff, 403)
    assert_problem(admin_no_org, 422, "org_id", "obligatoire")
    assert_problem(admin_unknown_org, 404, "org_id")


async def _sim_count(db: Db, org_id: str) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(SimCard).where(SimCard.org_id == org_id)) or 0)


async def test_import_reports_bad_rows_and_keeps_good_ones(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant
) -> None:
    already = random_iccid()
    first = await _import(app_client, tenant.org_staff, _csv(_row(already)))
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 1

    good_1, good_2, dup_in_file, dup_imsi = random_iccid(), random_iccid(), random_iccid(), random_imsi()
    rows = {
        # row number (header is row 1) -> (line, field expected in errors, or None when accepted)
        2: (_row(good_1), None),
        3: (_row(bad_luhn(random_iccid())), "iccid"),
        4: (_row(imsi="20801123"), "imsi"),
        5: (_row(imsi="20801ABCDEFGHIJ"), "imsi"),
        6: (_row(carrier="Vodafone"), "carrier"),
        7: (_row(puk1="1234"), "puk1"),
        8: (_row(dup_in_file, imsi=dup_imsi), None),
        9: (_row(dup_in_file), "iccid"),
        10: (_row(imsi=dup_imsi), "imsi"),
        11: (_row(already), "iccid"),
        12: (f"{random_iccid()};{random_imsi()};;;Bouygues;peut-être", "esim"),
        13: (f"{good_2};{random_imsi()};;;bouygues;oui", None),
    }
    before = await _sim_count(db, tenant.org_id)
    response = await _import(app_client, tenant.org_staff, _csv(*(line for line, _ in rows.values())))
    assert response.status_code == 200, response.text
    report = response.json()
    accepted_rows = {n for n, (_, field) in rows.items() if field is None}
    assert report["accepted"] == len(accepted_rows)
    assert report["rejected"] == len(rows) - len(accepted_rows)
    by_row = {r["row"]: r for r in report["rows"]}
    assert set(by_row) == set(rows)
    for number, (_, field) in rows.items():
        row = by_row[number]
        if field is None:
            assert row["accepted"] and row["errors"] == [], row
        else:
            assert not row["accepted"], row
            fields = {e["field"]: e["reason"] for e in row["errors"]}
            assert fields.get(field), row
    assert "double" in {e["field"]: e["reason"] for e in by_row[9]["errors"]}["iccid"]
    assert "double" in {e["field"]: e["reason"] for e in by_row[10]["errors"]}["imsi"]
    assert "déjà" in {e["field"]: e["reason"] for e in by_row[11]["errors"]}["iccid"]

    assert await _sim_count(db, tenant.org_id) == before + len(accepted_rows)
    async with db() as session:
        kept = (
            await session.execute(select(SimCard).where(SimCard.iccid.in_([good_1, good_2, dup_in_file])))
        ).scalars()
        kept_by_iccid = {s.iccid: s for s in kept}
    assert set(kept_by_iccid) == {good_1, good_2, dup_in_file}
    assert all(s.status is SimStatus.BLANK and s.org_id == tenant.org_id for s in kept_by_iccid.values())
    assert kept_by_iccid[good_2].is_esim and kept_by_iccid[good_2].carrier == "Bouygues"


# --- GET /api/v1/sims and /api/v1/sims/{iccid} ----------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        pytest.param({"cursor": "!!!"}, "cursor", "curseur", id="cursor-garbage"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"abc").decode()}, "cursor", "curseur", id="cursor-text"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor", "curseur", id="cursor-bin"),
        pytest.param({"status": "lost"}, "status", "active", id="status-unknown"),
        pytest.param({"limit": 0}, "limit", "greater than", id="limit-zero"),
        pytest.param({"limit": 501}, "limit", "less than", id="limit-absurd"),
        pytest.param({"limit": "ten"}, "limit", "integer", id="limit-text"),
    ],
)
async def test_list_sims_bad_query(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, params: dict[str, Any], field: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.get("/api/v1/sims", params=params, headers=tenant.org_staff)
    assert_problem(response, 422, field, reason)


@pytest.mark.parametrize(
    ("iccid", "reason"),
    [
        pytest.param("123", "19 ou 20", id="too-short"),
        pytest.param("89330" + "1" * 30, "19 ou 20", id="too-long"),
        pytest.param("8933A11234567890120", "chiffres", id="letters"),
        pytest.param(bad_luhn("8933011234567890120"), "Luhn", id="bad-luhn"),
    ],
)
async def test_get_sim_invalid_iccid(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, iccid: str, reason: str
) -> None:
    async with unchanged(db):
        response = await app_client.get(f"/api/v1/sims/{iccid}", headers=tenant.org_staff)
    assert_problem(response, 422, "iccid", reason)


async def test_get_sim_unknown_or_foreign_is_not_found(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    foreign = random_iccid()
    imported = await _import(app_client, other_tenant.org_staff, _csv(_row(foreign)))
    assert imported.json()["accepted"] == 1, imported.text
    async with unchanged(db):
        unknown = await app_client.get(f"/api/v1/sims/{random_iccid()}", headers=tenant.org_staff)
        other = await app_client.get(f"/api/v1/sims/{foreign}", headers=tenant.org_staff)
        own = await app_client.get(f"/api/v1/sims/{foreign}", headers=other_tenant.org_staff)
    assert_problem(unknown, 404)
    assert_problem(other, 404)
    assert unknown.json()["detail"] == other.json()["detail"]
    assert own.status_code == 200, own.text


# --- POST /api/v1/auth/token ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field"),
    [
        pytest.param({"password": "x"}, "username", id="username-missing"),
        pytest.param({"username": ADMIN_EMAIL}, "password", id="password-missing"),
        pytest.param(
            {"username": ADMIN_EMAIL, "password": "x", "grant_type": "client_credentials"},
            "grant_type",
            id="grant-type",
        ),
    ],
)
async def test_token_bad_form(app_client: httpx.AsyncClient, db: Db, form: dict[str, str], field: str) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/auth/token", data=form)
    assert_problem(response, 422, field)


async def test_token_json_instead_of_form(app_client: httpx.AsyncClient, db: Db) -> None:
    async with unchanged(db):
        response = await app_client.post("/api/v1/auth/token", json={"username": ADMIN_EMAIL, "password": "x"})
    body = assert_problem(response, 422, "username", "required")
    assert "password" in {e["field"] for e in body["errors"]}


# --- POST /api/v1/snaic/callback ------------------------------------------------------------------


def _callback(**extra: Any) -> bytes:
    return json.dumps({"order_id": "ord-1", "line_id": "line-1", "status": "completed", **extra}).encode()


async def test_snaic_callback_bad_signature(app_client: httpx.AsyncClient, db: Db, settings: Settings) -> None:
    secret = settings.snaic_callback_secret.get_secret_value()
    body = _callback(reference="cfast-customer/x/y:step")
    cases = {
        "missing": {},
        "garbage": {SIGNATURE_HEADER: "not-a-signature"},
        "other secret": {SIGNATURE_HEADER: sign_callback(body, "another-secret")},
        "other body": {SIGNATURE_HEADER: sign_callback(_callback(status="rejected"), secret)},
    }
    async with unchanged(db):
        for name, headers in cases.items():
            response = await app_client.post(
                "/api/v1/snaic/callback", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            body_json = assert_problem(response, 401)
            assert body_json["code"] == "snaic.invalid_signature", name


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"line_id": "l", "status": "completed"}, "order_id", id="order-id-missing"),
        pytest.param({"order_id": "o", "line_id": "l", "status": "done"}, "status", id="status-unknown"),
        pytest.param({"order_id": "o", "line_id": "l", "status": "completed", "type": "teleport"}, "type", id="type"),
    ],
)
async def test_snaic_callback_signed_but_invalid(
    app_client: httpx.AsyncClient, db: Db, settings: Settings, payload: dict[str, Any], field: str
) -> None:
    body = json.dumps(payload).encode()
    signature = sign_callback(body, settings.snaic_callback_secret.get_secret_value())
    async with unchanged(db):
        response = await app_client.post(
            "/api/v1/snaic/callback",
            content=body,
            headers={SIGNATURE_HEADER: f"sha256={signature}", "Content-Type": "application/json"},
        )
    assert_problem(response, 422, field)


# --- NUL characters (PostgreSQL refuses them in text: they used to surface as 500) -----------------


@pytest.mark.parametrize(
    ("url", "payload", "field"),
    [
        pytest.param("/api/v1/organisations", {"name": "Org\u0000", "slug": "nul-org"}, "name", id="organisation"),
        pytest.param("/api/v1/companies", {"name": "Soci\u0000t\u00e9"}, "name", id="company"),
        pytest.param(
            "/api/v1/end-users",
            {"company_id": "a\u0000", "email": "nul@test.simflow", "full_name": "Nul"},
            "company_id",
            id="end-user",
        ),
        pytest.param("/api/v1/plans", _plan(carrier="Orange\u0000"), "carrier", id="plan"),
        pytest.param("/api/v1/catalogue/articles", _article(label="Recharge\u0000"), "label", id="article"),
    ],
)
async def test_nul_character_in_body(
    app_client: httpx.AsyncClient,
    db: Db,
    tenant: Tenant,
    admin_headers: Headers,
    url: str,
    payload: dict[str, Any],
    field: str,
) -> None:
    headers = admin_headers if url.endswith("organisations") else tenant.org_staff
    async with unchanged(db):
        response = await app_client.post(url, json=payload, headers=headers)
    assert_problem(response, 422, field, "NUL")


async def test_nul_character_in_query_and_form(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    async with unchanged(db):
        listing = await app_client.get("/api/v1/sims", params={"company_id": "\u0000"}, headers=tenant.org_staff)
        imported = await _import(app_client, tenant.org_staff, _csv(_row()), {"org_id": "\u0000"})
    # A failed login is audited (a row in audit_log): that is the only write it may make.
    token = await app_client.post("/api/v1/auth/token", data={"username": "a\u0000@x", "password": "x"})
    # SQLite stores NUL and finds nothing; PostgreSQL refuses it: either way a 4xx, never a 500.
    assert listing.status_code in (200, 422), listing.text
    if listing.status_code == 200:
        assert listing.json()["items"] == []
    else:
        assert_problem(listing, 422)
    assert token.status_code in (401, 422), token.text
    assert imported.status_code in (404, 422), imported.text
