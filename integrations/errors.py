"""Error tree shared by every integration client.

`IntegrationError.retryable` tells the activity boundary whether Temporal may retry the call:
transport failures, timeouts and 5xx are retryable; a 4xx answer is the remote system's decision.
`kind` is the reason half of the catalogue code the activity boundary reports (`{system}.{kind}`, see
`domain.errors.ErrorCode`); `code` keeps the remote system's own code for the logs and the details.
"""

from __future__ import annotations

from typing import Any


class IntegrationError(Exception):
    retryable: bool = True
    kind: str = "unavailable"

    def __init__(self, system: str, code: str, message: str, *, status_code: int | None = None, body: Any = None):
        super().__init__(f"{system}: {code}: {message}")
        self.system = system
        self.code = code
        self.message = message
        self.status_code = status_code
        self.body = body


class TransientError(IntegrationError):
    """Connection refused or dropped, timeout, 5xx: the call may or may not have been applied."""

    retryable = True
    kind = "unavailable"


class RejectedError(IntegrationError):
    """The remote system refused the request (4xx, business error): retrying changes nothing."""

    retryable = False
    kind = "rejected"


class NotFoundError(RejectedError):
    """The remote object does not exist."""

    kind = "not_found"


class ConflictError(RejectedError):
    """Idempotency key reused with another payload, or the object is in a state that forbids the call."""

    kind = "conflict"


class DeclinedError(RejectedError):
    """A payment the payer's bank or the payment system declined."""

    kind = "declined"
