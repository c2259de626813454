"""Administration pages of the staff portal over HTTP (ASGI): creation through the API's own handlers
(same messages, nothing written on a refusal), the permission areas (French 403 page), and tenancy:
another organisation's objects answer 404, as on the API."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from domain.enums import PhoneNumberStatus, PlanType, WebhookDeliveryStatus
from domain.models import (
    ApiKey,
    AuditLog,
    Company,
    NumberRange,
    PhoneNumber,
    Plan,
    StaffUser,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.api import test_portal
from tests.api.test_portal import Portal, csrf_from, logged_in
from tests.browser.portal_seed import PASSWORD

portal = test_portal.portal  # the module fixture: its own app and seed

VALID_SIRET = "73282932000074"
BAD_SIRET = "73282932000075"


async def _count(portal: Portal, model: type, *conditions: object) -> int:
    async with portal.app.state.simflow.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


async def test_company_with_a_bad_siret_is_refused_next_to_the_field(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        form = await client.get("/portal/companies/new")
        assert form.status_code == 200
        before = await _count(portal, Company, Company.org_id == portal.seed.org_a)
        response = await client.post(
            "/portal/companies/new",
            data={"csrf_token": csrf_from(form.text), "name": "Société Témoin", "siret": BAD_SIRET},
        )
        assert response.status_code == 400
        assert 'data-error-for="siret"' in response.text
        assert "clé de Luhn invalide" in response.text
        assert 'value="Société Témoin"' in response.text
        assert await _count(portal, Company, Company.org_id == portal.seed.org_a) == before


async def test_plan_article_and_number_range_are_created_with_the_api_rules(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        token = csrf_from((await client.get("/portal/plans/new")).text)
        refused = await client.post(
            "/portal/plans/new",
            data={
                "csrf_token": token,
                "name": "Abonnement sans type",
                "plan_type": "subscription",
                "price": "12,50",
                "carrier": "Orange",
                "currency": "EUR",
                "validity_days": "30",
                "auto_renew_mode": "prompt",
            },
        )
        assert refused.status_code == 400
        assert "obligatoire pour un forfait par abonnement" in refused.text
        created = await client.post(
            "/portal/plans/new",
            data={
                "csrf_token": token,
                "name": "Pro 20 Go",
                "plan_type": "subscription",
                "subscription_kind": "monthly",
                "price": "19,90",
                "purchase_price": "7,50",
                "carrier": "Orange",
                "currency": "EUR",
                "data_allowance_mb": "20480",
                "validity_days": "30",
                "auto_renew_mode": "on",
            },
        )
        assert created.status_code == 303, created.text
        plan = await _plan(portal, "Pro 20 Go")
        assert (plan.price_minor, plan.purchase_price_minor, plan.org_id) == (1990, 750, portal.seed.org_a)
        listing = await client.get("/portal/plans?plan_type=subscription")
        assert "Pro 20 Go" in listing.text and "19,90" in listing.text
        exported = await client.get("/portal/plans?plan_type=subscription&format=csv")
        assert exported.content.startswith(b"\xef\xbb\xbf")
        assert "Pro 20 Go;Abonnement" in exported.text

        page = await client.get("/portal/catalogue")
        article = await client.post(
            "/portal/catalogue",
            data={
                "csrf_token": csrf_from(page.text),
                "code": "OPT-ROAM",
                "label": "Option roaming",
                "kind": "one_off_option",
                "sale_price": "5",
                "purchase_price": "2",
                "currency": "EUR",
                "category": "Mobile",
            },
        )
        assert article.status_code == 303, article.text
        assert "Option roaming" in (await client.get("/portal/catalogue?kind=one_off_option")).text

        page = await client.get("/portal/number-ranges")
        ranges_before = await _count(portal, NumberRange, NumberRange.org_id == portal.seed.org_a)
        bad = await client.post(
            "/portal/number-ranges",
            data={
                "csrf_token": csrf_from(page.text),
                "label": "Plage",
                "first_msisdn": "+33612340100",
                "last_msisdn": "+33612340001",
            },
        )
        assert bad.status_code == 400
        assert await _count(portal, NumberRange, NumberRange.org_id == portal.seed.org_a) == ranges_before
        good = await client.post(
            "/portal/number-ranges",
            data={
                "csrf_token": csrf_from(page.text),
                "label": "Plage test",
                "first_msisdn": "+33612340000",
                "last_msisdn": "+33612340099",
                "carrier": "Orange",
            },
        )
        assert good.status_code == 303, good.text
        detail = await client.get(good.headers["location"])
        assert 'data-usage="size">100<' in detail.text and 'data-usage="free">100<' in detail.text
        assert "Plage test" in (await client.get("/portal/number-ranges")).text
    # The portal's writes are in the audit log, as the API's are.
    assert await _count(portal, AuditLog, AuditLog.action == "plan.created", AuditLog.org_id == portal.seed.org_a) == 1


async def _plan(portal: Portal, name: str) -> Plan:
    async with portal.app.state.simflow.sessionmaker() as session:
        plan = (await session.execute(select(Plan).where(Plan.name == name))).scalar_one()
        return plan


async def test_staff_invited_with_limited_permissions_is_refused_other_pages(portal: Portal) -> None:
    email = f"limite-{portal.seed.suffix}@alpha-telecom.fr"
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/staff")
        assert page.status_code == 200
        invited = await client.post(
            "/portal/staff",
            data={
                "csrf_token": csrf_from(page.text),
                "full_name": "Léa Limitée",
                "email": email,
                "role": "org_staff",
                "password": "Provisoire-2026-portail!",
                "area_sim_card": "write",
                "area_plan": "read",
            },
        )
        assert invited.status_code == 303, invited.text
    async with portal.app.state.simflow.sessionmaker() as session:
        member = (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one()
        assert member.permissions == ["plan:read", "sim_card"]
        assert member.must_change_password
        member.must_change_password = False
        await session.commit()
    async with logged_in(portal, email, "Provisoire-2026-portail!") as client:
        assert (await client.get("/portal/sims")).status_code == 200
        plans_page = await client.get("/portal/plans")
        assert plans_page.status_code == 200
        assert 'id="new-plan"' not in plans_page.text  # read-only on plans: no creation button
        for path in (
            "/portal/companies",
            "/portal/plans/new",
            "/portal/webhook-endpoints",
            "/portal/staff",
            "/portal/api-keys",
            "/portal/audit-log",
        ):
            refused = await client.get(path)
            assert refused.status_code == 403, path
            assert "Accès refusé" in refused.text, path


async def test_api_key_is_shown_once_then_revoked(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/api-keys")
        created = await client.post(
            "/portal/api-keys",
            data={"csrf_token": csrf_from(page.text), "name": "ERP", "scope": "read_only", "expires_in_days": "30"},
        )
        assert created.status_code == 200
        key = re.search(r"data-api-key>([^<]+)<", created.text)
        assert key
        again = await client.get("/portal/api-keys")
        assert key.group(1) not in again.text
        async with portal.app.state.simflow.sessionmaker() as session:
            row = (await session.execute(select(ApiKey).where(ApiKey.org_id == portal.seed.org_a))).scalar_one()
        revoked = await client.post(f"/portal/api-keys/{row.id}/revocation", data={"csrf_token": csrf_from(again.text)})
        assert revoked.status_code == 303
    async with portal.app.state.simflow.sessionmaker() as session:
        assert (await session.get(ApiKey, row.id)).revoked_at is not None  # type: ignore[union-attr]


async def test_other_organisation_gets_404_on_admin_objects(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/number-ranges")
        await client.post(
            "/portal/number-ranges",
            data={
                "csrf_token": csrf_from(page.text),
                "label": "Plage A",
                "first_msisdn": "+33612341000",
                "last_msisdn": "+33612341009",
            },
        )
        staff_page = await client.get("/portal/staff")
    async with portal.app.state.simflow.sessionmaker() as session:
        number_range = (
            await session.execute(select(NumberRange).where(NumberRange.org_id == portal.seed.org_a).limit(1))
        ).scalar_one()
        staff_a = (await session.execute(select(StaffUser).where(StaffUser.email == portal.seed.staff_a))).scalar_one()
    assert staff_page.status_code == 200
    async with logged_in(portal, portal.seed.staff_b) as client:
        for path in (
            f"/portal/number-ranges/{number_range.id}",
            f"/portal/staff/{staff_a.id}",
            f"/portal/companies/{portal.seed.company_a1}",
            f"/portal/webhook-endpoints/{'0' * 32}",
        ):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert "Page introuvable" in response.text
        listing = await client.get("/portal/staff")
        assert portal.seed.staff_a not in listing.text
        token = csrf_from(listing.text)
        revoke = await client.post(f"/portal/staff/{staff_a.id}/permissions", data={"csrf_token": token})
        assert revoke.status_code == 404


async def test_company_list_filters_pages_and_exports(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        listing = await client.get("/portal/companies?name=dupont")
        assert portal.seed.company_a1_name in listing.text
        assert portal.seed.company_a2_name not in listing.text
        assert portal.seed.company_b1_name not in listing.text
        exported = await client.get("/portal/companies?name=dupont&format=csv")
        assert exported.content.startswith(b"\xef\xbb\xbf")
        lines = exported.text.lstrip("\ufeff").splitlines()
        assert lines[0].startswith("id;entreprise;organisation")
        assert len(lines) == 2 and portal.seed.company_a1_name in lines[1]


async def test_webhook_endpoint_refused_by_the_api_checks_creates_nothing(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/webhook-endpoints")
        assert page.status_code == 200
        refused = await client.post(
            "/portal/webhook-endpoints",
            data={"csrf_token": csrf_from(page.text), "url": "http://127.0.0.1:9/hook", "events": "*"},
        )
        assert refused.status_code == 400
        assert 'data-error-for="url"' in refused.text
        no_events = await client.post(
            "/portal/webhook-endpoints", data={"csrf_token": csrf_from(page.text), "url": "https://example.com/h"}
        )
        assert no_events.status_code == 400 and 'data-error-for="events"' in no_events.text
    assert await _count(portal, WebhookEndpoint, WebhookEndpoint.org_id == portal.seed.org_a) == 0


async def test_staff_password_reset_and_deactivation_through_the_api_handlers(portal: Portal) -> None:
    email = f"equipe-{portal.seed.suffix}@alpha-telecom.fr"
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/staff")
        invited = await client.post(
            "/portal/staff",
            data={
                "csrf_token": csrf_from(page.text),
                "full_name": "Équipe",
                "email": email,
                "role": "org_staff",
                "password": "Provisoire-2026-equipe!",
                "area_company": "read",
            },
        )
        member_url = invited.headers["location"].split("?")[0]
        detail = await client.get(member_url)
        token = csrf_from(detail.text)
        weak = await client.post(f"{member_url}/password", data={"csrf_token": token, "new_password": "court"})
        assert weak.status_code == 400 and 'data-error-for="new_password"' in weak.text
        async with logged_in(portal, portal.seed.staff_b) as other:
            other_token = csrf_from((await other.get("/portal/staff")).text)
            refused = await other.post(f"{member_url}/deactivation", data={"csrf_token": other_token})
            assert refused.status_code == 404
        done = await client.post(f"{member_url}/deactivation", data={"csrf_token": token})
        assert done.status_code == 303
    async with portal.app.state.simflow.sessionmaker() as session:
        member = (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one()
        assert member.active is False
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "staff.deactivated", AuditLog.target == f"staff:{member.id}")
        )
        assert audited == 1


async def test_number_range_usage_and_quarantine_in_the_api_and_the_portal(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/number-ranges")
        created = await client.post(
            "/portal/number-ranges",
            data={
                "csrf_token": csrf_from(page.text),
                "label": "Plage quarantaine",
                "first_msisdn": "+33612342000",
                "last_msisdn": "+33612342019",
            },
        )
        range_id = created.headers["location"].rsplit("/", 1)[1]
        async with portal.app.state.simflow.sessionmaker.begin() as session:
            for n, status in enumerate([PhoneNumberStatus.ASSIGNED] + [PhoneNumberStatus.QUARANTINED] * 3):
                session.add(
                    PhoneNumber(
                        org_id=portal.seed.org_a,
                        msisdn=f"+336123420{n:02d}",
                        range_id=range_id,
                        status=status,
                        quarantine_until=datetime(2027, 1, 1, tzinfo=UTC) if n else None,
                    )
                )
        usage = (await client.get(f"/api/v1/number-ranges/{range_id}")).json()
        assert (usage["size"], usage["allocated"], usage["quarantined"], usage["free"]) == (20, 1, 3, 16)
        first = (await client.get(f"/api/v1/number-ranges/{range_id}/numbers?status=quarantined&limit=2")).json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        rest = await client.get(
            f"/api/v1/number-ranges/{range_id}/numbers?status=quarantined&limit=2&cursor={first['next_cursor']}"
        )
        numbers = {n["msisdn"] for n in first["items"] + rest.json()["items"]}
        assert numbers == {"+33612342001", "+33612342002", "+33612342003"}
        detail = await client.get(f"/portal/number-ranges/{range_id}")
        assert 'data-usage="quarantined">3<' in detail.text and 'data-usage="free">16<' in detail.text
        assert '<td class="mono">+33612342003<' in detail.text and '<td class="mono">+33612342000<' not in detail.text
    async with logged_in(portal, portal.seed.staff_b) as other:
        assert (await other.get(f"/api/v1/number-ranges/{range_id}")).status_code == 404
        assert (await other.get(f"/api/v1/number-ranges/{range_id}/numbers")).status_code == 404
        assert (await other.get(f"/portal/number-ranges/{range_id}")).status_code == 404


async def test_company_edit_shows_errors_next_to_fields_then_saves(portal: Portal) -> None:
    company_id = portal.seed.company_a2
    path = f"/portal/companies/{company_id}/edit"
    async with portal.app.state.simflow.sessionmaker() as session:
        before = await session.get(Company, company_id)
        assert before is not None
    async with logged_in(portal, portal.seed.staff_a) as client:
        detail = await client.get(f"/portal/companies/{company_id}")
        assert f'href="{path}"' in detail.text
        form = await client.get(path)
        assert form.status_code == 200 and f'value="{before.name}"' in form.text
        data = {
            "csrf_token": csrf_from(form.text),
            "name": before.name,
            "siret": "",
            "vat_number": "FR00732829320",
            "billing_email": "factures@example.com",
            "address": "3 rue du Test, Paris",
        }
        refused = await client.post(path, data=data)
        assert refused.status_code == 400
        assert 'data-error-for="vat_number"' in refused.text
        assert 'value="3 rue du Test, Paris"' in refused.text  # what was typed is kept
        async with portal.app.state.simflow.sessionmaker() as session:
            unchanged = await session.get(Company, company_id)
            assert unchanged is not None
            assert (unchanged.vat_number, unchanged.address) == (before.vat_number, before.address)
        saved = await client.post(path, data={**data, "vat_number": "FR44732829320"})
        assert saved.status_code == 303 and saved.headers["location"].endswith("?updated=1")
        shown = await client.get(saved.headers["location"])
        assert "Entreprise modifiée" in shown.text and "3 rue du Test, Paris" in shown.text
    async with portal.app.state.simflow.sessionmaker() as session:
        after = await session.get(Company, company_id)
        assert after is not None
        assert (after.vat_number, after.address, after.billing_email) == (
            "FR44732829320",
            "3 rue du Test, Paris",
            "factures@example.com",
        )
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.target == f"company:{company_id}", AuditLog.action == "company.updated")
        )
        assert audited == 1
    # Company staff see no edit button and are refused the page; another organisation gets 404.
    async with logged_in(portal, portal.seed.staff_a1) as client:
        own = await client.get(f"/portal/companies/{portal.seed.company_a1}")
        assert own.status_code == 200 and "/edit" not in own.text
        assert (await client.get(f"/portal/companies/{portal.seed.company_a1}/edit")).status_code == 403
    async with logged_in(portal, portal.seed.staff_b) as client:
        assert (await client.get(path)).status_code == 404


async def test_plan_edit_keeps_the_plan_on_error_then_saves(portal: Portal) -> None:
    async with portal.app.state.simflow.sessionmaker() as session:
        plan = Plan(
            org_id=portal.seed.org_a,
            name="Forfait à modifier",
            plan_type=PlanType.PREPAID,
            price_minor=1000,
            carrier="Orange",
        )
        session.add(plan)
        await session.commit()
        plan_id = plan.id
    path = f"/portal/plans/{plan_id}/edit"
    async with logged_in(portal, portal.seed.staff_a) as client:
        listing = await client.get("/portal/plans")
        assert f'href="{path}"' in listing.text
        form = await client.get(path)
        assert form.status_code == 200 and 'value="10,00"' in form.text
        data = {
            "csrf_token": csrf_from(form.text),
            "name": "Forfait modifié",
            "price": "0,50",
            "validity_days": "60",
            "auto_renew_mode": "on",
        }
        refused = await client.post(path, data=data)
        assert refused.status_code == 400 and 'data-error-for="price"' in refused.text
        assert 'value="Forfait modifié"' in refused.text
        async with portal.app.state.simflow.sessionmaker() as session:
            kept = await session.get(Plan, plan_id)
            assert kept is not None and (kept.name, kept.price_minor, kept.validity_days) == (
                "Forfait à modifier",
                1000,
                30,
            )
        saved = await client.post(path, data={**data, "price": "14,90"})
        assert saved.status_code == 303, saved.text
        assert "Forfait modifié" in (await client.get(saved.headers["location"])).text
    async with portal.app.state.simflow.sessionmaker() as session:
        after = await session.get(Plan, plan_id)
        assert after is not None
        assert (after.name, after.price_minor, after.validity_days, after.auto_renew_mode.value) == (
            "Forfait modifié",
            1490,
            60,
            "on",
        )
    async with logged_in(portal, portal.seed.staff_b) as client:
        assert (await client.get(path)).status_code == 404


async def test_redelivery_button_and_a_refused_redelivery_changes_nothing(portal: Portal) -> None:
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        endpoint = WebhookEndpoint(
            org_id=portal.seed.org_a, url="https://hooks.example.com/h", secret_encrypted="x", events=["*"]
        )
        session.add(endpoint)
        await session.flush()
        failed = WebhookDelivery(
            org_id=portal.seed.org_a,
            endpoint_id=endpoint.id,
            event_id="evt_failed",
            event_type="company.updated",
            status=WebhookDeliveryStatus.FAILED,
            attempts=1,
        )
        running = WebhookDelivery(
            org_id=portal.seed.org_a,
            endpoint_id=endpoint.id,
            event_id="evt_running",
            event_type="company.updated",
            status=WebhookDeliveryStatus.PENDING,
            attempts=1,
        )
        session.add_all([failed, running])
    path = f"/portal/webhook-endpoints/{endpoint.id}"
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get(path)
        assert f'action="{path}/deliveries/{failed.id}/redeliveries"' in page.text
        assert f"{path}/deliveries/{running.id}/redeliveries" not in page.text  # in progress: no button
        refused = await client.post(
            f"{path}/deliveries/{running.id}/redeliveries", data={"csrf_token": csrf_from(page.text)}
        )
        assert refused.status_code == 409 and "déjà en cours" in refused.text
    async with portal.app.state.simflow.sessionmaker() as session:
        row = await session.get(WebhookDelivery, running.id)
        assert row is not None and (row.status, row.redeliveries, row.workflow_id) == (
            WebhookDeliveryStatus.PENDING,
            0,
            None,
        )
    async with logged_in(portal, portal.seed.staff_b) as client:
        page = await client.get("/portal/webhook-endpoints")
        other = await client.post(
            f"{path}/deliveries/{failed.id}/redeliveries", data={"csrf_token": csrf_from(page.text)}
        )
        assert other.status_code == 404


# --- the four lists paged with the API's own cursor -------------------------------------------------

NEXT_LINK_RE = re.compile(r'<a href="([^"]+)" rel="next">Page suivante')


async def _organisation_with_long_lists(portal: Portal) -> tuple[str, dict[str, set[str]]]:
    """A new organisation with PAGE_SIZE + 1 staff (its logged-in member included), API keys, webhook
    endpoints and number ranges, written straight to the database; its member's e-mail and the ids."""
    from api.portal.admin import PAGE_SIZE
    from domain.enums import ApiKeyScope, StaffRole
    from domain.models import Organisation
    from domain.security import hash_password

    suffix = uuid.uuid4().hex[:8]
    count = PAGE_SIZE + 1
    password_hash = hash_password(PASSWORD)
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        org = Organisation(name=f"Gamma {suffix}", slug=f"gamma-{suffix}")
        session.add(org)
        await session.flush()
        staff = [
            StaffUser(
                email=f"membre-{i:03d}-{suffix}@gamma.test",
                password_hash=password_hash,
                role=StaffRole.ORG_STAFF,
                org_id=org.id,
                permissions=["*"],
            )
            for i in range(count)
        ]
        keys = [
            ApiKey(
                org_id=org.id,
                name=f"Clé {i}",
                prefix=f"g{suffix}{i:03d}",
                key_hash="x" * 64,
                scope=ApiKeyScope.READ_ONLY,
            )
            for i in range(count)
        ]
        endpoints = [
            WebhookEndpoint(org_id=org.id, url=f"https://hooks.gamma.test/{i}", secret_encrypted="x", events=["*"])
            for i in range(count)
        ]
        ranges = [
            NumberRange(
                org_id=org.id, label=f"Plage {i}", first_msisdn=f"+3370{i:03d}0000", last_msisdn=f"+3370{i:03d}0009"
            )
            for i in range(count)
        ]
        session.add_all([*staff, *keys, *endpoints, *ranges])
        await session.flush()
        ids = {
            "staff": {s.id for s in staff},
            "api-keys": {k.id for k in keys},
            "webhook-endpoints": {e.id for e in endpoints},
            "number-ranges": {r.id for r in ranges},
        }
    return staff[0].email, ids


