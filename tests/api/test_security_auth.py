"""Login security (S4, S5): TOTP enrolment and login (±1 step, replay refused, lockout on wrong codes,
single-use backup codes), refresh-token rotation, forced password change, password reset without account
enumeration, configurable lockout, API keys refused for interactive login, 429 + Retry-After."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, update

from domain.enums import LineStatus, StaffRole
from domain.models import (
    AuditLog,
    BackupCode,
    Line,
    PasswordResetToken,
    RateLimitHit,
    SecurityMessage,
    StaffUser,
    TopUp,
)
from domain.security import SecretBox
from infra.settings import Settings
from tests.api._security_support import (
    Db,
    Headers,
    add_api_key,
    add_end_user,
    add_staff_member,
    bearer,
    code_at,
    other_app,
    steady_totp_moment,
    token_response,
)
from tests.api._support import STRONG_PASSWORD, assert_problem
from tests.api.conftest import Tenant
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

NEW_PASSWORD = "Another-strong-pass-42?"


async def _staff(db: Db, staff_id: str) -> StaffUser:
    async with db() as session:
        staff = await session.get(StaffUser, staff_id)
        assert staff is not None
        return staff


async def _enrol(client: httpx.AsyncClient, headers: Headers) -> tuple[str, list[str], float]:
    setup = await client.post("/api/v1/auth/2fa/setup", json={"password": STRONG_PASSWORD}, headers=headers)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/")
    moment = await steady_totp_moment()
    confirm = await client.post("/api/v1/auth/2fa/confirm", json={"code": code_at(secret, moment)}, headers=headers)
    assert confirm.status_code == 200, confirm.text
    return secret, confirm.json()["backup_codes"], moment


async def test_totp_enrolment_window_replay_and_backup_codes(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, settings: Settings
) -> None:
    email, staff_id = await add_staff_member(db, org_id=tenant.org_id)
    headers = await bearer(app_client, email)

    wrong = await app_client.post("/api/v1/auth/2fa/setup", json={"password": "Wrong-password-1!"}, headers=headers)
    assert_problem(wrong, 403, "password")
    not_yet = await app_client.post("/api/v1/auth/2fa/confirm", json={"code": "000000"}, headers=headers)
    assert_problem(not_yet, 422, "code")

    secret, backup_codes, moment = await _enrol(app_client, headers)
    staff = await _staff(db, staff_id)
    assert staff.totp_enabled
    assert staff.totp_secret_encrypted and secret not in staff.totp_secret_encrypted  # encrypted at rest
    assert SecretBox(settings.secrets_key.get_secret_value()).open(staff.totp_secret_encrypted) == secret
    assert len(backup_codes) == 10 and len(set(backup_codes)) == 10
    async with db() as session:
        stored = list(
            (await session.execute(select(BackupCode.code_hash).where(BackupCode.account_id == staff_id))).scalars()
        )
    assert len(stored) == 10 and not set(stored) & set(backup_codes)  # hashed

    required = await token_response(app_client, email, STRONG_PASSWORD)
    assert_problem(required, 401)
    assert required.json()["code"] == "auth.totp_required"

    # +1 step is accepted (the confirmation used the current step), and only once.
    ahead = code_at(secret, moment, +1)
    assert (await token_response(app_client, email, STRONG_PASSWORD, totp=ahead)).status_code == 200
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD, totp=ahead), 401)
    # ±2 steps and steps already passed are refused.
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD, totp=code_at(secret, moment, +2)), 401)
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD, totp=code_at(secret, moment, -1)), 401)
    # A backup code works once (it also resets the failure count).
    assert (await token_response(app_client, email, STRONG_PASSWORD, totp=backup_codes[0])).status_code == 200
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD, totp=backup_codes[0]), 401)
    me = await app_client.get("/api/v1/auth/me", headers=headers)
    assert me.json()["totp_enabled"] is True and me.json()["backup_codes_remaining"] == 9

    # Regenerating needs password and a code; the old codes stop working.
    regen = await app_client.post(
        "/api/v1/auth/2fa/backup-codes", json={"password": STRONG_PASSWORD, "code": backup_codes[1]}, headers=headers
    )
    assert regen.status_code == 200, regen.text
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD, totp=backup_codes[2]), 401)
    new_codes = regen.json()["backup_codes"]
    assert (await token_response(app_client, email, STRONG_PASSWORD, totp=new_codes[0])).status_code == 200

    # Disabling needs the password and a valid second factor.
    no_code = await app_client.post(
        "/api/v1/auth/2fa/disable", json={"password": STRONG_PASSWORD, "code": "000000"}, headers=headers
    )
    assert_problem(no_code, 422, "code")
    bad_password = await app_client.post(
        "/api/v1/auth/2fa/disable", json={"password": "Wrong-pass-123!", "code": new_codes[1]}, headers=headers
    )
    assert_problem(bad_password, 403)
    disabled = await app_client.post(
        "/api/v1/auth/2fa/disable", json={"password": STRONG_PASSWORD, "code": new_codes[1]}, headers=headers
    )
    assert disabled.status_code == 204, disabled.text
    assert (await token_response(app_client, email, STRONG_PASSWORD)).status_code == 200


async def test_five_wrong_codes_lock_the_account(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email, staff_id = await add_staff_member(db, org_id=tenant.org_id)
    _, backup_codes, _ = await _enrol(app_client, await bearer(app_client, email))
    for _ in range(5):
        assert_problem(await token_response(app_client, email, STRONG_PASSWORD, totp="000000"), 401)
    staff = await _staff(db, staff_id)
    assert staff.locked_until is not None
    locked = await token_response(app_client, email, STRONG_PASSWORD, totp=backup_codes[0])
    assert_problem(locked, 401)
    assert locked.json()["code"] == "auth.authentication_failed"  # not "auth.totp_required": nothing revealed


async def test_refresh_tokens_rotate_and_reuse_revokes_the_family(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant
) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    first = (await token_response(app_client, email, STRONG_PASSWORD)).json()
    assert first["refresh_token"] and first["access_token"] != first["refresh_token"]
    # A refresh token is not an access token.
    assert_problem(
        await app_client.get("/api/v1/sims", headers={"Authorization": f"Bearer {first['refresh_token']}"}), 401
    )
    second = await app_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    third = await app_client.post("/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert third.status_code == 200
    # The first one again: stolen copy → the whole family is revoked, the latest included.
    assert_problem(await app_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
    assert_problem(
        await app_client.post("/api/v1/auth/refresh", json={"refresh_token": third.json()["refresh_token"]}), 401
    )
    # Access tokens are not refresh tokens either.
    assert_problem(await app_client.post("/api/v1/auth/refresh", json={"refresh_token": first["access_token"]}), 401)


async def test_logout_everywhere_ends_every_session(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    one = (await token_response(app_client, email, STRONG_PASSWORD)).json()
    headers = {"Authorization": f"Bearer {one['access_token']}"}
    out = await app_client.post(
        "/api/v1/auth/logout", json={"refresh_token": one["refresh_token"], "everywhere": True}, headers=headers
    )
    assert out.status_code == 204, out.text
    assert_problem(await app_client.get("/api/v1/sims", headers=headers), 401)
    assert_problem(await app_client.post("/api/v1/auth/refresh", json={"refresh_token": one["refresh_token"]}), 401)
    assert (await token_response(app_client, email, STRONG_PASSWORD)).status_code == 200


async def test_admin_set_password_must_be_changed_first(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, admin_headers: Headers
) -> None:
    email = f"new-{tenant.org_slug}@test.simflow"
    created = await app_client.post(
        "/api/v1/staff",
        json={
            "email": email,
            "full_name": "Nouvelle recrue",
            "role": "org_staff",
            "org_id": tenant.org_id,
            "permissions": ["sim_card:read"],
            "password": STRONG_PASSWORD,
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["must_change_password"] is True
    tokens = await token_response(app_client, email, STRONG_PASSWORD)
    assert tokens.json()["must_change_password"] is True
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    blocked = await app_client.get("/api/v1/sims", headers=headers)
    assert_problem(blocked, 403)
    assert blocked.json()["code"] == "auth.password_change_required"
    assert (await app_client.get("/api/v1/auth/me", headers=headers)).json()["must_change_password"] is True

    same = await app_client.post(
        "/api/v1/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": STRONG_PASSWORD},
        headers=headers,
    )
    assert_problem(same, 422, "new_password")
    weak = await app_client.post(
        "/api/v1/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": "weak"},
        headers=headers,
    )
    assert_problem(weak, 422, "new_password")
    changed = await app_client.post(
        "/api/v1/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert (await app_client.get("/api/v1/sims", headers=fresh)).status_code == 200
    assert_problem(await app_client.get("/api/v1/sims", headers=headers), 401)  # the old token ended
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD), 401)


async def test_password_reset_reveals_nothing_and_works_once_within_the_hour(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant
) -> None:
    email, staff_id = await add_staff_member(db, org_id=tenant.org_id)
    old = await bearer(app_client, email)
    known = await app_client.post("/api/v1/auth/password/forgot", json={"email": email})
    unknown = await app_client.post("/api/v1/auth/password/forgot", json={"email": f"x-{email}"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    async with db() as session:
        messages = list(
            (
                await session.execute(
                    select(SecurityMessage).where(SecurityMessage.recipient.in_([email, f"x-{email}"]))
                )
            ).scalars()
        )
        stored = (
            await session.execute(select(PasswordResetToken).where(PasswordResetToken.account_id == staff_id))
        ).scalar_one()
    assert [m.recipient for m in messages] == [email]
    token = messages[0].body.split("\n\n")[2].strip()
    assert stored.token_hash != token and token not in stored.token_hash  # only a hash is kept
    expires = stored.expires_at.replace(tzinfo=stored.expires_at.tzinfo or UTC)
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)

    weak = await app_client.post("/api/v1/auth/password/reset", json={"token": token, "new_password": "weak"})
    assert_problem(weak, 422, "new_password")
    done = await app_client.post("/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert done.status_code == 204, done.text
    again = await app_client.post("/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert_problem(again, 422, "token")
    assert (await token_response(app_client, email, NEW_PASSWORD)).status_code == 200
    assert_problem(await app_client.get("/api/v1/sims", headers=old), 401)

    # An expired link is refused.
    await app_client.post("/api/v1/auth/password/forgot", json={"email": email})
    async with db.begin() as session:
        latest = (
            (
                await session.execute(
                    select(SecurityMessage)
                    .where(SecurityMessage.recipient == email)
                    .order_by(SecurityMessage.id.desc())
                )
            )
            .scalars()
            .first()
        )
        assert latest is not None
        await session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.account_id == staff_id, PasswordResetToken.used_at.is_(None))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired_token = latest.body.split("\n\n")[2].strip()
    late = await app_client.post(
        "/api/v1/auth/password/reset", json={"token": expired_token, "new_password": NEW_PASSWORD}
    )
    assert_problem(late, 422, "token")


async def test_api_keys_are_never_an_interactive_login(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    key, _ = await add_api_key(db, tenant.org_id)
    with_header = await app_client.post(
        "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, headers={"X-API-Key": key}
    )
    assert_problem(with_header, 401)
    as_password = await token_response(app_client, ADMIN_EMAIL, key)
    assert_problem(as_password, 401)
    as_bearer = await app_client.get("/api/v1/sims", headers={"Authorization": f"Bearer {key}"})
    assert_problem(as_bearer, 401)
    as_cookie = await app_client.get("/api/v1/sims", headers={"Cookie": f"simflow_session={key}"})
    assert_problem(as_cookie, 401)
    for method, path in (("GET", "/api/v1/auth/me"), ("POST", "/api/v1/auth/2fa/setup"), ("GET", "/api/v1/api-keys")):
        response = await app_client.request(method, path, headers={"X-API-Key": key}, json={"password": "x"})
        assert_problem(response, 403)


async def test_lockout_is_configurable(settings: Settings, db: Db, tenant: Tenant) -> None:
    """`login_max_failures` wrong passwords within `login_lock_minutes` lock the account for the address
    they came from, for that long (the owner elsewhere is not locked out: tests/api/test_abuse.py)."""
    email, staff_id = await add_staff_member(db, org_id=tenant.org_id)
    async with other_app(settings, login_max_failures=2, login_lock_minutes=1) as client:
        for _ in range(2):
            assert_problem(await token_response(client, email, "Wrong-password-1!"), 401)
        assert_problem(await token_response(client, email, STRONG_PASSWORD), 401)
    async with db() as session:
        expiries = list(
            (
                await session.execute(
                    select(RateLimitHit.expires_at).where(RateLimitHit.key.startswith(f"login:{email}|"))
                )
            ).scalars()
        )
        locked = (
            await session.execute(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "auth.account_locked", AuditLog.target == f"staff:{staff_id}")
            )
        ).scalar_one()
    assert len(expiries) == 2 and locked == 1
    assert all(0 < expiry - time.time() <= 60 for expiry in expiries)


async def test_end_users_are_locked_out_too(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email, _ = await add_end_user(db, tenant.org_id, tenant.company_id)
    assert (await token_response(app_client, email, STRONG_PASSWORD)).status_code == 200
    for _ in range(5):
        assert_problem(await token_response(app_client, email, "Wrong-password-1!"), 401)
    assert_problem(await token_response(app_client, email, STRONG_PASSWORD), 401)


# --- S5: 429 + Retry-After ------------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_ip(settings: Settings, db: Db, tenant: Tenant) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    async with other_app(settings, rate_limit_login_failures_per_ip=3, login_max_failures=100) as client:
        assert (await token_response(client, email, STRONG_PASSWORD)).status_code == 200  # successes do not count
        for _ in range(3):
            assert_problem(await token_response(client, f"nobody-{tenant.org_slug}@x.fr", "Wrong-pass-1!"), 401)
        limited = await token_response(client, email, STRONG_PASSWORD)
        assert_problem(limited, 429)
        assert 1 <= int(limited.headers["retry-after"]) <= settings.rate_limit_window_s
        portal = await client.post("/portal/login", data={"email": email, "password": STRONG_PASSWORD})
        assert portal.status_code == 429  # the portal form shares the per-IP budget


async def test_otp_attempts_are_rate_limited(settings: Settings, db: Db, tenant: Tenant) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    async with other_app(settings, rate_limit_otp_per_account=2) as client:
        headers = await bearer(client, email)
        setup = await client.post("/api/v1/auth/2fa/setup", json={"password": STRONG_PASSWORD}, headers=headers)
        assert setup.status_code == 200
        for _ in range(2):
            assert_problem(await client.post("/api/v1/auth/2fa/confirm", json={"code": "000000"}, headers=headers), 422)
        limited = await client.post("/api/v1/auth/2fa/confirm", json={"code": "000000"}, headers=headers)
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1


async def test_topup_creation_is_rate_limited_before_any_provider_call(
    settings: Settings, db: Db, tenant: Tenant
) -> None:
    async with db.begin() as session:
        line = Line(org_id=tenant.org_id, company_id=tenant.company_id, msisdn="+33612345678", status=LineStatus.ACTIVE)
        session.add(line)
    email, _ = await add_staff_member(db, org_id=tenant.org_id)

    async def topups() -> int:
        async with db() as session:
            query = select(func.count()).select_from(TopUp).where(TopUp.line_id == line.id)
            return int((await session.execute(query)).scalar_one())

    async with other_app(settings, rate_limit_topups_per_principal=2) as client:
        headers = {**(await bearer(client, email)), "Idempotency-Key": "rl-1"}
        for _ in range(2):  # invalid bodies: counted, refused by validation, nothing charged
            assert (
                await client.post(f"/api/v1/lines/{line.id}/recharges", json={}, headers=headers)
            ).status_code == 422
        limited = await client.post(
            f"/api/v1/lines/{line.id}/recharges", json={"data_gb": 1, "payment_method": "wallet"}, headers=headers
        )
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
    assert await topups() == 0


async def test_portal_recharges_are_rate_limited_with_a_french_page(settings: Settings, db: Db, tenant: Tenant) -> None:
    """The same budget guards the portal's "Recharge DATA": the refusal is a page, not the API's JSON."""
    import re

    email, _ = await add_staff_member(db, org_id=tenant.org_id)

    def csrf(html: str) -> str:
        match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
        assert match, "no csrf_token in the page"
        return match.group(1)

    async with other_app(settings, rate_limit_topups_per_principal=1) as client:
        login = await client.get("/portal/login")
        signed_in = await client.post(
            "/portal/login",
            data={"email": email, "password": STRONG_PASSWORD, "csrf_token": csrf(login.text), "next": "/portal/sims"},
        )
        assert signed_in.status_code == 303, signed_in.text
        token = csrf((await client.get("/portal/sims")).text)
        form = {"csrf_token": token, "data_gb": "1", "payment_method": "wallet", "iccid": "89330000000000000000"}
        first = await client.post("/portal/recharges", data=form)
        assert first.status_code != 429, first.text
        limited = await client.post("/portal/recharges", data=form)
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("text/html")
    assert "Trop de requêtes" in limited.text and "réessayez dans" in limited.text
    assert int(limited.headers["retry-after"]) >= 1


async def test_company_staff_role_in_tokens_follows_the_database(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant
) -> None:
    """Permissions are read at each request, not frozen into the token."""
    email, staff_id = await add_staff_member(
        db, role=StaffRole.COMPANY_STAFF, org_id=tenant.org_id, company_id=tenant.company_id
    )
    headers = await bearer(app_client, email)
    assert (await app_client.get("/api/v1/sims", headers=headers)).status_code == 200
    async with db.begin() as session:
        await session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(permissions=["plan:read"]))
    assert_problem(await app_client.get("/api/v1/sims", headers=headers), 403)
