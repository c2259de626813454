"""Token endpoint (OAuth2 password flow) for staff and end users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import func, select

from api.authz import PrincipalKind
from api.deps import SessionDep, SettingsDep, issue_token
from api.schemas import TokenResponse
from domain.errors import AuthenticationFailed
from domain.models import EndUser, StaffUser
from domain.security import verify_password

router = APIRouter(prefix="/api/v1/auth", tags=["Authentification"])

MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=30)


@router.post("/token", response_model=TokenResponse)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    email = form.username.strip().lower()
    now = datetime.now(UTC)
    staff = (await session.execute(select(StaffUser).where(func.lower(StaffUser.email) == email))).scalar_one_or_none()
    if staff is not None:
        locked_until = (
            staff.locked_until.replace(tzinfo=UTC)
            if staff.locked_until and not staff.locked_until.tzinfo
            else staff.locked_until
        )
        if locked_until is not None and locked_until > now:
            raise AuthenticationFailed(None, "identifiants invalides ou compte verrouillé")
        if not staff.active or not verify_password(staff.password_hash, form.password):
            staff.failed_logins += 1
            if staff.failed_logins >= MAX_FAILED_LOGINS:
                staff.locked_until = now + LOCK_DURATION
                staff.failed_logins = 0
            await session.commit()
            raise AuthenticationFailed(None, "identifiants invalides ou compte verrouillé")
        staff.failed_logins = 0
        return TokenResponse(
            access_token=issue_token(settings, PrincipalKind.STAFF, staff.id), expires_in=settings.jwt_ttl_minutes * 60
        )
    user = (await session.execute(select(EndUser).where(func.lower(EndUser.email) == email))).scalar_one_or_none()
    if user is None or not user.active or not verify_password(user.password_hash if user else None, form.password):
        raise AuthenticationFailed(None, "identifiants invalides ou compte verrouillé")
    return TokenResponse(
        access_token=issue_token(settings, PrincipalKind.END_USER, user.id), expires_in=settings.jwt_ttl_minutes * 60
    )
