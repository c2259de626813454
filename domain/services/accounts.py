"""Accounts (staff members and end users): lockout, passwords, second factor, reset tokens.

Services take the session and never commit; the request owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.authz import PrincipalKind
from domain.models import BackupCode, EndUser, PasswordResetToken, StaffUser
from domain.security import (
    SecretBox,
    check_password_rule,
    hash_password,
    keyed_hash,
    new_backup_codes,
    new_token,
    normalize_backup_code,
    totp_match_step,
)

Account = StaffUser | EndUser


@dataclass(frozen=True)
class AccountKeys:
    """Key material of account secrets: the box that seals TOTP seeds, the pepper of keyed hashes."""

    box: SecretBox
    pepper: str

    @classmethod
    def from_secret(cls, secrets_key: str) -> AccountKeys:
        return cls(SecretBox(secrets_key), f"simflow-account|{secrets_key}")

    def hash(self, value: str) -> str:
        return keyed_hash(self.pepper, value)


def kind_of(account: Account) -> PrincipalKind:
    return PrincipalKind.STAFF if isinstance(account, StaffUser) else PrincipalKind.END_USER


def aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


async def find_account(session: AsyncSession, email: str) -> Account | None:
    email = email.strip().lower()
    staff = (await session.execute(select(StaffUser).where(func.lower(StaffUser.email) == email))).scalar_one_or_none()
    if staff is not None:
        return staff
    user = (await session.execute(select(EndUser).where(func.lower(EndUser.email) == email))).scalar_one_or_none()
    return user


async def get_account(session: AsyncSession, kind: str, account_id: str) -> Account | None:
    if kind == PrincipalKind.STAFF.value:
        return await session.get(StaffUser, account_id)
    if kind == PrincipalKind.END_USER.value:
        return await session.get(EndUser, account_id)
    return None


def is_locked(account: Account, now: datetime) -> bool:
    locked_until = aware(account.locked_until)
    return locked_until is not None and locked_until > now


def register_failure(account: Account, now: datetime, max_failures: int, lock: timedelta) -> bool:
    """Counts a failed attempt; returns True when this one locks the account."""
    account.failed_logins = (account.failed_logins or 0) + 1
    if account.failed_logins >= max_failures:
        account.locked_until = now + lock
        account.failed_logins = 0
        return True
    return False


def clear_failures(account: Account, now: datetime) -> None:
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now


def set_password(account: Account, new_password: str, *, must_change: bool, field: str = "new_password") -> None:
    """Checks the rule, stores the argon2 hash; every token issued before now stops working."""
    check_password_rule(new_password, field)
    account.password_hash = hash_password(new_password)
    account.must_change_password = must_change
    account.failed_logins = 0
    account.locked_until = None
    account.tokens_valid_after = datetime.now(UTC)


def verify_totp(keys: AccountKeys, account: Account, code: str, at: float | None = None) -> bool:
    """A current code (±1 step) never used before; remembers its step so it is refused next time."""
    if not account.totp_secret_encrypted:
        return False
    step = totp_match_step(keys.box.open(account.totp_secret_encrypted), code, account.totp_last_step, at)
    if step is None:
        return False
    account.totp_last_step = step
    return True


async def use_backup_code(session: AsyncSession, keys: AccountKeys, account: Account, code: str) -> bool:
    """Marks one unused backup code of this account as used (a conditional update: used once, even by
    two concurrent logins)."""
    digest = keys.hash(normalize_backup_code(code))
    result = await session.execute(
        update(BackupCode)
        .where(
            BackupCode.code_hash == digest,
            BackupCode.account_kind == kind_of(account).value,
            BackupCode.account_id == account.id,
            BackupCode.used_at.is_(None),
        )
        .values(used_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def verify_second_factor(session: AsyncSession, keys: AccountKeys, account: Account, code: str) -> str | None:
    """'totp' or 'backup_code' when the code is accepted, else None."""
    cleaned = code.strip()
    if cleaned.replace(" ", "").isdigit():
        return "totp" if verify_totp(keys, account, cleaned) else None
    return "backup_code" if await use_backup_code(session, keys, account, cleaned) else None


async def replace_backup_codes(session: AsyncSession, keys: AccountKeys, account: Account) -> list[str]:
    """Ten new single-use codes (shown once); every previous code stops working."""
    kind = kind_of(account).value
    await session.execute(
        delete(BackupCode).where(BackupCode.account_kind == kind, BackupCode.account_id == account.id),
        execution_options={"synchronize_session": False},
    )
    codes = new_backup_codes()
    for code in codes:
        session.add(BackupCode(account_kind=kind, account_id=account.id, code_hash=keys.hash(code)))
    await session.flush()
    return codes


async def remaining_backup_codes(session: AsyncSession, account: Account) -> int:
    query = select(func.count()).where(
        BackupCode.account_kind == kind_of(account).value,
        BackupCode.account_id == account.id,
        BackupCode.used_at.is_(None),
    )
    return int((await session.execute(query)).scalar_one())


async def disable_second_factor(session: AsyncSession, account: Account) -> None:
    account.totp_enabled = False
    account.totp_secret_encrypted = None
    account.totp_last_step = None
    await session.execute(
        delete(BackupCode).where(
            BackupCode.account_kind == kind_of(account).value, BackupCode.account_id == account.id
        ),
        execution_options={"synchronize_session": False},
    )


RESET_PAGE_PATH = "/portal/password/reset"


def reset_link(public_base_url: str, token: str) -> str:
    """The reset page with the token in the fragment: never sent to a server, so never in an access log or a
    Referer; the page's script puts it in the form."""
    return f"{public_base_url}{RESET_PAGE_PATH}#token={token}"


async def create_reset_token(session: AsyncSession, keys: AccountKeys, account: Account, ttl: timedelta) -> str:
    token = new_token(32)
    session.add(
        PasswordResetToken(
            account_kind=kind_of(account).value,
            account_id=account.id,
            token_hash=keys.hash(token),
            expires_at=datetime.now(UTC) + ttl,
        )
    )
    await session.flush()
    return token


async def consume_reset_token(session: AsyncSession, keys: AccountKeys, token: str) -> Account | None:
    """The account of an unexpired, unused token, marking it used (once); None otherwise. The account's
    other reset tokens are used up too."""
    now = datetime.now(UTC)
    row = (
        await session.execute(select(PasswordResetToken).where(PasswordResetToken.token_hash == keys.hash(token)))
    ).scalar_one_or_none()
    expires_at = aware(row.expires_at) if row is not None else None
    if row is None or row.used_at is not None or expires_at is None or expires_at <= now:
        return None
    claimed = await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == row.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now),
        execution_options={"synchronize_session": False},
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    await session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.account_kind == row.account_kind,
            PasswordResetToken.account_id == row.account_id,
            PasswordResetToken.used_at.is_(None),
        )
        .values(used_at=now),
        execution_options={"synchronize_session": False},
    )
    return await get_account(session, row.account_kind, row.account_id)
