"""S7: schemathesis over the whole OpenAPI, in-process against the ASGI app, authenticated as a platform
admin: no server error, responses conform to the schema, and no operation ignores authentication (each
call is replayed without and with invalid credentials and must get 401).

Bounded (a few examples per operation) so it stays in `make test`. `/api/v1/health` is left out: it reports
the state of the surrounding processes (503 when a dependency is down is its contract, not a server error).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.authz import PrincipalKind
from api.deps import issue_token
from domain.enums import StaffRole
from domain.models import StaffUser
from domain.security import hash_password
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.conftest import ADMIN_PASSWORD, TEST_SECRETS

EXAMPLES_PER_OPERATION = 8
HEALTH_REPORT = "/api/v1/health"
CHECKS = [not_a_server_error, ignored_auth, status_code_conformance, response_schema_conformance]


def _platform_admin(settings: Settings) -> str:
    """A platform admin of its own: fuzzing may log it out everywhere without touching other tests."""

    async def create() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessionmaker(engine).begin() as session:
                admin = StaffUser(
                    email=f"fuzz-{uuid.uuid4().hex[:8]}@test.simflow",
                    full_name="Fuzz",
                    password_hash=hash_password(f"Fuzz-{uuid.uuid4().hex}!A1"),
                    role=StaffRole.PLATFORM_ADMIN,
                )
                session.add(admin)
            return admin.id
        finally:
            await engine.dispose()

    return asyncio.run(create())


class LateApp:
    """The ASGI app schemathesis calls, bound to the session's settings (database, Temporal) when the
    module's fixture runs; the schema itself is read at collection time."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "the fuzz_context fixture binds the application"
        await self.target(scope, receive, send)


def _bearer_only(document: dict[str, Any]) -> dict[str, Any]:
    """Operations accept a bearer token or an API key; the run authenticates with the bearer token, so the
    API-key alternative is left out (schemathesis would otherwise send a made-up key with every call)."""
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and "security" in operation:
                operation["security"] = [s for s in operation["security"] if "APIKeyHeader" not in s]
    return document


LATE_APP = LateApp()
schema = schemathesis.openapi.from_dict(
    _bearer_only(create_app(Settings(**TEST_SECRETS, bootstrap_admin_password=ADMIN_PASSWORD)).openapi())
).exclude(path=HEALTH_REPORT)
schema.app = LATE_APP


@pytest.fixture(scope="module")
def fuzz_context(settings: Settings) -> dict[str, Any]:
    LATE_APP.target = create_app(settings)
    return {"settings": settings, "admin_id": _platform_admin(settings)}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_contract(case: Any, fuzz_context: dict[str, Any]) -> None:
    token = issue_token(fuzz_context["settings"], PrincipalKind.STAFF, fuzz_context["admin_id"])
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def test_every_api_operation_is_in_the_run(settings: Settings) -> None:
    """The run covers the whole OpenAPI (minus the health report): reports the operation count."""
    app = create_app(settings)
    paths = app.openapi()["paths"]
    operations = [
        (method.upper(), path)
        for path, ops in paths.items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete") and path != HEALTH_REPORT
    ]
    print(f"\nschemathesis operations: {len(operations)}")
    assert len(operations) >= 40
