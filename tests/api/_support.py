"""Helpers of the API tests: RFC 9457 problem assertions, "nothing changed" row counts, test identifiers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import Connection, func, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.identifiers import iccid_with_check_digit
from domain.models import Base

VALID_SIRET = "73282932000074"
VALID_VAT = "FR44732829320"
STRONG_PASSWORD = "Staff-password-2026!"


def random_iccid() -> str:
    """A valid 19-digit French ICCID (Luhn check digit appended), unique enough for one test session."""
    return iccid_with_check_digit("8933" + "".join(random.choices("0123456789", k=14)))


def random_imsi() -> str:
    """A valid 15-digit IMSI on Orange France (MCC 208, MNC 01)."""
    return "20801" + "".join(random.choices("0123456789", k=10))


def bad_luhn(iccid: str) -> str:
    return iccid[:-1] + str((int(iccid[-1]) + 1) % 10)


def problem_errors(response: httpx.Response) -> dict[str, str]:
    """The `errors[]` of a problem body as {field: reason}."""
    return {e["field"]: e["reason"] for e in response.json().get("errors", [])}


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 body with the expected status; when `field` is given, `errors[]` names it with a reason
    (containing `reason` when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://"), body
    assert body["title"] and body["detail"] and body["code"], body
    if field is not None:
        errors = problem_errors(response)
        assert field in errors, f"{field!r} not named in {body}"
        assert errors[field].strip(), body
        if reason is not None:
            assert reason.lower() in errors[field].lower(), body
    return body


def _table_names(conn: Connection) -> list[str]:
    # The rate-limit counters are bookkeeping of the requests themselves, not data they change.
    return [name for name in inspect(conn).get_table_names() if name not in ("alembic_version", "rate_limit_hits")]


async def row_counts(db: async_sessionmaker[AsyncSession], org_ids: Collection[str] = ()) -> dict[str, int]:
    """Rows per table of the real schema (whatever migrations created), to show that a request wrote nothing.
    With `org_ids`, only those organisations' rows are counted where a table (or its parent) names the
    organisation: work of other tests still running in the background then cannot change the counts."""
    async with db() as session:
        conn = await session.connection()
        names = await conn.run_sync(_table_names)
        return {name: (await session.execute(_count_query(name, org_ids))).scalar_one() for name in names}


def _count_query(name: str, org_ids: Collection[str]) -> Any:
    query = select(func.count()).select_from(table(name))
    model = Base.metadata.tables.get(name)
    if not org_ids or model is None:
        return query
    if name == "organisations":
        return select(func.count()).select_from(model).where(model.c.id.in_(org_ids))
    if "org_id" in model.c:
        return select(func.count()).select_from(model).where(model.c.org_id.in_(org_ids))
    for key in model.foreign_keys:
        parent = key.column.table
        if "org_id" in parent.c:
            joined = model.join(parent, key.parent == key.column)
            return select(func.count()).select_from(joined).where(parent.c.org_id.in_(org_ids))
    return query


@asynccontextmanager
async def unchanged(
    db: async_sessionmaker[AsyncSession], *, tables: Collection[str] | None = None
) -> AsyncIterator[None]:
    """Asserts that the block leaves every table (or only `tables`, when a workflow the test started may write
    the others meanwhile) with the same number of rows."""
    before = await row_counts(db)
    yield
    after = await row_counts(db)
    changed = {
        name: (before.get(name), count)
        for name, count in after.items()
        if before.get(name) != count and (tables is None or name in tables)
    }
    assert not changed, f"rows changed (before, after): {changed}"
