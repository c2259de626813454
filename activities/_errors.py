"""Errors are translated once, here, at the activity boundary: workflows branch on the `type`, a catalogue
code (`domain.errors.ErrorCode`, read back with `code_of`).

Every activity class is decorated with `@translates_errors`. An activity raises the domain's or the
integration's own errors; the decorator turns
- a `DomainError` (and an `InvalidIdentifier`) into a non-retryable `ApplicationError` typed with its code:
  a refusal of the rules does not change when retried;
- an `IntegrationError` into `{system}.{kind}` (`ocs.rejected`, `stripe.unavailable`, `payment.declined`),
  non-retryable when the remote system refused, the remote code kept in the details.
An `ApplicationError` an activity raised itself goes through unchanged; anything else (a bug, the database) is
left to Temporal's retry policy.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from domain.errors import DomainError, integration_code
from domain.identifiers import InvalidIdentifier
from integrations.errors import IntegrationError

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)

TRANSLATED_MARK = "__translates_errors__"


def to_application_error(err: DomainError | InvalidIdentifier | IntegrationError) -> ApplicationError:
    if isinstance(err, IntegrationError):
        return ApplicationError(
            f"{err.system} {err.code}: {err.message}",
            {"system": err.system, "code": err.code, "status_code": err.status_code},
            type=integration_code(err.system, err.kind),
            non_retryable=not err.retryable,
        )
    return ApplicationError(
        err.reason if err.field is None else f"{err.field}: {err.reason}",
        {"field": err.field, "reason": err.reason},
        type=err.code,
        non_retryable=True,
    )


def translated(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """The activity `fn` with its errors translated (keeps `@activity.defn`'s definition, copied by `wraps`)."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (DomainError, InvalidIdentifier, IntegrationError) as err:
            raise to_application_error(err) from err

    setattr(run, TRANSLATED_MARK, True)
    return run


def translates_errors(cls: C) -> C:
    """Class decorator: every `@activity.defn` method of `cls` translates its errors."""
    for name, member in list(vars(cls).items()):
        if hasattr(member, "__temporal_activity_definition") and not hasattr(member, TRANSLATED_MARK):
            setattr(cls, name, translated(member))
    return cls


@asynccontextmanager
async def external_call() -> AsyncIterator[None]:
    """The same translation around one call, for code outside a decorated activity."""
    try:
        yield
    except (DomainError, InvalidIdentifier, IntegrationError) as err:
        raise to_application_error(err) from err


def is_translated(activity_method: Any) -> bool:
    return bool(getattr(activity_method, TRANSLATED_MARK, False))
