"""Staff portal over HTTP (ASGI, no browser): login and session cookie, CSRF, redirects, tenant scoping,
dynamic table cookie, htmx partials, French 404 pages. Runs on SQLite and, in CI, PostgreSQL."""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from api.app import create_app
from api.portal.columns import COLUMNS_COOKIE, ColumnLayout
from infra.settings import Settings
from tests.browser.portal_seed import PASSWORD, TEMPORAL_UI, PortalSeed, seed_portal
from tests.conftest import ADMIN_PASSWORD, TEST_SECRETS

CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@dataclass(frozen=True)
class Portal:
    app: FastAPI
    seed: PortalSeed
    admin_email: str


@pytest_asyncio.fixture(scope="module")
async def portal(database_url: str) -> AsyncIterator[Portal]:
    admin_email = f"portal-admin-{uuid.uuid4().hex[:8]}@test.simflow"
    settings = Settings(
        database_url=database_url,
        temporal_address="127.0.0.1:9",  # never reached: the portal pages do not need Temporal
        temporal_ui_url=TEMPORAL_UI,
        bootstrap_admin_email=admin_email,
        bootstrap_admin_password=ADMIN_PASSWORD,
        **TEST_SECRETS,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.simflow.sessionmaker.begin() as session:
            seed = await session.run_sync(seed_portal)
        yield Portal(app, seed, admin_email)


def browser(portal: Portal, address: tuple[str, int] | None = None) -> httpx.AsyncClient:
    """A fresh cookie jar, like a new browser profile; `address`: the client's own IP (its own login budget)."""
    transport = httpx.ASGITransport(app=portal.app, client=address) if address else httpx.ASGITransport(app=portal.app)
    return httpx.AsyncClient(transport=transport, base_url="http://portal.test")


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1)


