"""Password authentication shared by the token endpoint and the portal login forms.

One function, `authenticate`, checks the password (argon2), the throttles and, when the account has 2FA,
the TOTP or backup code. Every outcome is audited; failures are committed even though the caller then
raises. Unknown account, wrong password, locked account and wrong second factor get the same message.

Wrong passwords cannot be turned against the owner: they lock one (account, client address) pair (5
failures within 30 minutes by default, `SIMFLOW_LOGIN_MAX_FAILURES` / `SIMFLOW_LOGIN_LOCK_MINUTES`), never
the account, so a stranger locks out only themselves. Against guessing from many addresses, the account as
a whole gets a short progressive delay beyond `login_account_free_failures` failures in the same window
(429 with Retry-After: 1 s, 2 s, 4 s… at most `login_account_max_delay_s`). Both are counted by e-mail
address in the shared rate-limit table (`api.ratelimit`), known account or not, so neither reveals which
addresses have an account. A wrong second factor (the password was right) still locks the account itself.

`change_own_password` is the password change of the API (`/auth/password/change`) and of the portal
(`/portal/password`, where an account whose password an administrator set is sent until it is done):
current password confirmed (a wrong one counts towards the lockout), complexity rule, a different
password, the forced-change flag cleared, every token issued before revoked.

`request_password_reset` and `reset_password_with_token` are the forgotten-password flow of the API
(`/auth/password/forgot`, `/auth/password/reset`) and of the portal (`/portal/password/forgot`,
`/portal/password/reset`): a reset token kept only as a keyed hash, its mail written to the
`security_messages` outbox (sent by the outbox relay) with a link to the portal's reset page.
"""

from __future__ import annotations

import math
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from api.ratelimit import RateLimiter
from domain.audit import AuditEntry, current_context, record
from domain.authz import PrincipalKind
from domain.errors import AuthenticationFailed, PermissionDenied, RateLimited, TotpRequired, ValidationFailed
from domain.models import RefreshToken, SecurityMessage, StaffUser
from domain.security import verify_password
from domain.services.accounts import (
    Account,
    AccountKeys,
    clear_failures,
    consume_reset_token,
    create_reset_token,
    find_account,
    is_locked,
    kind_of,
    register_failure,
    set_password,
    verify_second_factor,
)
from domain.services.accounts import reset_link as accounts_reset_link
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
    max_failures: int  # per (account, client address) within `lock`
    lock: timedelta
    keys: AccountKeys
    account_free_failures: int = 10  # per account, any address, within `lock`, before the delay
    account_max_delay_s: int = 60

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(
            max_failures=settings.login_max_failures,
            lock=timedelta(minutes=settings.login_lock_minutes),
            keys=AccountKeys.from_secret(settings.secrets_key.get_secret_value()),
            account_free_failures=settings.login_account_free_failures,
            account_max_delay_s=settings.login_account_max_delay_s,
        )


@dataclass(frozen=True)
class LoginThrottle:
    """The failure counters of one login attempt: the (account, address) pair and the account."""

    limiter: RateLimiter
    policy: LoginPolicy
    email: str
    source: str

    @property
    def pair_key(self) -> str:
        return f"login:{self.email}|{self.source}"

    @property
    def account_key(self) -> str:
        return f"login-account:{self.email}"

    @property
    def window_s(self) -> float:
        return self.policy.lock.total_seconds()

    async def pair_locked(self) -> bool:
        return await self.limiter.retry_after(self.pair_key, self.policy.max_failures, self.window_s) is not None

    async def account_delay(self) -> int | None:
        """Seconds this attempt must still wait, when the account has had too many failures lately."""
        count, last = await self.limiter.recent(self.account_key, self.window_s)
        if count < self.policy.account_free_failures or last is None:
            return None
        delay = min(self.policy.account_max_delay_s, 2 ** min(count - self.policy.account_free_failures, 16))
        wait = last + delay - self.limiter.clock()
        return math.ceil(wait) if wait > 0 else None

    async def failed(self) -> bool:
        """Counts a wrong password; True when this failure locks the pair."""
        await self.limiter.hit(self.account_key, self.window_s)
        await self.limiter.hit(self.pair_key, self.window_s)
        return await self.pair_locked()

    async def succeeded(self, session: AsyncSession) -> None:
        await self.limiter.reset(self.pair_key, session)


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


async def _fail(
    session: AsyncSession, email: str, account: Account | None, reason: str, locked: bool, **details: object
) -> None:
    await audit_auth(session, "auth.login", "failure", email, account, reason=reason, **details)
    if locked:
        await audit_auth(session, "auth.account_locked", "ok", email, account, **details)
    await session.commit()


