"""Password authentication shared by the token endpoint and the portal login form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.authz import PrincipalKind
from domain.errors import AuthenticationFailed
from domain.models import EndUser, StaffUser
from domain.security import verify_password

MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=30)
INVALID = "identifiants invalides ou compte verrouillé"


@dataclass(frozen=True)
class Authenticated:
    kind: PrincipalKind
    subject_id: str
    email: str


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


async def authenticate(session: AsyncSession, email: str, password: str) -> Authenticated:
    """Checks a staff member's or end user's password. Failed attempts are counted (and committed)
    even though the caller then raises; the same message whether the account exists or not."""
    email = email.strip().lower()
    now = datetime.now(UTC)
    staff = (await session.execute(select(StaffUser).where(func.lower(StaffUser.email) == email))).scalar_one_or_none()
    if staff is not None:
        locked_until = _aware(staff.locked_until)
        if locked_until is not None and locked_until > now:
            raise AuthenticationFailed(None, INVALID)
        if not staff.active or not verify_password(staff.password_hash, password):
            staff.failed_logins += 1
            if staff.failed_logins >= MAX_FAILED_LOGINS:
                staff.locked_until = now + LOCK_DURATION
                staff.failed_logins = 0
            await session.commit()
            raise AuthenticationFailed(None, INVALID)
        staff.failed_logins = 0
        return Authenticated(PrincipalKind.STAFF, staff.id, staff.email)
    user = (await session.execute(select(EndUser).where(func.lower(EndUser.email) == email))).scalar_one_or_none()
    if not verify_password(user.password_hash if user else None, password) or user is None or not user.active:
        raise AuthenticationFailed(None, INVALID)
    return Authenticated(PrincipalKind.END_USER, user.id, user.email)