LONG_LISTS = {
    "staff": "data-staff-id",
    "api-keys": "data-key-id",
    "webhook-endpoints": "data-endpoint-id",
    "number-ranges": "data-range-id",
}


def _row_ids(html: str, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([0-9a-f]{{32}})"', html)


async def test_staff_keys_endpoints_and_ranges_page_with_the_api_cursor(portal: Portal) -> None:
    from api.portal.admin import PAGE_SIZE

    email, ids = await _organisation_with_long_lists(portal)
    async with logged_in(portal, email) as client:
        for name, attribute in LONG_LISTS.items():
            first = await client.get(f"/portal/{name}")
            assert first.status_code == 200, name
            first_ids = _row_ids(first.text, attribute)
            assert len(first_ids) == PAGE_SIZE, name
            assert "Première page" not in first.text, name
            link = NEXT_LINK_RE.search(first.text)
            assert link, name
            second = await client.get(html.unescape(link.group(1)))
            assert second.status_code == 200, name
            second_ids = _row_ids(second.text, attribute)
            assert len(second_ids) == 1, name
            assert set(first_ids) | set(second_ids) == ids[name], name
            assert "Page suivante" not in second.text, name
            assert f'<a href="/portal/{name}">« Première page</a>' in second.text, name
            exported = await client.get(f"/portal/{name}?format=csv")
            assert exported.content.startswith(b"\xef\xbb\xbf"), name
            lines = exported.text.lstrip("\ufeff").splitlines()
            assert lines[0].startswith("id;"), name
            assert {line.split(";")[0] for line in lines[1:]} == ids[name], name
    async with logged_in(portal, portal.seed.staff_b) as client:
        for name, attribute in LONG_LISTS.items():
            other = await client.get(f"/portal/{name}")
            assert other.status_code == 200, name
            assert not set(_row_ids(other.text, attribute)) & ids[name], name
            exported = await client.get(f"/portal/{name}?format=csv")
            assert not {line.split(";")[0] for line in exported.text.splitlines()[1:]} & ids[name], name
