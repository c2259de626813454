"""No double allocation under concurrency: SIM reservations and MSISDN allocations raced from many
sessions at once, against the real database (SQLite; PostgreSQL with SIMFLOW_TEST_BACKEND=postgres)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.enums import LineStatus, PhoneNumberStatus, SimStatus
from domain.errors import IllegalTransition, ResourceBusy
from domain.models import Company, Line, NumberRange, Organisation, PhoneNumber, SimCard
from domain.services import lines as line_service
from infra.db import create_engine, create_sessionmaker
from tests.api._support import random_iccid, random_imsi


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _tenant(db: async_sessionmaker[AsyncSession], *, sims: int, range_size: int) -> tuple[str, str, list[str]]:
    base = 33620000000 + random.randrange(0, 8_000_000 // range_size) * range_size
    async with db.begin() as session:
        org = Organisation(name="Concurrence", slug=f"cc-{uuid.uuid4().hex[:10]}")
        session.add(org)
        await session.flush()
        company = Company(org_id=org.id, name="Entreprise", customer_reference=f"CC-{uuid.uuid4().hex[:8]}")
        session.add(company)
        session.add(
            NumberRange(org_id=org.id, label="plage", first_msisdn=f"+{base}", last_msisdn=f"+{base + range_size - 1}")
        )
        iccids = [random_iccid() for _ in range(sims)]
        session.add_all(
            SimCard(org_id=org.id, iccid=i, imsi=random_imsi(), carrier="Orange", status=SimStatus.BLANK)
            for i in iccids
        )
        await session.flush()
        return org.id, company.id, iccids


async def test_one_sim_reserved_by_exactly_one_of_many_concurrent_activations(
    db: async_sessionmaker[AsyncSession],
) -> None:
    org_id, company_id, (iccid,) = await _tenant(db, sims=1, range_size=10)

    async def attempt(n: int) -> str | None:
        try:
            async with db.begin() as session:
                await line_service.reserve_sim(
                    session, org_id=org_id, iccid=iccid, reservation_key=f"wf-{n}", company_id=company_id, actor="t"
                )
            return f"wf-{n}"
        except ResourceBusy:
            return None

    winners = [w for w in await asyncio.gather(*(attempt(n) for n in range(25))) if w]
    assert len(winners) == 1
    async with db() as session:
        sim = (await session.execute(select(SimCard).where(SimCard.iccid == iccid))).scalar_one()
    assert sim.reserved_by == winners[0]
    # The holder may ask again (idempotent); once released, another activation can take it.
    async with db.begin() as session:
        await line_service.reserve_sim(
            session, org_id=org_id, iccid=iccid, reservation_key=winners[0], company_id=company_id, actor="t"
        )
    async with db.begin() as session:
        assert await line_service.release_sim(session, iccid=iccid, reservation_key=winners[0], actor="t")
    async with db.begin() as session:
        await line_service.reserve_sim(
            session, org_id=org_id, iccid=iccid, reservation_key="wf-next", company_id=company_id, actor="t"
        )


async def test_concurrent_allocations_never_share_a_number(db: async_sessionmaker[AsyncSession]) -> None:
    size = 30
    org_id, _, _ = await _tenant(db, sims=0, range_size=size)
    now = datetime.now(UTC)

    async def allocate(n: int) -> str | None:
        for _ in range(20):  # SQLite may answer "database is locked" under this load: retried, like the activity
            try:
                async with db.begin() as session:
                    number = await line_service.allocate_msisdn(
                        session, org_id=org_id, reservation_key=f"wf-{n}", now=now
                    )
                    return number.msisdn
            except ResourceBusy:
                return None
            except Exception as exc:  # only lock contention is expected here
                assert "locked" in str(exc), exc
                await asyncio.sleep(0.05)
        raise AssertionError("never got the lock")

    results = await asyncio.gather(*(allocate(n) for n in range(size + 5)))
    taken = [r for r in results if r]
    assert len(taken) == size and len(set(taken)) == size  # every number once, the extra ones refused
    async with db() as session:
        rows = list((await session.execute(select(PhoneNumber).where(PhoneNumber.org_id == org_id))).scalars())
    assert len(rows) == size and all(r.status is PhoneNumberStatus.RESERVED for r in rows)


async def test_quarantined_number_comes_back_only_after_its_quarantine(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, company_id, (iccid,) = await _tenant(db, sims=1, range_size=1)
    now = datetime.now(UTC)
    async with db.begin() as session:
        number = await line_service.allocate_msisdn(session, org_id=org_id, reservation_key="wf-a", now=now)
        line = Line(org_id=org_id, company_id=company_id, msisdn=number.msisdn, status=LineStatus.UNDER_CONSTRUCTION)
        session.add(line)
        await session.flush()
        await line_service.assign_msisdn(session, reservation_key="wf-a", line_id=line.id)
        await line_service.quarantine_msisdn(session, line_id=line.id, until=now + timedelta(days=90))
        msisdn = number.msisdn
    with pytest.raises(ResourceBusy):
        async with db.begin() as session:
            await line_service.allocate_msisdn(session, org_id=org_id, reservation_key="wf-b", now=now)
    async with db.begin() as session:
        later = await line_service.allocate_msisdn(
            session, org_id=org_id, reservation_key="wf-c", now=now + timedelta(days=91)
        )
        assert later.msisdn == msisdn and later.status is PhoneNumberStatus.RESERVED
    assert iccid  # the SIM is not involved


async def test_a_sim_that_is_not_blank_cannot_be_reserved(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, company_id, (iccid,) = await _tenant(db, sims=1, range_size=1)
    async with db.begin() as session:
        sim = (await session.execute(select(SimCard).where(SimCard.iccid == iccid))).scalar_one()
        sim.status = SimStatus.TERMINATED
    with pytest.raises(IllegalTransition):
        async with db.begin() as session:
            await line_service.reserve_sim(
                session, org_id=org_id, iccid=iccid, reservation_key="wf", company_id=company_id, actor="t"
            )
