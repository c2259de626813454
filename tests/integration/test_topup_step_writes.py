"""`topups.record_step` on the real database (SQLite; PostgreSQL with SIMFLOW_TEST_BACKEND=postgres): one step's
writes land together or not at all, and a retried step writes nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.topups import TopUpActivities
from domain.contracts import TopUpInput, TopUpStatusUpdate, TopUpStepWrites
from domain.enums import ExternalSystem
from domain.models import AuditLog, Organisation, UpdateRecord
from infra.db import create_engine, create_sessionmaker
from workflows.topup_effects import TopUpFacts


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def organisation(db: async_sessionmaker[AsyncSession]) -> str:
    async with db.begin() as session:
        org = Organisation(name="Acola Mobile", slug=f"steps-{uuid.uuid4().hex[:10]}")
        session.add(org)
        await session.flush()
        return org.id


def facts(org_id: str) -> TopUpFacts:
    data = TopUpInput(
        topup_id=uuid.uuid4().hex,
        org_id=org_id,
        company_id="",
        line_id="",
        deployment_id="",
        msisdn="+33670000001",
        payment_method="card",
        amount_minor=500,
        quantity=1,
        unit_price_minor=500,
        data_bytes=1024**3,
        article_code="DATA1",
        article_label="Recharge 1 Go",
    )
    return TopUpFacts(data, f"topup/{org_id}/{data.topup_id}")


def record_only(f: TopUpFacts) -> TopUpStepWrites:
    """A MAJ record and an audit row not tied to a company or line, so that only the organisation must exist."""
    record = f.record(ExternalSystem.OCS, "credit_data", ids={"balance_id": "b-1"}).model_copy(
        update={"company_id": None, "deployment_id": None, "line_id": None}
    )
    audit = f.money_audit("topup.charge", "pi_1").model_copy(update={"company_id": None})
    return TopUpStepWrites(topup_id=f.data.topup_id, records=[record], audits=[audit])


async def counts(db: async_sessionmaker[AsyncSession], f: TopUpFacts) -> tuple[int, int]:
    async with db() as session:
        records = await session.scalar(
            select(func.count()).select_from(UpdateRecord).where(UpdateRecord.workflow_id == f.workflow_id)
        )
        audits = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.workflow_id == f.workflow_id)
        )
    return records or 0, audits or 0


@pytest.mark.asyncio
async def test_a_step_whose_status_cannot_be_written_writes_none_of_its_records(
    db: async_sessionmaker[AsyncSession],
) -> None:
    f = facts(await organisation(db))
    step = record_only(f).model_copy(update={"status": TopUpStatusUpdate(topup_id=f.data.topup_id, status="charged")})
    activities = TopUpActivities(db, None, None)  # type: ignore[arg-type]  # no external call in this activity
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(activities.record_step, step)
    assert failure.value.type == "topup.not_found"
    assert await counts(db, f) == (0, 0)


@pytest.mark.asyncio
async def test_a_retried_step_writes_its_record_and_audit_row_once(db: async_sessionmaker[AsyncSession]) -> None:
    f = facts(await organisation(db))
    activities = TopUpActivities(db, None, None)  # type: ignore[arg-type]
    for _ in range(2):
        await ActivityEnvironment().run(activities.record_step, record_only(f))
    assert await counts(db, f) == (1, 1)
