"""One error catalogue with stable codes. HTTP status mapping lives in `api/` only."""

from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class ValidationFailed(DomainError):
    code = "validation_failed"


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class IllegalTransition(DomainError):
    code = "illegal_transition"


class PermissionDenied(DomainError):
    code = "permission_denied"


class AuthenticationFailed(DomainError):
    code = "authentication_failed"


class IdempotencyMismatch(DomainError):
    code = "idempotency_mismatch"


class ResourceBusy(AlreadyExists):
    """The object is held by another process (a SIM reserved by another activation, a number in use)."""

    code = "resource_busy"


class RateLimited(DomainError):
    """Too many attempts: retry after `retry_after_s` seconds."""

    code = "rate_limited"

    def __init__(self, field: str | None, reason: str, retry_after_s: int) -> None:
        super().__init__(field, reason)
        self.retry_after_s = max(1, int(retry_after_s))


class PasswordChangeRequired(PermissionDenied):
    """The account's password was set by an administrator: it must be changed before anything else."""

    code = "password_change_required"


class TotpRequired(AuthenticationFailed):
    """The password was right and the account has two-factor authentication: a code is needed."""

    code = "totp_required"
