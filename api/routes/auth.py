"""Authentication: tokens (OAuth2 password flow with an optional `totp` field, refresh with rotation,
logout), password change / forgotten password / reset, two-factor enrolment (TOTP + backup codes).

API keys are never accepted here: they identify integrations, not people.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import update

from api.deps import PrincipalDep, SessionDep, SettingsDep, StateDep, decode_token, issue_token, issued_before
from api.guard import audit_note
from api.login import (
    LoginPolicy,
    audit_auth,
    authenticate,
    change_own_password,
    confirm_password,
    request_password_reset,
    reset_password_with_token,
)
from api.schemas import Request as RequestModel
from api.schemas import TokenResponse
from domain.authz import Principal, PrincipalKind, require_human
from domain.errors import AlreadyExists, AuthenticationFailed, ValidationFailed
from domain.models import RefreshToken, StaffUser, new_id
from domain.security import new_totp_secret, totp_uri
from domain.services.accounts import (
    Account,
    AccountKeys,
    disable_second_factor,
    get_account,
    remaining_backup_codes,
    replace_backup_codes,
    verify_second_factor,
    verify_totp,
)
from infra.settings import Settings

router = APIRouter(prefix="/api/v1/auth", tags=["Authentification"])

RESET_ACCEPTED = "Si un compte correspond à cette adresse, un lien de réinitialisation vient d'être envoyé."


class PasswordForm:
    """OAuth2 password grant (`application/x-www-form-urlencoded`) plus `totp`: a 6-digit TOTP code or a
    backup code when the account has two-factor authentication."""

    def __init__(
        self,
        username: Annotated[str, Form(max_length=320)],
        password: Annotated[str, Form(max_length=1024)],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form(max_length=1000)] = "",
        client_id: Annotated[str | None, Form(max_length=200)] = None,
        client_secret: Annotated[str | None, Form(max_length=200)] = None,
        totp: Annotated[str | None, Form(max_length=32)] = None,
    ) -> None:
        self.username = username
        self.password = password
        self.grant_type = grant_type
        self.scopes = scope.split()
        self.client_id = client_id
        self.client_secret = client_secret
        self.totp = totp


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=10, max_length=2000)


class LogoutRequest(RequestModel):
    refresh_token: str | None = Field(default=None, max_length=2000)
    everywhere: bool = Field(default=False, description="Invalide aussi tous les jetons d'accès déjà émis")


class PasswordChange(RequestModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class PasswordForgot(RequestModel):
    email: EmailStr


class PasswordReset(RequestModel):
    token: str = Field(min_length=10, max_length=200)
    new_password: str = Field(min_length=1, max_length=1024)


class PasswordConfirm(RequestModel):
    password: str = Field(min_length=1, max_length=1024)


class CodeConfirm(RequestModel):
    code: str = Field(min_length=6, max_length=32)


class PasswordAndCode(RequestModel):
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=6, max_length=32)


class Accepted(BaseModel):
    detail: str


class Me(BaseModel):
    kind: str
    id: str
    email: str
    role: str | None
    org_id: str | None
    company_id: str | None
    end_user_id: str | None
    permissions: list[str]
    totp_enabled: bool
    must_change_password: bool
    backup_codes_remaining: int


class TotpSetup(BaseModel):
    secret: str = Field(description="Secret TOTP (base32), affiché une seule fois")
    otpauth_uri: str


class BackupCodes(BaseModel):
    backup_codes: list[str] = Field(description="10 codes de secours à usage unique, affichés une seule fois")


def _keys(settings: Settings) -> AccountKeys:
    return AccountKeys.from_secret(settings.secrets_key.get_secret_value())


async def _tokens(
    session: SessionDep, settings: Settings, account: Account, family: str | None = None
) -> tuple[TokenResponse, RefreshToken]:
    kind = PrincipalKind.STAFF if isinstance(account, StaffUser) else PrincipalKind.END_USER
    now = datetime.now(UTC)
    row = RefreshToken(
        id=new_id(),
        family_id=family or new_id(),
        account_kind=kind.value,
        account_id=account.id,
        expires_at=now + timedelta(days=settings.refresh_ttl_days),
    )
    session.add(row)
    await session.flush()
    refresh = jwt.encode(
        {
            "sub": account.id,
            "kind": kind.value,
            "typ": "refresh",
            "jti": row.id,
            "fam": row.family_id,
            "iat": now,
            "ias": now.timestamp(),
            "exp": row.expires_at,
        },
        settings.jwt_secret.get_secret_value(),
        algorithm="HS256",
    )
    response = TokenResponse(
        access_token=issue_token(settings, kind, account.id),
        expires_in=settings.jwt_ttl_minutes * 60,
        refresh_token=refresh,
        must_change_password=account.must_change_password,
    )
    return response, row


async def _account_of(session: SessionDep, principal: Principal) -> Account:
    require_human(principal)
    account = await get_account(session, principal.kind.value, principal.subject_id)
    if account is None:
        raise AuthenticationFailed(None, "compte introuvable")
    return account


async def _otp_budget(state: StateDep, account: Account) -> None:
    settings = state.settings
    await state.limiter.take(
        f"otp:{account.id}", settings.rate_limit_otp_per_account, settings.rate_limit_window_s, "trop de codes"
    )


# --- tokens ------------------------------------------------------------------------------------------


@router.post("/token", response_model=TokenResponse)
async def token(
    request: Request, form: Annotated[PasswordForm, Depends()], session: SessionDep, state: StateDep
) -> TokenResponse:
    settings = state.settings
    if request.headers.get("X-API-Key"):
        await audit_auth(session, "auth.login", "failure", form.username, None, reason="api_key_presented")
        await session.commit()
        raise AuthenticationFailed(None, "une clé d'API ne permet pas de se connecter")
    who = await authenticate(
        session,
        form.username,
        form.password,
        form.totp,
        limiter=state.limiter,
        source=request.client.host if request.client else None,
        policy=LoginPolicy.from_settings(settings),
    )
    account = await get_account(session, who.kind.value, who.subject_id)
    assert account is not None
    tokens, _ = await _tokens(session, settings, account)
    return tokens


@router.post("/refresh", response_model=TokenResponse)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenResponse:
    """A new access token and a new refresh token; the presented one is used up. Presenting a used one
    again (a stolen copy) revokes the whole family."""
    claims = decode_token(settings, body.refresh_token, typ="refresh")
    row = await session.get(RefreshToken, str(claims.get("jti", "")))
    now = datetime.now(UTC)
    if row is None or row.account_id != claims.get("sub") or row.account_kind != claims.get("kind"):
        raise AuthenticationFailed(None, "jeton de rafraîchissement invalide")
    account = await get_account(session, row.account_kind, row.account_id)
    if row.revoked_at is not None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now),
            execution_options={"synchronize_session": False},
        )
        await audit_auth(session, "auth.refresh_reuse", "failure", "", account, family=row.family_id)
        await session.commit()
        raise AuthenticationFailed(None, "jeton de rafraîchissement invalide")
    if account is None or not account.active or issued_before(claims, account.tokens_valid_after):
        raise AuthenticationFailed(None, "jeton de rafraîchissement invalide")
    tokens, successor = await _tokens(session, settings, account, family=row.family_id)
    row.revoked_at = now
    row.replaced_by = successor.id
    await audit_auth(session, "auth.refresh", "ok", account.email, account)
    return tokens


@router.post("/logout", status_code=204)
async def logout(body: LogoutRequest, principal: PrincipalDep, session: SessionDep, settings: SettingsDep) -> Response:
    account = await _account_of(session, principal)
    now = datetime.now(UTC)
    if body.refresh_token:
        try:
            claims = decode_token(settings, body.refresh_token, typ="refresh")
        except AuthenticationFailed:
            claims = {}
        if claims.get("sub") == account.id and claims.get("fam"):
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.family_id == str(claims["fam"]), RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now),
                execution_options={"synchronize_session": False},
            )
    if body.everywhere:
        account.tokens_valid_after = now
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.account_id == account.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now),
            execution_options={"synchronize_session": False},
        )
    audit_note(action="auth.logout", target=f"{principal.kind.value}:{account.id}", everywhere=body.everywhere)
    return Response(status_code=204)


@router.get("/me", response_model=Me)
async def me(principal: PrincipalDep, session: SessionDep) -> Me:
    account = await _account_of(session, principal)
    return Me(
        kind=principal.kind.value,
        id=account.id,
        email=account.email,
        role=principal.role.value if principal.role else None,
        org_id=principal.org_id,
        company_id=principal.company_id,
        end_user_id=principal.end_user_id,
        permissions=sorted(principal.permissions),
        totp_enabled=account.totp_enabled,
        must_change_password=account.must_change_password,
        backup_codes_remaining=await remaining_backup_codes(session, account) if account.totp_enabled else 0,
    )


# --- passwords -----------------------------------------------------------------------------------------


@router.post("/password/change", response_model=TokenResponse)
async def change_password(
    body: PasswordChange, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Verifies the current password, sets the new one; every token issued before stops working, so
    fresh ones are returned."""
    account = await _account_of(session, principal)
    await change_own_password(session, settings, account, body.current_password, body.new_password)
    audit_note(action="auth.password_changed", target=f"{principal.kind.value}:{account.id}")
    tokens, _ = await _tokens(session, settings, account)
    return tokens


