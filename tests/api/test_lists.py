"""The API lists what the portal lists: lines, companies, end users, plans, catalogue articles — filtered,
paged with a cursor (no duplicate, no gap), scoped to the caller's subtree; the line export as CSV; a SIM's
detail names its current line."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.enums import ArticleKind, LineStatus, PlanType, SimStatus, StaffRole
from domain.identifiers import msisdn_national
from domain.models import CatalogueArticle, Company, Line, Plan, SimCard, WebhookEndpoint
from tests.api._security_support import add_end_user, add_staff_member, bearer
from tests.api._support import assert_problem, random_iccid, random_imsi
from tests.api.conftest import Tenant, make_tenant

Db = async_sessionmaker[AsyncSession]
Headers = dict[str, str]


def _msisdn() -> str:
    # 067x: metropolitan mobile numbers only (069x are overseas and are not French-region numbers).
    return "+3367" + str(uuid.uuid4().int)[:7]


async def _plan(db: Db, org_id: str, company_id: str | None = None, plan_type: PlanType = PlanType.PREPAID) -> str:
    plan = Plan(
        org_id=org_id,
        company_id=company_id,
        name=f"Forfait {uuid.uuid4().hex[:6]}",
        plan_type=plan_type,
        price_minor=1000,
        carrier="Orange",
    )
    async with db.begin() as session:
        session.add(plan)
    return plan.id


async def _line(
    db: Db,
    org_id: str,
    company_id: str,
    *,
    plan_id: str | None = None,
    status: LineStatus = LineStatus.ACTIVE,
    end_user_id: str | None = None,
    with_sim: bool = False,
) -> tuple[str, str, str | None]:
    """(line id, msisdn, iccid of its SIM or None)."""
    iccid = random_iccid() if with_sim else None
    msisdn = _msisdn()
    async with db.begin() as session:
        sim = None
        if iccid is not None:
            sim = SimCard(
                org_id=org_id,
                iccid=iccid,
                imsi=random_imsi(),
                carrier="Orange",
                status=SimStatus.ACTIVE,
                company_id=company_id,
                end_user_id=end_user_id,
            )
            session.add(sim)
            await session.flush()
        line = Line(
            org_id=org_id,
            company_id=company_id,
            end_user_id=end_user_id,
            sim_id=sim.id if sim else None,
            plan_id=plan_id,
            msisdn=msisdn,
            status=status,
        )
        session.add(line)
    return line.id, msisdn, iccid


async def _walk(client: httpx.AsyncClient, path: str, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following `next_cursor`; fails on a repeated page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= int(params.get("limit", 100))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert cursor not in seen_cursors
        seen_cursors.add(cursor)


async def _ids(client: httpx.AsyncClient, path: str, headers: Headers, **params: Any) -> list[str]:
    return [item["id"] for item in await _walk(client, path, headers, **params)]


@pytest.fixture
async def two_orgs(db: Db, app_client: httpx.AsyncClient) -> tuple[Tenant, Tenant]:
    return await make_tenant(db, app_client), await make_tenant(db, app_client)


async def test_line_list_walks_every_line_once_and_filters(
    app_client: httpx.AsyncClient, db: Db, two_orgs: tuple[Tenant, Tenant]
) -> None:
    a, b = two_orgs
    plan_1 = await _plan(db, a.org_id)
    plan_2 = await _plan(db, a.org_id, a.company_id)
    own = [await _line(db, a.org_id, a.company_id, plan_id=plan_1, with_sim=n % 2 == 0) for n in range(7)]
    suspended = await _line(db, a.org_id, a.company_id, plan_id=plan_2, status=LineStatus.SUSPENDED, with_sim=True)
    sibling = [await _line(db, a.org_id, a.sibling_company_id, plan_id=plan_1) for _ in range(3)]
    foreign = [await _line(db, b.org_id, b.company_id) for _ in range(2)]
    every_a = {line_id for line_id, _, _ in [*own, suspended, *sibling]}

    # Cursor walk over 6 pages of 2: every line of the organisation once, in id order, none of the other.
    walked = await _ids(app_client, "/api/v1/lines", a.org_staff, limit=2)
    assert len(walked) == len(set(walked)) == len(every_a)
    assert set(walked) == every_a and walked == sorted(walked)
    assert not {line_id for line_id, _, _ in foreign} & set(walked)

    async def listed(**params: Any) -> set[str]:
        return set(await _ids(app_client, "/api/v1/lines", a.org_staff, limit=3, **params))

    assert await listed(status="suspended") == {suspended[0]}
    assert await listed(company_id=a.sibling_company_id) == {line_id for line_id, _, _ in sibling}
    assert await listed(plan_id=plan_2) == {suspended[0]}
    assert await listed(plan_id=plan_1, company_id=a.company_id) == {line_id for line_id, _, _ in own}
    line_id, msisdn, iccid = suspended
    assert iccid is not None
    spaced = " ".join(iccid[i : i + 4] for i in range(0, len(iccid), 4))
    assert await listed(iccid=iccid) == await listed(iccid=spaced) == {line_id}
    national = msisdn_national(msisdn)
    assert await listed(msisdn=msisdn) == {line_id}
    assert await listed(msisdn=" ".join(national[i : i + 2] for i in range(0, 10, 2))) == {line_id}
    assert await listed(company_id=b.company_id) == set()  # another organisation's company: nothing

    page = (await app_client.get("/api/v1/lines", params={"iccid": iccid}, headers=a.org_staff)).json()
    assert page["items"][0]["iccid"] == iccid and page["items"][0]["msisdn"] == msisdn
    assert page["items"][0]["status"] == "suspended" and page["next_cursor"] is None


async def test_lists_are_scoped_to_the_callers_subtree(
    app_client: httpx.AsyncClient, db: Db, admin_headers: Headers, two_orgs: tuple[Tenant, Tenant]
) -> None:
    a, b = two_orgs
    general_a, own_a, sibling_a = (
        await _plan(db, a.org_id),
        await _plan(db, a.org_id, a.company_id),
        await _plan(db, a.org_id, a.sibling_company_id),
    )
    general_b = await _plan(db, b.org_id)
    user_email, user_id = await add_end_user(db, a.org_id, a.company_id)
    _, sibling_user = await add_end_user(db, a.org_id, a.sibling_company_id)
    _, b_user = await add_end_user(db, b.org_id, b.company_id)
    users_line = await _line(db, a.org_id, a.company_id, end_user_id=user_id)
    company_line = await _line(db, a.org_id, a.company_id)
    sibling_line = await _line(db, a.org_id, a.sibling_company_id)
    b_line = await _line(db, b.org_id, b.company_id)

    async def ids(path: str, headers: Headers, **params: Any) -> set[str]:
        return set(await _ids(app_client, path, headers, limit=500, **params))

    # Organisation staff: everything of their organisation, nothing of the other, whatever the filter.
    assert await ids("/api/v1/lines", a.org_staff) == {users_line[0], company_line[0], sibling_line[0]}
    assert await ids("/api/v1/companies", a.org_staff) == {a.company_id, a.sibling_company_id}
    assert await ids("/api/v1/plans", a.org_staff) == {general_a, own_a, sibling_a}
    assert await ids("/api/v1/end-users", a.org_staff) == {user_id, sibling_user}
    assert await ids("/api/v1/lines", a.org_staff, company_id=b.company_id) == set()
    assert await ids("/api/v1/end-users", a.org_staff, company_id=b.company_id) == set()
    assert await ids("/api/v1/plans", b.org_staff) == {general_b}
    assert await ids("/api/v1/companies", b.org_staff) == {b.company_id, b.sibling_company_id}

    # Company staff: their company only, and the organisation's general plans.
    assert await ids("/api/v1/lines", a.company_staff) == {users_line[0], company_line[0]}
    assert await ids("/api/v1/lines", a.company_staff, company_id=a.sibling_company_id) == set()
    assert await ids("/api/v1/companies", a.company_staff) == {a.company_id}
    assert await ids("/api/v1/plans", a.company_staff) == {general_a, own_a}
    assert await ids("/api/v1/end-users", a.company_staff) == {user_id}

    # An end user: their own line and account; the general plans.
    user = await bearer(app_client, user_email)
    assert await ids("/api/v1/lines", user) == {users_line[0]}
    assert await ids("/api/v1/end-users", user) == {user_id}
    assert await ids("/api/v1/plans", user) == {general_a}

    # The platform admin sees both organisations.
    both = await ids("/api/v1/end-users", admin_headers, email=user_email)
    assert both == {user_id}
    assert {a.company_id, b.company_id} <= await ids("/api/v1/companies", admin_headers)
    assert {users_line[0], b_line[0]} <= await ids("/api/v1/lines", admin_headers)
    assert b_user in await ids("/api/v1/end-users", admin_headers, company_id=b.company_id)


async def test_lists_need_the_area_permission(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email, _ = await add_staff_member(db, role=StaffRole.ORG_STAFF, org_id=tenant.org_id, permissions=["plan:read"])
    headers = await bearer(app_client, email)
    assert (await app_client.get("/api/v1/plans", headers=headers)).status_code == 200
    assert_problem(await app_client.get("/api/v1/lines", headers=headers), 403)
    assert_problem(await app_client.get("/api/v1/companies", headers=headers), 403)


async def test_companies_end_users_plans_and_articles_filter_and_page(
    app_client: httpx.AsyncClient, db: Db, two_orgs: tuple[Tenant, Tenant]
) -> None:
    a, _ = two_orgs
    async with db.begin() as session:
        virtual = Company(
            org_id=a.org_id, name="Flotte Virtuelle Sud", is_virtual=True, customer_reference=uuid.uuid4().hex
        )
        session.add(virtual)
        for n in range(5):
            session.add(
                CatalogueArticle(
                    org_id=a.org_id,
                    code=f"ART-{n}",
                    label=f"Article {n}",
                    kind=ArticleKind.PERIODIC_OPTION if n < 3 else ArticleKind.HARDWARE,
                    sale_price_minor=500,
                    category="Mobile" if n % 2 else "Données",
                )
            )
    companies = await _ids(app_client, "/api/v1/companies", a.org_staff, limit=1)
    assert len(companies) == len(set(companies)) == 3
    assert await _ids(app_client, "/api/v1/companies", a.org_staff, name="virtuelle") == [virtual.id]
    assert await _ids(app_client, "/api/v1/companies", a.org_staff, is_virtual="true") == [virtual.id]
    assert set(await _ids(app_client, "/api/v1/companies", a.org_staff, is_virtual="false")) == {
        a.company_id,
        a.sibling_company_id,
    }

    email, user_id = await add_end_user(db, a.org_id, a.company_id)
    await add_end_user(db, a.org_id, a.company_id)
    await add_end_user(db, a.org_id, a.sibling_company_id)
    users = await _ids(app_client, "/api/v1/end-users", a.org_staff, limit=1)
    assert len(users) == len(set(users)) == 3
    assert len(await _ids(app_client, "/api/v1/end-users", a.org_staff, company_id=a.company_id)) == 2
    assert await _ids(app_client, "/api/v1/end-users", a.org_staff, email=email.upper()) == [user_id]

    general = await _plan(db, a.org_id, plan_type=PlanType.PAYGO)
    own = await _plan(db, a.org_id, a.company_id)
    sibling = await _plan(db, a.org_id, a.sibling_company_id)
    plans = await _ids(app_client, "/api/v1/plans", a.org_staff, limit=2)
    assert sorted(plans) == plans and set(plans) == {general, own, sibling}
    assert await _ids(app_client, "/api/v1/plans", a.org_staff, plan_type="paygo") == [general]
    assert set(await _ids(app_client, "/api/v1/plans", a.org_staff, company_id=a.company_id)) == {general, own}

    articles = await _walk(app_client, "/api/v1/catalogue/articles", a.org_staff, limit=2)
    assert sorted(item["code"] for item in articles) == [f"ART-{n}" for n in range(5)]
    hardware = await _walk(app_client, "/api/v1/catalogue/articles", a.org_staff, kind="hardware")
    assert sorted(item["code"] for item in hardware) == ["ART-3", "ART-4"]
    data = await _walk(app_client, "/api/v1/catalogue/articles", a.org_staff, category="données")
    assert sorted(item["code"] for item in data) == ["ART-0", "ART-2", "ART-4"]
    assert await _walk(app_client, "/api/v1/catalogue/articles", a.company_staff, kind="hardware")  # org-wide


def _cursor(digits: str) -> str:
    return base64.urlsafe_b64encode(digits.encode()).decode()


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/lines", {"status": "vivante"}, "status"),
        ("/api/v1/lines", {"company_id": "not-an-id"}, "company_id"),
        ("/api/v1/lines", {"plan_id": "0" * 31}, "plan_id"),
        ("/api/v1/lines", {"iccid": "8933150319001234563"}, "iccid"),  # wrong Luhn key
        ("/api/v1/lines", {"msisdn": "01 23 45 67 89"}, "msisdn"),  # a fixed line
        ("/api/v1/lines", {"msisdn": "abcdef"}, "msisdn"),
        ("/api/v1/lines", {"iccid": "89 33 abc"}, "iccid"),
        ("/api/v1/lines", {"cursor": "!!"}, "cursor"),
        ("/api/v1/lines", {"cursor": _cursor("9" * 39)}, "cursor"),  # beyond any id
        ("/api/v1/lines", {"limit": "0"}, "limit"),
        ("/api/v1/lines/export.csv", {"msisdn": "01 23 45 67 89"}, "msisdn"),
        ("/api/v1/companies", {"is_virtual": "peut-être"}, "is_virtual"),
        ("/api/v1/companies", {"name": "   "}, "name"),
        ("/api/v1/end-users", {"email": "personne"}, "email"),
        ("/api/v1/plans", {"plan_type": "forfait"}, "plan_type"),
        ("/api/v1/catalogue/articles", {"kind": "gadget"}, "kind"),
        ("/api/v1/sims", {"cursor": _cursor("1" * 22)}, "cursor"),
    ],
)
async def test_bad_filter_values_are_refused_naming_the_field(
    app_client: httpx.AsyncClient, tenant: Tenant, path: str, params: dict[str, str], field: str
) -> None:
    assert_problem(await app_client.get(path, params=params, headers=tenant.org_staff), 422, field)


async def test_line_export_is_a_spreadsheet_safe_csv_of_the_filtered_lines(
    app_client: httpx.AsyncClient, db: Db, two_orgs: tuple[Tenant, Tenant]
) -> None:
    a, b = two_orgs
    async with db.begin() as session:
        formula = await session.get(Company, a.sibling_company_id)
        assert formula is not None
        formula.name = '=HYPERLINK("http://evil.example","x")'
    active = await _line(db, a.org_id, a.company_id, with_sim=True)
    await _line(db, a.org_id, a.company_id, status=LineStatus.SUSPENDED)
    sibling = await _line(db, a.org_id, a.sibling_company_id)
    await _line(db, b.org_id, b.company_id)

    response = await app_client.get("/api/v1/lines/export.csv", headers=a.org_staff)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["Identifiant", "Numéro", "ICCID", "Statut"]
    by_id = {row[0]: row for row in rows[1:]}
    assert len(by_id) == 3 and sibling[0] in by_id
    assert by_id[active[0]][1:4] == [active[1], active[2], "Actif"]
    assert by_id[sibling[0]][4] == '\'=HYPERLINK("http://evil.example","x")'

    filtered = await app_client.get("/api/v1/lines/export.csv", params={"status": "active"}, headers=a.org_staff)
    lines = filtered.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 3 and all(";Actif;" in line for line in lines[1:])

    mine = await app_client.get("/api/v1/lines/export.csv", headers=a.company_staff)
    assert sibling[0] not in mine.text and active[0] in mine.text


async def test_sim_detail_names_its_current_line(
    app_client: httpx.AsyncClient, db: Db, two_orgs: tuple[Tenant, Tenant]
) -> None:
    a, _ = two_orgs
    line_id, _, iccid = await _line(db, a.org_id, a.company_id, with_sim=True)
    ended_id, _, ended_iccid = await _line(db, a.org_id, a.company_id, status=LineStatus.TERMINATED, with_sim=True)
    assert iccid is not None and ended_iccid is not None
    blank = random_iccid()
    async with db.begin() as session:
        session.add(SimCard(org_id=a.org_id, iccid=blank, imsi=random_imsi(), carrier="Orange"))

    detail = (await app_client.get(f"/api/v1/sims/{iccid}", headers=a.org_staff)).json()
    assert detail["line_id"] == line_id
    found = (await app_client.get(f"/api/v1/lines/{detail['line_id']}", headers=a.org_staff)).json()
    assert found["iccid"] == iccid
    assert (await app_client.get(f"/api/v1/sims/{ended_iccid}", headers=a.org_staff)).json()["line_id"] is None
    assert (await app_client.get(f"/api/v1/sims/{blank}", headers=a.org_staff)).json()["line_id"] is None
    assert ended_id  # the terminated line is still listed
    assert ended_id in await _ids(app_client, "/api/v1/lines", a.org_staff, status="terminated")


async def _walk_links(client: httpx.AsyncClient, path: str, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    """Every item of a bare-array list, following its `Link: <…>; rel="next"` headers."""
    response = await client.get(path, params=params, headers=headers)
    items: list[dict[str, Any]] = []
    for _ in range(100):
        assert response.status_code == 200, response.text
        items.extend(response.json())
        link = response.headers.get("link")
        if link is None:
            return items
        assert link.endswith('>; rel="next"'), link
        response = await client.get(link[1 : link.index(">")], headers=headers)
    raise AssertionError("the pages never end")


async def test_staff_keys_endpoints_and_ranges_page_in_their_own_order(
    app_client: httpx.AsyncClient, db: Db, two_orgs: tuple[Tenant, Tenant]
) -> None:
    a, b = two_orgs
    for n in range(4):
        await add_staff_member(db, org_id=a.org_id, email=f"z{n}-{uuid.uuid4().hex[:6]}@test.simflow")
    for n in range(5):
        created = await app_client.post(
            "/api/v1/api-keys", json={"name": f"clé {n}", "scope": "read_only"}, headers=a.org_staff
        )
        assert created.status_code == 201, created.text
    async with db.begin() as session:
        for n in range(5):
            session.add(
                WebhookEndpoint(
                    org_id=a.org_id, url=f"https://hooks.example.com/{n}", secret_encrypted="x", events=["*"]
                )
            )
    prefix = "+3367" + str(uuid.uuid4().int)[:3]
    for n in range(5):
        first = f"{prefix}{n}000"
        created = await app_client.post(
            "/api/v1/number-ranges",
            json={"label": f"Plage {n}", "first_msisdn": first, "last_msisdn": first[:-3] + "009"},
            headers=a.org_staff,
        )
        assert created.status_code == 201, created.text
    await add_staff_member(db, org_id=b.org_id)  # another organisation's, never listed

    for path, key in (
        ("/api/v1/staff", "email"),
        ("/api/v1/api-keys", "id"),
        ("/api/v1/webhook-endpoints", "id"),
        ("/api/v1/number-ranges", "first_msisdn"),
    ):
        whole = await app_client.get(path, headers=a.org_staff)
        assert whole.status_code == 200 and "link" not in whole.headers, whole.text
        walked = await _walk_links(app_client, path, a.org_staff, limit=2)
        # The same rows in the same (default) order, page after page: no duplicate, no gap.
        assert [item[key] for item in walked] == [item[key] for item in whole.json()], path
        assert len(walked) >= 4
        assert_problem(await app_client.get(path, params={"cursor": "YWJj"}, headers=a.org_staff), 422, "cursor")
    emails = [s["email"] for s in await _walk_links(app_client, "/api/v1/staff", a.org_staff, limit=3)]
    assert emails == sorted(emails)
    keys = await _walk_links(app_client, "/api/v1/api-keys", a.org_staff, limit=2)
    assert [k["created_at"] for k in keys] == sorted((k["created_at"] for k in keys), reverse=True)