async def authenticate(
    session: AsyncSession,
    email: str,
    password: str,
    totp: str | None = None,
    *,
    limiter: RateLimiter,
    source: str | None = None,
    policy: LoginPolicy | None = None,
) -> Authenticated:
    """Checks a staff member's or end user's password (and second factor) from the client address
    `source` (the request's, from the audit context, when not given). Raises AuthenticationFailed
    (TotpRequired when the password is right but the account's 2FA code is missing; RateLimited while
    the account's progressive delay runs)."""
    policy = policy or LoginPolicy.from_settings(_request_settings.get() or get_settings())
    source = source or current_context().ip or "unknown"
    throttle = LoginThrottle(limiter, policy, email.strip().lower()[:320], source)
    now = datetime.now(UTC)
    if await throttle.pair_locked():
        await _fail(session, email, await find_account(session, email), "locked", False, source=source)
        raise AuthenticationFailed(None, INVALID)
    wait = await throttle.account_delay()
    if wait is not None:
        await _fail(session, email, await find_account(session, email), "throttled", False, source=source)
        raise RateLimited(None, f"trop de tentatives sur ce compte : réessayez dans {wait} s", wait)
    account = await find_account(session, email)
    if account is None:
        verify_password(None, password)  # same work as for a real account
        await _fail(session, email, None, "unknown_account", await throttle.failed(), source=source)
        raise AuthenticationFailed(None, INVALID)
    if is_locked(account, now):  # by wrong second factors: the password was known
        await _fail(session, email, account, "locked", False, source=source)
        raise AuthenticationFailed(None, INVALID)
    if not verify_password(account.password_hash, password) or not account.active:
        locked = await throttle.failed()
        await _fail(session, email, account, "bad_password" if account.active else "inactive", locked, source=source)
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
    await throttle.succeeded(session)
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


# --- forgotten password ------------------------------------------------------------------------------


def reset_link(settings: Settings, token: str) -> str:
    return accounts_reset_link(settings.public_base_url, token)


async def request_password_reset(
    session: AsyncSession, settings: Settings, limiter: RateLimiter, email: str, address: str
) -> None:
    """Writes the reset mail of `email`'s account to the outbox, or nothing (unknown or inactive account, too
    many requests for the address): the caller answers the same in every case. Each client address has a
    budget of requests (429 beyond, whatever the account); each account gets at most 3 messages per 15
    windows, silently."""
    email = email.strip().lower()
    window = settings.rate_limit_window_s * 15
    await limiter.take(f"reset-ip:{address}", settings.rate_limit_password_resets_per_ip, window, "trop de demandes")
    if await limiter.retry_after(f"reset:{email}", 3, window) is not None:
        return
    await limiter.hit(f"reset:{email}", window)
    account = await find_account(session, email)
    if account is None or not account.active:
        await audit_auth(session, "auth.password_reset_requested", "unknown_account", email, None)
        return
    keys = AccountKeys.from_secret(settings.secrets_key.get_secret_value())
    token = await create_reset_token(session, keys, account, timedelta(minutes=settings.password_reset_ttl_minutes))
    session.add(
        SecurityMessage(
            kind="password_reset",
            recipient=account.email,
            subject="Réinitialisation de votre mot de passe simflow",
            body=(
                "Bonjour,\n\nPour choisir un nouveau mot de passe, utilisez ce code dans l'heure "
                f"(une seule fois) :\n\n{token}\n\n{reset_link(settings, token)}\n\n"
                "Si vous n'êtes pas à l'origine de cette demande, ignorez ce message."
            ),
        )
    )
    await audit_auth(session, "auth.password_reset_requested", "ok", email, account)


async def reset_password_with_token(
    session: AsyncSession, settings: Settings, token: str, new_password: str, *, channel: str | None = None
) -> Account:
    """Sets `new_password` on the account of an unexpired, unused token (used up now) and revokes its refresh
    tokens. `ValidationFailed` on `token` (invalid, expired, used) or `new_password` (complexity rule)."""
    keys = AccountKeys.from_secret(settings.secrets_key.get_secret_value())
    account = await consume_reset_token(session, keys, token.strip())
    if account is None:
        raise ValidationFailed("token", "lien de réinitialisation invalide, expiré ou déjà utilisé")
    set_password(account, new_password, must_change=False)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.account_id == account.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False},
    )
    details = {"channel": channel} if channel else {}
    await audit_auth(session, "auth.password_reset", "ok", account.email, account, **details)
    return account