@router.post("/password/forgot", status_code=202, response_model=Accepted)
async def forgot_password(body: PasswordForgot, request: Request, session: SessionDep, state: StateDep) -> Accepted:
    """Always the same answer, whether the account exists or not; the link (valid 1 hour, once) goes
    to the account's address. Each client address has a budget of requests (429 beyond, whatever the
    account); each account gets at most 3 messages per 15 windows (silently: the answer must not differ)."""
    address = request.client.host if request.client else "unknown"
    await request_password_reset(session, state.settings, state.limiter, str(body.email), address)
    return Accepted(detail=RESET_ACCEPTED)


@router.post("/password/reset", status_code=204)
async def reset_password(body: PasswordReset, session: SessionDep, settings: SettingsDep) -> Response:
    await reset_password_with_token(session, settings, body.token, body.new_password)
    return Response(status_code=204)


# --- two-factor authentication -------------------------------------------------------------------------


@router.post("/2fa/setup", response_model=TotpSetup)
async def totp_setup(
    body: PasswordConfirm, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> TotpSetup:
    """A new secret, active only once confirmed with a code (`/2fa/confirm`)."""
    account = await _account_of(session, principal)
    await confirm_password(session, settings, account, body.password)
    if account.totp_enabled:
        raise AlreadyExists(None, "la double authentification est déjà active")
    secret = new_totp_secret()
    account.totp_secret_encrypted = _keys(settings).box.seal(secret)
    account.totp_last_step = None
    audit_note(action="auth.2fa_setup_started", target=f"{principal.kind.value}:{account.id}")
    return TotpSetup(secret=secret, otpauth_uri=totp_uri(secret, account.email))


@router.post("/2fa/confirm", response_model=BackupCodes)
async def totp_confirm(body: CodeConfirm, principal: PrincipalDep, session: SessionDep, state: StateDep) -> BackupCodes:
    account = await _account_of(session, principal)
    if account.totp_enabled:
        raise AlreadyExists(None, "la double authentification est déjà active")
    if not account.totp_secret_encrypted:
        raise ValidationFailed("code", "commencez par /2fa/setup")
    await _otp_budget(state, account)
    keys = _keys(state.settings)
    if not verify_totp(keys, account, body.code):
        raise ValidationFailed("code", "code incorrect ou expiré")
    account.totp_enabled = True
    codes = await replace_backup_codes(session, keys, account)
    audit_note(action="auth.2fa_enabled", target=f"{principal.kind.value}:{account.id}")
    return BackupCodes(backup_codes=codes)


async def _second_factor(state: StateDep, session: SessionDep, account: Account, body: PasswordAndCode) -> None:
    await confirm_password(session, state.settings, account, body.password)
    if not account.totp_enabled:
        raise ValidationFailed("code", "la double authentification n'est pas active")
    await _otp_budget(state, account)
    if await verify_second_factor(session, _keys(state.settings), account, body.code) is None:
        raise ValidationFailed("code", "code incorrect ou expiré")


@router.post("/2fa/disable", status_code=204)
async def totp_disable(
    body: PasswordAndCode, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    account = await _account_of(session, principal)
    await _second_factor(state, session, account, body)
    await disable_second_factor(session, account)
    audit_note(action="auth.2fa_disabled", target=f"{principal.kind.value}:{account.id}")
    return Response(status_code=204)


@router.post("/2fa/backup-codes", response_model=BackupCodes)
async def regenerate_backup_codes(
    body: PasswordAndCode, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> BackupCodes:
    account = await _account_of(session, principal)
    await _second_factor(state, session, account, body)
    codes = await replace_backup_codes(session, _keys(state.settings), account)
    audit_note(action="auth.2fa_backup_codes_regenerated", target=f"{principal.kind.value}:{account.id}")
    return BackupCodes(backup_codes=codes)
