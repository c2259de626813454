"""Page "Double authentification" over HTTP (ASGI, session cookie, no browser): a staff member turns on
their own 2FA with a code from the app, sees their backup codes once, regenerates them and turns 2FA off,
each step through the API's handlers; an end user does the same in the self-care space. A wrong password or
code is refused next to its field and changes nothing."""

from __future__ import annotations

import re
import uuid

import pyotp
from sqlalchemy import select

from domain.enums import StaffRole
from domain.models import AuditLog, EndUser, StaffUser
from domain.security import hash_password
from tests.api._security_support import steady_totp_moment
from tests.api.test_portal import Portal, browser, csrf_from, logged_in, portal  # noqa: F401 - `portal` is a fixture
from tests.browser.portal_seed import PASSWORD

CODES_RE = re.compile(r'<section class="card" id="backup-codes">.*?<ul class="mono">(.*?)</ul>', re.S)


def _codes(html: str) -> list[str]:
    match = CODES_RE.search(html)
    assert match, "no backup codes on the page"
    return re.findall(r"<li>([^<]+)</li>", match.group(1))


async def _staff(portal: Portal, email: str) -> StaffUser:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker() as session:
        staff = await session.scalar(select(StaffUser).where(StaffUser.email == email))
        assert staff is not None
        return staff


async def test_staff_member_turns_two_factor_on_regenerates_codes_and_turns_it_off(
    portal: Portal,  # noqa: F811
) -> None:
    email = f"totp-{uuid.uuid4().hex[:8]}@portal.test"
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            StaffUser(
                email=email, password_hash=hash_password(PASSWORD), role=StaffRole.ORG_STAFF, org_id=portal.seed.org_a
            )
        )
    async with logged_in(portal, email) as client:
        home = await client.get("/portal/two-factor")
        assert home.status_code == 200 and 'id="two-factor-link"' in home.text and "Désactivée" in home.text
        token = csrf_from(home.text)

        wrong = await client.post("/portal/two-factor/setup", data={"password": "faux", "csrf_token": token})
        assert wrong.status_code == 403 and 'data-error-for="password"' in wrong.text
        assert "Mot de passe : Mot de passe incorrect" in wrong.text
        assert (await _staff(portal, email)).totp_secret_encrypted is None

        setup = await client.post("/portal/two-factor/setup", data={"password": PASSWORD, "csrf_token": token})
        assert setup.status_code == 200, setup.text[:500]
        secret_match = re.search(r'id="totp-secret">([A-Z2-7]+)<', setup.text)
        assert secret_match and "<svg" in setup.text
        secret = secret_match.group(1)

        refused = await client.post("/portal/two-factor/confirmation", data={"code": "000000", "csrf_token": token})
        assert refused.status_code == 422 and 'data-error-for="code"' in refused.text
        assert not (await _staff(portal, email)).totp_enabled

        code = pyotp.TOTP(secret).at(await steady_totp_moment())
        enabled = await client.post("/portal/two-factor/confirmation", data={"code": code, "csrf_token": token})
        assert enabled.status_code == 200 and 'id="totp-enabled"' in enabled.text
        first_codes = _codes(enabled.text)
        assert len(first_codes) == 10 and (await _staff(portal, email)).totp_enabled
        page = await client.get("/portal/two-factor")
        assert 'id="codes-remaining">10<' in page.text and first_codes[0] not in page.text  # shown once

        form = {"password": PASSWORD, "code": first_codes[0], "csrf_token": token}
        regenerated = await client.post("/portal/two-factor/backup-codes", data=form)
        assert regenerated.status_code == 200, regenerated.text[:500]
        new_codes = _codes(regenerated.text)
        assert len(new_codes) == 10 and not set(new_codes) & set(first_codes)

        form = {"password": PASSWORD, "code": first_codes[1], "csrf_token": token}  # replaced: no longer valid
        kept = await client.post("/portal/two-factor/deactivation", data=form)
        assert kept.status_code == 422 and 'data-error-for="code"' in kept.text
        assert (await _staff(portal, email)).totp_enabled

        form = {"password": PASSWORD, "code": new_codes[0], "csrf_token": token}
        disabled = await client.post("/portal/two-factor/deactivation", data=form)
        assert disabled.status_code == 200 and 'id="totp-disabled"' in disabled.text
        staff = await _staff(portal, email)
        assert not staff.totp_enabled
    async with portal.app.state.simflow.sessionmaker() as session:
        query = select(AuditLog.action).where(AuditLog.target == f"staff:{staff.id}").order_by(AuditLog.id)
        actions = list((await session.execute(query)).scalars())
    assert [a for a in actions if a.startswith("auth.2fa")] == [
        "auth.2fa_setup_started",
        "auth.2fa_enabled",
        "auth.2fa_backup_codes_regenerated",
        "auth.2fa_disabled",
    ], actions


async def test_end_user_turns_two_factor_on_from_the_self_care_space_and_the_login_asks_the_code(
    portal: Portal,  # noqa: F811
) -> None:
    email = f"totp-{uuid.uuid4().hex[:8]}@dupont.test"
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            EndUser(
                org_id=portal.seed.org_a,
                company_id=portal.seed.company_a1,
                email=email,
                full_name="Flore",
                password_hash=hash_password(PASSWORD),
            )
        )
    async with browser(portal) as client:
        login = await client.get("/self-care/login")
        data = {"email": email, "password": PASSWORD, "csrf_token": csrf_from(login.text)}
        assert (await client.post("/self-care/login", data=data)).status_code == 303
        page = await client.get("/self-care/two-factor")
        assert page.status_code == 200 and 'id="two-factor-link"' in page.text
        assert 'action="/self-care/two-factor/setup"' in page.text and "/portal/" not in page.text.split("<main", 1)[1]
        token = csrf_from(page.text)
        setup = await client.post("/self-care/two-factor/setup", data={"password": PASSWORD, "csrf_token": token})
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', setup.text)
        assert setup.status_code == 200 and secret, setup.text[:500]
        code = pyotp.TOTP(secret[1]).at(await steady_totp_moment())
        enabled = await client.post("/self-care/two-factor/confirmation", data={"code": code, "csrf_token": token})
        assert enabled.status_code == 200 and len(_codes(enabled.text)) == 10
    async with portal.app.state.simflow.sessionmaker() as session:
        user = await session.scalar(select(EndUser).where(EndUser.email == email))
        assert user is not None and user.totp_enabled
    async with browser(portal) as client:
        login = await client.get("/self-care/login")
        data = {"email": email, "password": PASSWORD, "csrf_token": csrf_from(login.text)}
        asked = await client.post("/self-care/login", data=data)
        assert asked.status_code == 401 and 'name="totp"' in asked.text