@asynccontextmanager
async def logged_in(
    portal: Portal, email: str, password: str = PASSWORD, *, address: tuple[str, int] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(portal, address) as client:
        form = await client.get("/portal/login")
        response = await client.post(
            "/portal/login",
            data={"email": email, "password": password, "csrf_token": csrf_from(form.text), "next": "/portal/sims"},
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/portal/sims"
        yield client


# --- login, session, redirects ---------------------------------------------------------------------


async def test_unauthenticated_pages_redirect_to_login(portal: Portal) -> None:
    async with browser(portal) as client:
        for path in (
            "/portal",
            "/portal/sims?status=active",
            "/portal/companies",
            f"/portal/sims/{portal.seed.iccids['a_active']}",
        ):
            response = await client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/portal/login?next={quote(path, safe='')}"
        htmx = await client.get("/portal/sims", headers={"HX-Request": "true", "HX-Target": "sim-results"})
        assert htmx.status_code == 401
        assert htmx.headers["HX-Redirect"].startswith("/portal/login?next=")


async def test_login_page_is_french_and_sets_csrf_cookie(portal: Portal) -> None:
    async with browser(portal) as client:
        response = await client.get("/portal/login")
        assert response.status_code == 200
        assert '<html lang="fr">' in response.text
        assert '<meta charset="utf-8">' in response.text
        assert "Connexion au portail" in response.text
        assert "simflow_csrf=" in response.headers["set-cookie"]
        assert "HttpOnly" in response.headers["set-cookie"]
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


async def test_wrong_password_rerenders_form_with_french_error(portal: Portal) -> None:
    async with browser(portal) as client:
        token = csrf_from((await client.get("/portal/login")).text)
        response = await client.post(
            "/portal/login", data={"email": portal.seed.staff_a, "password": "mauvais", "csrf_token": token}
        )
        assert response.status_code == 401
        assert "Adresse e-mail ou mot de passe incorrect" in response.text
        assert f'value="{portal.seed.staff_a}"' in response.text
        assert "simflow_session" not in response.headers.get("set-cookie", "")


async def test_login_sets_strict_httponly_session_cookie(portal: Portal) -> None:
    async with browser(portal) as client:
        token = csrf_from((await client.get("/portal/login")).text)
        response = await client.post(
            "/portal/login",
            data={"email": portal.seed.staff_a, "password": PASSWORD, "csrf_token": token, "next": "/portal/companies"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/portal/companies"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("simflow_session="))
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        home = await client.get("/portal/companies")
        assert home.status_code == 200
        assert portal.seed.staff_a in home.text
        # the same cookie authenticates the JSON API (api.deps reads it too)
        api = await client.get(f"/api/v1/companies/{portal.seed.company_a1}")
        assert api.status_code == 200


async def test_login_never_redirects_off_portal(portal: Portal) -> None:
    async with browser(portal) as client:
        token = csrf_from((await client.get("/portal/login")).text)
        for evil in ("https://evil.example/", "//evil.example/portal", "/api/v1/sims", "/portal/login"):
            response = await client.post(
                "/portal/login",
                data={"email": portal.seed.staff_a, "password": PASSWORD, "csrf_token": token, "next": evil},
            )
            assert response.headers["location"] == "/portal/home", evil
            client.cookies.delete("simflow_session")
            token = csrf_from((await client.get("/portal/login")).text)


async def test_login_asks_for_the_second_factor_when_enabled(portal: Portal) -> None:
    from domain.enums import StaffRole
    from domain.models import StaffUser
    from domain.security import hash_password, new_totp_secret, totp_code
    from domain.services.accounts import AccountKeys

    settings: Settings = portal.app.state.simflow.settings
    secret = new_totp_secret()
    email = f"totp-{uuid.uuid4().hex[:8]}@alpha.test"
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            StaffUser(
                email=email,
                password_hash=hash_password(PASSWORD),
                role=StaffRole.ORG_STAFF,
                org_id=portal.seed.org_a,
                totp_enabled=True,
                totp_secret_encrypted=AccountKeys.from_secret(settings.secrets_key.get_secret_value()).box.seal(secret),
            )
        )
    async with browser(portal) as client:
        token = csrf_from((await client.get("/portal/login")).text)
        missing = await client.post("/portal/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert missing.status_code == 401
        assert "double authentification" in missing.text
        assert 'id="totp" name="totp"' in missing.text
        ok = await client.post(
            "/portal/login",
            data={"email": email, "password": PASSWORD, "totp": totp_code(secret), "csrf_token": token},
        )
        assert ok.status_code == 303
        assert (await client.get("/portal/companies")).status_code == 200


async def test_end_user_cannot_use_staff_portal(portal: Portal) -> None:
    async with browser(portal) as client:
        token = csrf_from((await client.get("/portal/login")).text)
        response = await client.post(
            "/portal/login", data={"email": portal.seed.end_user_a1, "password": PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 403
        assert "réservé au personnel" in response.text


async def test_logout_clears_session(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/sims")
        response = await client.post("/portal/logout", data={"csrf_token": csrf_from(page.text)})
        assert response.status_code == 303
        assert response.headers["location"] == "/portal/login?logged_out=1"
        assert (await client.get("/portal/sims")).status_code == 303
        assert "Vous êtes déconnecté" in (await client.get("/portal/login?logged_out=1")).text


# --- CSRF ------------------------------------------------------------------------------------------


async def test_posts_without_valid_csrf_token_are_refused(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        page = await client.get("/portal/sims")
        token = csrf_from(page.text)
        cases = [
            ("/portal/logout", {}, {}),
            ("/portal/logout", {"csrf_token": "0" * 64}, {}),
            ("/portal/sims/columns", {"order": ["status"], "visible": ["status"]}, {}),
            ("/portal/logout", {"csrf_token": token}, {"Origin": "https://evil.example"}),
            ("/portal/logout", {"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
        ]
        for path, data, headers in cases:
            response = await client.post(path, data=data, headers=headers)
            assert response.status_code == 403, (path, data, headers)
            assert "jeton de sécurité" in response.text
        # still logged in: none of the refused posts had any effect
        assert (await client.get("/portal/sims")).status_code == 200
        # the header form (htmx) and a same-origin Origin are accepted
        ok = await client.post(
            "/portal/sims/columns",
            data={"order": ["status"], "visible": ["status"]},
            headers={"X-CSRF-Token": token, "Origin": "http://portal.test", "HX-Request": "true"},
        )
        assert ok.status_code == 200


async def test_csrf_token_is_bound_to_the_account(portal: Portal) -> None:
    async with (
        logged_in(portal, portal.seed.staff_a) as client_a,
        logged_in(portal, portal.seed.staff_b) as client_b,
    ):
        token_a = csrf_from((await client_a.get("/portal/sims")).text)
        # B's browser with A's CSRF cookie: the page's token is still B's, useless in A's session
        client_b.cookies.set("simflow_csrf", client_a.cookies["simflow_csrf"], domain="portal.test")
        token_b = csrf_from((await client_b.get("/portal/sims")).text)
        assert token_b != token_a
        assert (await client_a.post("/portal/logout", data={"csrf_token": token_b})).status_code == 403
        assert (await client_a.post("/portal/logout", data={"csrf_token": token_a})).status_code == 303


async def test_session_slides_when_half_of_its_lifetime_is_gone(portal: Portal) -> None:
    from api.deps import issue_token, principal_from_token
    from domain.authz import PrincipalKind

    settings: Settings = portal.app.state.simflow.settings
    async with logged_in(portal, portal.seed.staff_a) as client:
        fresh = await client.get("/portal/sims")
        assert "simflow_session" not in fresh.headers.get("set-cookie", "")
        async with portal.app.state.simflow.sessionmaker() as session:
            me = await principal_from_token(session, settings, client.cookies["simflow_session"])
        ageing = issue_token(settings.model_copy(update={"jwt_ttl_minutes": 5}), PrincipalKind.STAFF, me.subject_id)
        client.cookies.set("simflow_session", ageing, domain="portal.test")
        renewed = await client.get("/portal/sims")
        assert renewed.status_code == 200
        cookie = next(c for c in renewed.headers.get_list("set-cookie") if c.startswith("simflow_session="))
        assert f"Max-Age={settings.jwt_ttl_minutes * 60}" in cookie
        assert client.cookies["simflow_session"] != ageing


# --- forced password change, lockout ----------------------------------------------------------------

NEW_PASSWORD = "Nouveau-mot-de-passe-2026!"


async def _add_staff(portal: Portal, **values: object) -> str:
    from domain.enums import StaffRole
    from domain.models import StaffUser
    from domain.security import hash_password

    email = f"staff-{uuid.uuid4().hex[:8]}@alpha.test"
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            StaffUser(
                email=email,
                password_hash=hash_password(PASSWORD),
                role=StaffRole.ORG_STAFF,
                org_id=portal.seed.org_a,
                permissions=["*"],
                **values,
            )
        )
    return email


async def test_admin_set_password_must_be_changed_before_any_portal_page(portal: Portal) -> None:
    """An account whose password an administrator set (`must_change_password`) is sent to
    /portal/password by every other page, the same rule (the guard's) as the API's 403; the change
    there (CSRF-checked, the API's `change_own_password`) opens the portal and ends older sessions."""
    from sqlalchemy import select

    from domain.models import AuditLog, StaffUser

    email = await _add_staff(portal, must_change_password=True)
    async with browser(portal) as client:
        token = csrf_from((await client.get("/portal/login")).text)
        login = await client.post(
            "/portal/login",
            data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "/portal/companies"},
        )
        assert login.status_code == 303
        assert login.headers["location"] == "/portal/password?next=%2Fportal%2Fcompanies"
        old_session = client.cookies["simflow_session"]
        for path in ("/portal", "/portal/sims", "/portal/companies", f"/portal/sims/{portal.seed.iccids['a_active']}"):
            refused = await client.get(path)
            assert refused.status_code == 303, path
            assert refused.headers["location"] == f"/portal/password?next={quote(path, safe='')}", path
        htmx = await client.get("/portal/sims", headers={"HX-Request": "true", "HX-Target": "sim-results"})
        assert htmx.status_code == 403
        assert htmx.headers["HX-Redirect"].startswith("/portal/password?next=")
        form = await client.get("/portal/password?next=/portal/companies")
        assert form.status_code == 200
        assert "défini par un administrateur" in form.text
        token = csrf_from(form.text)
        posted = await client.post(
            "/portal/sims/columns", data={"order": ["status"], "visible": ["status"], "csrf_token": token}
        )
        assert posted.status_code == 303
        assert posted.headers["location"] == "/portal/password?next=%2Fportal%2Fhome"  # the home page
        api = await client.get(f"/api/v1/companies/{portal.seed.company_a1}")
        assert api.status_code == 403 and api.json()["code"] == "auth.password_change_required"

        base = {"csrf_token": token, "next": "/portal/companies"}
        no_csrf = await client.post(
            "/portal/password",
            data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        )
        assert no_csrf.status_code == 403 and "jeton de sécurité" in no_csrf.text
        refusals = [
            ({"current_password": "mauvais", "new_password": NEW_PASSWORD}, "Mot de passe actuel incorrect"),
            ({"current_password": PASSWORD, "new_password": "faible"}, "Mot de passe trop faible"),
            ({"current_password": PASSWORD, "new_password": PASSWORD}, "doit être différent"),
        ]
        for fields, message in refusals:
            refused = await client.post(
                "/portal/password", data={**base, **fields, "confirmation": fields["new_password"]}
            )
            assert refused.status_code == 400, fields
            assert message in refused.text, fields
        mismatch = await client.post(
            "/portal/password",
            data={**base, "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirmation": "autre"},
        )
        assert mismatch.status_code == 400 and "La confirmation ne correspond pas" in mismatch.text
        assert (await client.get("/portal/sims")).status_code == 303  # still nothing else

        done = await client.post(
            "/portal/password",
            data={**base, "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        )
        assert done.status_code == 303 and done.headers["location"] == "/portal/companies"
        assert client.cookies["simflow_session"] != old_session
        assert (await client.get("/portal/companies")).status_code == 200
        assert (await client.get(f"/api/v1/companies/{portal.seed.company_a1}")).status_code == 200

    async with browser(portal) as stale:  # the session opened before the change is over
        stale.cookies.set("simflow_session", old_session, domain="portal.test")
        assert (await stale.get("/portal/companies")).headers["location"].startswith("/portal/login")
    async with logged_in(portal, email, NEW_PASSWORD) as fresh:
        assert (await fresh.get("/portal/sims")).status_code == 200
    async with portal.app.state.simflow.sessionmaker() as session:
        staff = (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one()
        assert staff.must_change_password is False
        actions = set(
            (await session.execute(select(AuditLog.action).where(AuditLog.target == f"staff:{staff.id}"))).scalars()
        )
    assert {"auth.login", "auth.password_changed", "auth.reauthentication"} <= actions


async def test_portal_login_locks_the_account_after_five_failures(portal: Portal) -> None:
    """The portal form uses the API's `authenticate`: 5 wrong passwords lock the account for the address
    they came from (30 min), the right password is then refused there with the same message, and nothing
    says the account exists; from another address the owner signs in."""
    from sqlalchemy import select

    from domain.models import StaffUser

    email = await _add_staff(portal)
    transport = httpx.ASGITransport(app=portal.app, client=("198.51.100.7", 4321))  # its own per-IP budget
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
        token = csrf_from((await client.get("/portal/login")).text)
        answers = []
        for password in ["mauvais"] * 5 + [PASSWORD]:
            response = await client.post(
                "/portal/login", data={"email": email, "password": password, "csrf_token": token}
            )
            answers.append((response.status_code, "Adresse e-mail ou mot de passe incorrect" in response.text))
            assert "simflow_session" not in response.headers.get("set-cookie", "")
        assert answers == [(401, True)] * 6
    async with portal.app.state.simflow.sessionmaker() as session:
        staff = (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one()
        assert staff.locked_until is None  # locked for that address only: the owner elsewhere signs in
    elsewhere = httpx.ASGITransport(app=portal.app, client=("198.51.100.8", 4321))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://portal.test") as client:
        token = csrf_from((await client.get("/portal/login")).text)
        owner = await client.post("/portal/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert owner.status_code == 303, owner.text


async def test_password_page_guesses_lock_the_account_too(portal: Portal) -> None:
    """A session cannot be used to guess the current password: wrong ones count towards the lockout, and
    once locked even the right one is refused."""
    email = await _add_staff(portal)
    async with logged_in(portal, email) as client:
        token = csrf_from((await client.get("/portal/password")).text)
        for current in ["mauvais"] * 5 + [PASSWORD]:
            response = await client.post(
                "/portal/password",
                data={
                    "csrf_token": token,
                    "current_password": current,
                    "new_password": NEW_PASSWORD,
                    "confirmation": NEW_PASSWORD,
                },
            )
            assert response.status_code == 400 and "Mot de passe actuel incorrect" in response.text, current
    async with browser(portal) as other:
        token = csrf_from((await other.get("/portal/login")).text)
        refused = await other.post("/portal/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert refused.status_code == 401


# --- companies -------------------------------------------------------------------------------------


def company_ids_in(html: str) -> set[str]:
    return set(re.findall(r'data-company-id="([0-9a-f]+)"', html))


async def test_companies_are_tenant_scoped(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        html = (await client.get("/portal/companies")).text
        assert {seed.company_a1, seed.company_a2} <= company_ids_in(html)
        assert seed.company_b1 not in company_ids_in(html)
        assert "Synchronisée" in html and "En échec" in html
        expected = f"{TEMPORAL_UI}/namespaces/default/workflows/{quote(seed.company_a1_workflow, safe='')}"
        assert f'href="{expected}"' in html
    async with logged_in(portal, seed.staff_a1) as client:
        assert company_ids_in((await client.get("/portal/companies")).text) == {seed.company_a1}
    async with logged_in(portal, seed.staff_b) as client:
        html = (await client.get("/portal/companies")).text
        assert company_ids_in(html) == {seed.company_b1}
        assert "En attente" in html
    async with logged_in(portal, portal.admin_email, ADMIN_PASSWORD) as client:
        html = (await client.get("/portal/companies")).text
        assert {seed.company_a1, seed.company_a2, seed.company_b1} <= company_ids_in(html)
        assert "Organisation" in html


async def test_company_detail_shows_sites_and_update_records(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        html = (await client.get(f"/portal/companies/{seed.company_a1}")).text
        assert "Sites de facturation et parcs" in html
        assert f"{seed.company_a1_name} — mobile" in html
        assert "create_customer" in html and "create_site" in html
        assert "21/11/2026 14:05" in html
        assert "CFAST indisponible (503)" in html
        assert f"CUST-{seed.suffix}" in html  # ids obtained
        assert "Succès" in html and "Erreur" in html
    async with logged_in(portal, seed.staff_b) as client:
        response = await client.get(f"/portal/companies/{seed.company_a1}")
        assert response.status_code == 404
        assert "Page introuvable" in response.text
        assert seed.company_a1_name not in response.text
    async with logged_in(portal, seed.staff_a1) as client:
        assert (await client.get(f"/portal/companies/{seed.company_a2}")).status_code == 404


# --- SIM cards -------------------------------------------------------------------------------------


def iccids_in(html: str) -> list[str]:
    return re.findall(r'<tr data-iccid="(\d+)"', html)


async def test_sim_list_is_tenant_scoped(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        html = (await client.get("/portal/sims?limit=200")).text
        shown = set(iccids_in(html))
        assert set(seed.iccids_a) <= shown
        assert seed.iccids["b_active"] not in shown
        assert "Secret Bêta" not in html
    async with logged_in(portal, seed.staff_a1) as client:
        shown = set(iccids_in((await client.get("/portal/sims?limit=200")).text))
        assert shown == {seed.iccids["a_active"], seed.iccids["a_esim"]}
        # asking for another company's SIMs yields nothing, not a leak
        html = (await client.get(f"/portal/sims?company_id={seed.company_a2}")).text
        assert iccids_in(html) == []
    async with logged_in(portal, seed.staff_b) as client:
        assert set(iccids_in((await client.get("/portal/sims?limit=200")).text)) == {seed.iccids["b_active"]}


async def test_sim_list_columns_and_french_labels(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        html = (await client.get(f"/portal/sims?q={seed.iccids['a_active'][-8:]}")).text
        assert iccids_in(html) == [seed.iccids["a_active"]]
        for header in (
            "ICCID",
            "En session",
            "Opérateur",
            "Forfait",
            "Entreprise",
            "Utilisateur final",
            "Données restantes",
            "Jours restants",
            "Ce mois-ci",
            "Note",
            "Étiquettes",
            "Type de SIM",
            "Statut",
        ):
            assert f">{header}</th>" in html, header
        assert "1,5\u00a0Go" in html and "300\u00a0Mo" in html
        assert ">Oui<" in html and "Prépayé" in html and ">Active<" in html
        assert seed.end_user_a1 in html and f"Prépayé 5 Go {seed.suffix}" in html
        assert '<span class="tag">flotte</span>' in html
        esim = (await client.get(f"/portal/sims?q={seed.iccids['a_esim']}")).text
        assert "data-esim" in esim and "Prête à l&#39;activation" in esim and ">Non<" in esim
        blank = (await client.get(f"/portal/sims?q={seed.iccids['a_blank']}")).text
        assert ">N/A<" in blank


async def test_sim_filters(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        assert iccids_in((await client.get("/portal/sims?status=suspended")).text) == [seed.iccids["a_suspended"]]
        assert iccids_in((await client.get("/portal/sims?carrier=Bouygues")).text) == [seed.iccids["a_suspended"]]
        by_company = iccids_in((await client.get(f"/portal/sims?company_id={seed.company_a1}")).text)
        assert by_company == sorted([seed.iccids["a_active"], seed.iccids["a_esim"]])
        imsi_part = (await client.get(f"/portal/sims?q={seed.imsis['a_blank'][-9:]}")).text
        assert iccids_in(imsi_part) == [seed.iccids["a_blank"]]
        assert iccids_in((await client.get("/portal/sims?status=nonsense&q=%25")).text) == []


async def test_keyset_pagination(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        first = await client.get("/portal/sims?limit=2")
        assert iccids_in(first.text) == seed.iccids_a[:2]
        next_url = re.search(r'href="(/portal/sims\?[^"]*after=[^"]+)"', first.text)
        assert next_url
        second = await client.get(next_url.group(1).replace("&amp;", "&"))
        assert iccids_in(second.text) == seed.iccids_a[2:4]
        prev_url = re.search(r'href="(/portal/sims\?[^"]*before=[^"]+)"', second.text)
        assert prev_url
        back = await client.get(prev_url.group(1).replace("&amp;", "&"))
        assert iccids_in(back.text) == seed.iccids_a[:2]
        bad = await client.get("/portal/sims?after=%%%")
        assert bad.status_code == 400
        assert "curseur de pagination invalide" in bad.text


async def test_htmx_requests_get_partials(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        headers = {"HX-Request": "true", "HX-Target": "sim-results"}
        partial = await client.get("/portal/sims?status=suspended", headers=headers)
        assert partial.status_code == 200
        assert partial.text.lstrip().startswith('<div id="sim-results"')
        assert "<html" not in partial.text
        assert 'id="sim-selection"' in partial.text and 'name="iccid"' in partial.text
        tabs = await client.get(
            f"/portal/sims/{portal.seed.iccids['a_active']}?tab=journal",
            headers={"HX-Request": "true", "HX-Target": "sim-tabs"},
        )
        assert tabs.text.lstrip().startswith('<div id="sim-tabs"')
        # a history restore asks for the full page
        full = await client.get("/portal/sims", headers={**headers, "HX-History-Restore-Request": "true"})
        assert "<html" in full.text


async def test_column_chooser_persists_in_cookie_and_server_honours_it(portal: Portal) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        token = csrf_from((await client.get("/portal/sims")).text)
        order = [e.column.key for e in ColumnLayout.default().entries]
        visible = [k for k in order if k not in ("carrier", "imsi", "imei")] + ["imsi"]
        response = await client.post(
            "/portal/sims/columns",
            data={
                "order": order,
                "visible": visible,
                "move": "status:up",
                "csrf_token": token,
                "return_to": "/portal/sims?status=active",
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/portal/sims?status=active"
        cookie = client.cookies.get(COLUMNS_COOKIE)
        assert cookie is not None and "~carrier" in cookie
        html = (await client.get("/portal/sims")).text
        headers = re.findall(r'<th scope="col" data-column="(\w+)"', html)
        assert "carrier" not in headers
        assert headers[0] == "iccid"
        assert headers.index("status") < headers.index("sim_type")
        assert headers[-1] == "imsi"
        # htmx flavour: the chooser comes back with an event that makes the table reload
        hx = await client.post(
            "/portal/sims/columns", data={"move": "reset"}, headers={"X-CSRF-Token": token, "HX-Request": "true"}
        )
        assert hx.headers["HX-Trigger"] == "sim-columns-changed"
        assert hx.text.lstrip().startswith('<details id="column-chooser"')
        assert ColumnLayout.from_cookie(client.cookies.get(COLUMNS_COOKIE)) == ColumnLayout.default()


async def test_sim_detail_tabs_and_journal(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_a) as client:
        details = (await client.get(f"/portal/sims/{seed.iccids['a_active']}")).text
        for text in ("Détails", "Utilisation", "Journal", "+33612345678", seed.company_a1_name, "Camion 12"):
            assert text in details, text
        assert f"Iccid%3D%22{seed.iccids['a_active']}%22" in details  # Temporal search by ICCID
        journal = (await client.get(f"/portal/sims/{seed.iccids['a_active']}?tab=journal")).text
        assert "21/11/2026 14:05" in journal
        assert "Prête à l&#39;activation" in journal and ">Active<" in journal
        assert "activation@simflow" in journal and seed.staff_a in journal
        usage = (await client.get(f"/portal/sims/{seed.iccids['a_active']}?tab=usage")).text
        assert "1,5\u00a0Go" in usage and "12" in usage
        esim = (await client.get(f"/portal/sims/{seed.iccids['a_esim']}")).text
        assert "<svg" in esim and f"LPA:1$smdp.example.test${seed.suffix.upper()}" in esim


async def test_sim_detail_404_for_unknown_or_other_tenant(portal: Portal) -> None:
    seed = portal.seed
    async with logged_in(portal, seed.staff_b) as client:
        for iccid in (seed.iccids["a_active"], "8933000000000000000", "pas-un-iccid"):
            response = await client.get(f"/portal/sims/{iccid}")
            assert response.status_code == 404, iccid
            assert "Page introuvable" in response.text
            assert "Camion 12" not in response.text
    async with logged_in(portal, seed.staff_a1) as client:
        assert (await client.get(f"/portal/sims/{seed.iccids['a_suspended']}")).status_code == 404
        assert (await client.get(f"/portal/sims/{seed.iccids['a_active']}")).status_code == 200


# --- pure units ------------------------------------------------------------------------------------


def test_column_layout_cookie_round_trip_and_moves() -> None:
    layout = ColumnLayout.from_cookie("status.~carrier.bogus.status.note")
    keys = [e.column.key for e in layout.entries]
    assert keys[:3] == ["status", "carrier", "note"]
    assert len(keys) == len(set(keys)) == len(ColumnLayout.default().entries)
    assert "carrier" not in [c.key for c in layout.visible_columns]
    assert ColumnLayout.from_cookie(layout.to_cookie()) == layout
    moved = layout.move("carrier", "up")
    assert [e.column.key for e in moved.entries][:2] == ["carrier", "status"]
    assert layout.move("status", "up") == layout
    assert layout.apply("note:down").entries[3].column.key == "note"
    assert layout.apply("reset") == ColumnLayout.default()
    assert layout.apply("nope:sideways") == layout


def test_selected_iccids_keeps_valid_unique_values_in_order() -> None:
    from domain.services.portal_queries import selected_iccids

    a, b = "8933000000000000001", "89330000000000000012"
    assert selected_iccids([b, " " + a, b, "x", "123", a + "9" * 5]) == [b, a]


@pytest.mark.parametrize("raw", [None, "", "~~~", "." * 200])
def test_column_layout_tolerates_garbage(raw: str | None) -> None:
    assert [e.column.key for e in ColumnLayout.from_cookie(raw).entries] == [
        e.column.key for e in ColumnLayout.default().entries
    ]


async def test_line_links_and_the_search_box_open_temporal_on_the_keyed_hash_of_the_number(portal: Portal) -> None:
    """Temporal indexes a line by `MsisdnHash` (HMAC-SHA-256 of the E.164 number, key derived from
    SIMFLOW_SECRETS_KEY): the portal's links and search box compute it; the number never reaches the UI URL."""
    seed = portal.seed
    key = hmac.new(TEST_SECRETS["secrets_key"].encode(), b"simflow-search-attribute|MsisdnHash", "sha256").digest()
    line_hash = hmac.new(key, b"+33612345678", "sha256").hexdigest()[:32]
    workflows = f"{TEMPORAL_UI}/namespaces/default/workflows"

    def ui_list(query: str) -> str:
        return f"{workflows}?{urlencode({'query': query})}"

    line_url = ui_list('MsisdnHash="' + line_hash + '"')
    async with logged_in(portal, seed.staff_a) as client:
        details = (await client.get(f"/portal/sims/{seed.iccids['a_active']}")).text
        temporal_hrefs = re.findall(r'href="(' + re.escape(TEMPORAL_UI) + '[^"]*)"', details)
        assert line_url in temporal_hrefs and not [h for h in temporal_hrefs if "612345678" in h], temporal_hrefs
        token = csrf_from(details)
        for typed in ("06 12 34 56 78", "+33612345678", "0033612345678"):
            found = await client.post("/portal/temporal-search", data={"q": typed, "csrf_token": token})
            assert (found.status_code, found.headers["location"]) == (303, line_url), typed
        by_iccid = await client.post(
            "/portal/temporal-search", data={"q": seed.iccids["a_active"], "csrf_token": token}
        )
        assert by_iccid.headers["location"] == ui_list('Iccid="' + seed.iccids["a_active"] + '"')
        by_id = await client.post("/portal/temporal-search", data={"q": 'topup/x"y', "csrf_token": token})
        assert by_id.headers["location"] == ui_list('WorkflowId="topup/xy"')
        forged = await client.post("/portal/temporal-search", data={"q": "0612345678", "csrf_token": "0" * 64})
        assert forged.status_code == 403
    async with browser(portal) as anonymous:
        refused = await anonymous.post("/portal/temporal-search", data={"q": "0612345678"})
        assert refused.status_code in (303, 403) and "MsisdnHash" not in refused.headers.get("location", "")


# --- branding ----------------------------------------------------------------------------------------


async def test_the_header_shows_the_organisations_logo_to_its_staff_only(portal: Portal) -> None:
    from io import BytesIO

    from PIL import Image
    from sqlalchemy import update

    from domain.models import Organisation

    out = BytesIO()
    Image.new("RGB", (95, 95), (10, 120, 60)).save(out, format="PNG")
    logo = out.getvalue()
    seed = portal.seed
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        await session.execute(
            update(Organisation).where(Organisation.id == seed.org_a).values(logo=logo, brand_name="Alpha Mobile")
        )
    try:
        async with logged_in(portal, seed.staff_a) as client:
            html = (await client.get("/portal/companies")).text
            assert 'data-testid="org-logo"' in html and 'src="/portal/branding/logo"' in html
            assert "Alpha Mobile" in html
            image = await client.get("/portal/branding/logo")
            assert image.status_code == 200 and image.content == logo
            assert image.headers["content-type"] == "image/png"
        for email, password in ((seed.staff_b, PASSWORD), (portal.admin_email, ADMIN_PASSWORD)):
            async with logged_in(portal, email, password) as client:
                html = (await client.get("/portal/companies")).text
                assert 'data-testid="org-logo"' not in html and "Alpha Mobile" not in html
                assert (await client.get("/portal/branding/logo")).status_code == 404
        async with browser(portal) as anonymous:
            assert (await anonymous.get("/portal/branding/logo")).status_code == 303  # to the login page
    finally:
        async with portal.app.state.simflow.sessionmaker.begin() as session:
            await session.execute(update(Organisation).where(Organisation.id == seed.org_a).values(logo=None))
