"""Errors are translated once, here, at the activity boundary: workflows branch on the `type` code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.exceptions import ApplicationError

from integrations.errors import IntegrationError


def to_application_error(err: IntegrationError) -> ApplicationError:
    return ApplicationError(
        f"{err.system} {err.code}: {err.message}",
        {"system": err.system, "code": err.code, "status_code": err.status_code},
        type=f"{err.system}.{err.code}",
        non_retryable=not err.retryable,
    )


@asynccontextmanager
async def external_call() -> AsyncIterator[None]:
    try:
        yield
    except IntegrationError as err:
        raise to_application_error(err) from err
