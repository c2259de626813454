"""Password authentication shared by the token endpoint and the portal login forms.

One function, `authenticate`, checks the password (argon2), the lockout (5 failures → 30 minutes by
default, `SIMFLOW_LOGIN_MAX_FAILURES` / `SIMFLOW_LOGIN_LOCK_MINUTES`) and, when the account has 2FA, the
TOTP or backup code. Every outcome is audited; failures are committed even though the caller then
raises. Unknown account, wrong password, locked account and wrong second factor get the same message.

`change_own_password` is the password change of the API (`/auth/password/change`) and of the portal
(`/portal/password`, where an account whose password an administrator set is sent until it is done):
current password confirmed (a wrong one counts towards the lockout), complexity rule, a different
password, the forced-change flag cleared, every token issued before revoked.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from api.authz import PrincipalKind
from domain.audit import AuditEntry, record
from domain.errors import AuthenticationFailed, PermissionDenied, TotpRequired, ValidationFailed
from domain.models import RefreshToken, StaffUser
from domain.security import verify_password
from domain.services.accounts import (
    Account,
    AccountKeys,
    clear_failures,
    find_account,
    is_locked,
    kind_of,
    register_failure,
    set_password,
    verify_second_factor,
)
from infra.settings import Settings, get_settings

MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=30)
INVALID = "identifiants invalides ou compte verrouillé"


# The settings of the application serving the current request (bound by `api.guard.RequestContextMiddleware`),
# so callers that pass no policy (the portal forms) use the same lockout and keys as the API.
_request_settings: ContextVar[Settings | None] = ContextVar("simflow_request_settings", default=None)


def bind_request_settings(settings: Settings) -> Token[Settings | None]:
    return _request_settings.set(settings)


def reset_request_settings(token: Token[Settings | None]) -> None:
    _request_settings.reset(token)


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int
    lock: timedelta
    keys: AccountKeys

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(
            max_failures=settings.login_max_failures,
            lock=timedelta(minutes=settings.login_lock_minutes),
            keys=AccountKeys.from_secret(settings.secrets_key.get_secret_value()),
        )


@dataclass(frozen=True)
class Authenticated:
    kind: PrincipalKind
    subject_id: str
    email: str
    must_change_password: bool = False
    second_factor: str | None = None  # "totp" | "backup_code" when 2FA was used


def _tenant(account: Account | None) -> dict[str, str | None]:
    if account is None:
        return {}
    return {"org_id": account.org_id, "company_id": account.company_id}


async def audit_auth(
    session: AsyncSession, action: str, result: str, email: str, account: Account | None, **details: object
) -> None:
    await record(
        session,
        AuditEntry(
            actor=account.email if account is not None else email.strip().lower()[:320],
            actor_kind=kind_of(account).value if account is not None else "anonymous",
            action=action,
            result=result,
            target=f"{kind_of(account).value}:{account.id}" if account is not None else None,
            end_user_id=None if account is None or isinstance(account, StaffUser) else account.id,
            details=dict(details),
            **_tenant(account),
        ),
    )


async def _fail(session: AsyncSession, email: str, account: Account | None, reason: str, locked: bool) -> None:
    await audit_auth(session, "auth.login", "failure", email, account, reason=reason)
    if locked:
        await audit_auth(session, "auth.account_locked", "ok", email, account)
    await session.commit()


async def authenticate(
    session: AsyncSession,
    email: str,
    password: str,
    totp: str | None = None,
    *,
    policy: LoginPolicy | None = None,
) -> Authenticated:
    """Checks a staff member's or end user's password (and second factor). Raises AuthenticationFailed
    (TotpRequired when the password is right but the account's 2FA code is missing)."""
    policy = policy or LoginPolicy.from_settings(_request_settings.get() or get_settings())
    now = datetime.now(UTC)
    account = await find_account(session, email)
    if account is None:
        verify_password(None, password)  # same work as for a real account
        await _fail(session, email, None, "unknown_account", False)
        raise AuthenticationFailed(None, INVALID)
    if is_locked(account, now):
        await _fail(session, email, account, "locked", False)
        raise AuthenticationFailed(None, INVALID)
    if not verify_password(account.password_hash, password) or not account.active:
        locked = register_failure(account, now, policy.max_failures, policy.lock)
        await _fail(session, email, account, "bad_password" if account.active else "inactive", locked)
        raise AuthenticationFailed(None, INVALID)
    second_factor = None
    if account.totp_enabled:
        if not totp:
            raise TotpRequired("totp", "code de double authentification requis")
        second_factor = await verify_second_factor(session, policy.keys, account, totp)
        if second_factor is None:
            locked = register_failure(account, now, policy.max_failures, policy.lock)
            await _fail(session, email, account, "bad_second_factor", locked)
            raise AuthenticationFailed(None, INVALID)
    clear_failures(account, now)
    await audit_auth(session, "auth.login", "ok", email, account, second_factor=second_factor)
    return Authenticated(
        kind_of(account), account.id, account.email, account.must_change_password, second_factor=second_factor
    )


async def confirm_password(session: AsyncSession, settings: Settings, account: Account, password: str) -> None:
    """Re-authentication before a sensitive change; a wrong password counts towards the lockout, and a
    locked account is refused like at login (a stolen session cannot go on guessing)."""
    now = datetime.now(UTC)
    locked = is_locked(account, now)
    if locked or not verify_password(account.password_hash, password):
        if not locked:
            policy = LoginPolicy.from_settings(settings)
            register_failure(account, now, policy.max_failures, policy.lock)
        reason = "locked" if locked else "bad_password"
        await audit_auth(session, "auth.reauthentication", "failure", account.email, account, reason=reason)
        await session.commit()
        raise PermissionDenied("password", "mot de passe incorrect")


async def change_own_password(
    session: AsyncSession, settings: Settings, account: Account, current_password: str, new_password: str
) -> None:
    """The account holder changes their password (API and portal). Raises PermissionDenied("password")
    for a wrong current password, ValidationFailed("new_password") for a refused new one. The caller
    audits and issues the new tokens: every token issued before this call stops working."""
    await confirm_password(session, settings, account, current_password)
    if verify_password(account.password_hash, new_password):
        raise ValidationFailed("new_password", "le nouveau mot de passe doit être différent de l'actuel")
    set_password(account, new_password, must_change=False)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.account_id == account.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False},
    )
