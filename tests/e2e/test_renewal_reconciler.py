"""The `renewal-reconciler` Schedule on the real Temporal dev server, every 2 s, with the product's worker and
database: a renewing line gets its subscription workflow (with the search attributes of SPEC §4), a line
terminated ends its workflow, a running subscription workflow without a line is reported as an orphan; a pool
gets its subscription workflow too, which pays and grants its first period at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from domain.enums import AutoRenewMode, LineStatus, PlanType, PoolKind, SubscriptionKind, WalletOwnerType
from domain.models import Company, Line, Organisation, Plan, Pool, Subscription, Transaction, Wallet, WalletEntry
from domain.pools import pool_ocs_account, pool_owner_id
from domain.subscription_contracts import (
    ReconcileScan,
    SubscriptionInput,
    charge_key,
    period_balance_id,
    subscription_workflow_id,
)
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.ocs import BYTES_PER_GB, OcsClient
from starters.schedules import ensure_renewal_reconciler
from tests.conftest import migrated_database
from workflows._search import BUSINESS_STATUS, COMPANY_ID, ICCID, ORG_ID
from workflows.renewal_reconciler import SCHEDULE_ID, RenewalReconcilerWorkflow


@pytest.fixture(scope="module")
def renewal_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database of this module's own: the reconciler starts a workflow for every renewing line it finds, and
    the session database holds the other modules' lines (a thousand from the bulk activation)."""
    for url in migrated_database(tmp_path_factory):
        yield settings.model_copy(
            update={"task_queue": "simflow-test-renewals", "renewal_reconcile_s": 2, "database_url": url}
        )


@pytest_asyncio.fixture(scope="module")
async def renewal_worker(renewal_settings: Settings, temporal_client: Client) -> AsyncIterator[None]:
    from worker import build_worker

    async with build_worker(renewal_settings, temporal_client) as w:
        task = asyncio.create_task(w.run())
        yield
        await w.shutdown()
        await task


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.3)


async def renewing_line(settings: Settings) -> tuple[str, str, str]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            org = Organisation(name="Acola Mobile", slug=f"renew-{uuid.uuid4().hex[:10]}")
            session.add(org)
            await session.flush()
            company = Company(org_id=org.id, name="Transports Martin", customer_reference=uuid.uuid4().hex[:20])
            session.add(company)
            await session.flush()
            plan = Plan(
                org_id=org.id,
                name="Basique 5 Go",
                plan_type=PlanType.PREPAID,
                price_minor=1500,
                validity_days=30,
                carrier="Orange",
                auto_renew_mode=AutoRenewMode.ON,
            )
            session.add(plan)
            await session.flush()
            line = Line(
                org_id=org.id,
                company_id=company.id,
                msisdn="+33670000002",
                plan_id=plan.id,
                status=LineStatus.ACTIVE,
                next_renewal_on=(datetime.now(UTC) + timedelta(days=20)).date(),
            )
            session.add(line)
            await session.flush()
            return org.id, company.id, line.id
    finally:
        await engine.dispose()


async def set_line_status(settings: Settings, line_id: str, status: LineStatus) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            line = await session.get(Line, line_id)
            assert line is not None
            line.status = status
    finally:
        await engine.dispose()


async def subscription_status(settings: Settings, line_id: str) -> str | None:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await session.execute(select(Subscription.status).where(Subscription.line_id == line_id))
            status = found.scalar_one_or_none()
            return status.value if status is not None else None
    finally:
        await engine.dispose()


async def status_of(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError:
        return None


async def test_the_schedule_starts_subscriptions_ends_terminated_lines_and_reports_orphans(
    renewal_worker: None, renewal_settings: Settings, temporal_client: Client
) -> None:
    org_id, company_id, line_id = await renewing_line(renewal_settings)
    wf_id = subscription_workflow_id(org_id, line_id)
    schedule = temporal_client.get_schedule_handle(SCHEDULE_ID)
    try:
        await schedule.delete()  # another module's (daily, on its task queue): this test needs 2 s
    except RPCError:
        pass
    await ensure_renewal_reconciler(temporal_client, renewal_settings)
    await ensure_renewal_reconciler(temporal_client, renewal_settings)  # twice is harmless
    try:
        described_schedule = await schedule.describe()
        assert described_schedule.schedule.spec.intervals[0].every == timedelta(seconds=2)

        async def started() -> bool:
            return await status_of(temporal_client, wf_id) == WorkflowExecutionStatus.RUNNING

        await eventually(started, "the schedule starts the line's subscription workflow")
        await eventually(
            lambda: _equals(subscription_status(renewal_settings, line_id), "active"), "the subscription is opened"
        )
        described = await temporal_client.get_workflow_handle(wf_id).describe()
        attributes = described.typed_search_attributes
        assert (attributes[ORG_ID], attributes[COMPANY_ID]) == (org_id, company_id)
        assert attributes.get(ICCID) is None  # a line without SIM here
        assert attributes[BUSINESS_STATUS] in ("starting", "active")
        first_run = described.run_id

        # A later pass leaves the running workflow alone.
        await asyncio.sleep(4.5)
        assert (await temporal_client.get_workflow_handle(wf_id).describe()).run_id == first_run

        # Terminating the line ends its subscription workflow.
        await set_line_status(renewal_settings, line_id, LineStatus.TERMINATED)

        async def completed() -> bool:
            return await status_of(temporal_client, wf_id) == WorkflowExecutionStatus.COMPLETED

        await eventually(completed, "the terminated line's subscription workflow ends")
        assert await subscription_status(renewal_settings, line_id) == "ended"
    finally:
        await schedule.delete()

    # A running subscription workflow whose line does not exist (no worker polls its queue) is an orphan.
    ghost = subscription_workflow_id(org_id, f"ghost{uuid.uuid4().hex[:8]}")
    await temporal_client.start_workflow(
        "SubscriptionWorkflow",
        SubscriptionInput(org_id=org_id, company_id=company_id, line_id=ghost.rsplit("/", 1)[1]),
        id=ghost,
        task_queue=f"nobody-{uuid.uuid4().hex[:6]}",
    )
    try:

        async def reported() -> bool:
            result = await temporal_client.execute_workflow(
                RenewalReconcilerWorkflow.run,
                ReconcileScan(task_queue=renewal_settings.task_queue),
                id=f"renewal-reconciler-test-{uuid.uuid4().hex[:8]}",
                task_queue=renewal_settings.task_queue,
            )
            return ghost in result.orphans and wf_id not in result.started

        await eventually(reported, "the ghost workflow is reported as an orphan")
    finally:
        await temporal_client.get_workflow_handle(ghost).terminate("test: orphan reported")


async def _equals(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def dynamic_pool(settings: Settings) -> tuple[str, str, str]:
    """A dynamic pool (7 € and 2 GB per SIM) with two active members and a suspended one; the company's
    wallet holds 50 €."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            org = Organisation(name="Acola Mobile", slug=f"pool-{uuid.uuid4().hex[:10]}")
            session.add(org)
            await session.flush()
            company = Company(org_id=org.id, name="Transports Martin", customer_reference=uuid.uuid4().hex[:20])
            session.add(company)
            await session.flush()
            plan = Plan(
                org_id=org.id,
                name="Pool dynamique 2 Go par SIM",
                plan_type=PlanType.SUBSCRIPTION,
                subscription_kind=SubscriptionKind.DYNAMIC_POOL,
                price_minor=700,
                data_allowance_bytes=2 * BYTES_PER_GB,
                validity_days=30,
                carrier="Orange",
            )
            session.add(plan)
            await session.flush()
            pool = Pool(org_id=org.id, company_id=company.id, name="Camions", kind=PoolKind.DYNAMIC, plan_id=plan.id)
            session.add(pool)
            await session.flush()
            pool.ocs_account = pool_ocs_account(pool.id)
            for n, status in enumerate((LineStatus.ACTIVE, LineStatus.ACTIVE, LineStatus.SUSPENDED)):
                session.add(
                    Line(org_id=org.id, company_id=company.id, msisdn=f"+3367000020{n}", status=status, pool_id=pool.id)
                )
            wallet = Wallet(
                org_id=org.id, company_id=company.id, owner_type=WalletOwnerType.COMPANY, owner_id=company.id
            )
            session.add(wallet)
            await session.flush()
            session.add(WalletEntry(wallet_id=wallet.id, amount_minor=5000, kind="funding", reference=uuid.uuid4().hex))
            return org.id, pool.id, plan.id
    finally:
        await engine.dispose()


async def test_the_reconciler_starts_a_pool_subscription_which_pays_and_grants_its_first_period(
    renewal_worker: None, renewal_settings: Settings, temporal_client: Client
) -> None:
    org_id, pool_id, plan_id = await dynamic_pool(renewal_settings)
    wf_id = subscription_workflow_id(org_id, pool_owner_id(pool_id))
    result = await temporal_client.execute_workflow(
        RenewalReconcilerWorkflow.run,
        ReconcileScan(task_queue=renewal_settings.task_queue),
        id=f"renewal-reconciler-test-{uuid.uuid4().hex[:8]}",
        task_queue=renewal_settings.task_queue,
    )
    assert wf_id in result.started and wf_id not in result.orphans

    engine = create_engine(renewal_settings.database_url)
    try:
        sessions = create_sessionmaker(engine)

        async def first_period_paid() -> bool:
            async with sessions() as session:
                found = await session.execute(select(Subscription.period).where(Subscription.pool_id == pool_id))
                return found.scalar_one_or_none() == 1

        await eventually(first_period_paid, "the pool's first period is paid")
        key = charge_key(wf_id, 1)
        async with sessions() as session:
            debits = (await session.execute(select(WalletEntry).where(WalletEntry.reference == key))).scalars().all()
            transaction = (await session.execute(select(Transaction).where(Transaction.reference == key))).scalar_one()
    finally:
        await engine.dispose()
    assert [d.amount_minor for d in debits] == [-1400]  # two active members × 7 €
    assert transaction.retail_minor == 1400 and transaction.line_id is None
    async with OcsClient(renewal_settings.ocs_url, renewal_settings.ocs_tenant, 5.0) as ocs:
        account = await ocs.get_account(pool_ocs_account(pool_id))
    assert account is not None
    assert [(b.id, b.value) for b in account.balances] == [(period_balance_id(plan_id, 1), 4 * BYTES_PER_GB)]
    await temporal_client.get_workflow_handle(wf_id).terminate("test: the first period is what is checked")


async def renewing_lines(settings: Settings, count: int) -> tuple[str, list[str]]:
    """`count` renewing lines of one new organisation."""
    org_id, company_id, first = await renewing_line(settings)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            model = await session.get(Line, first)
            assert model is not None
            lines = [
                Line(
                    org_id=org_id,
                    company_id=company_id,
                    msisdn=f"+3367000030{n}",
                    plan_id=model.plan_id,
                    status=LineStatus.ACTIVE,
                    next_renewal_on=model.next_renewal_on,
                )
                for n in range(count - 1)
            ]
            session.add_all(lines)
            await session.flush()
            return org_id, [first, *(line.id for line in lines)]
    finally:
        await engine.dispose()


async def test_the_reconciler_pages_through_more_lines_than_one_batch(
    renewal_worker: None, renewal_settings: Settings, temporal_client: Client
) -> None:
    """Five lines, pages of two: every line gets its workflow, one activity per page (keyset on the id), and a
    second pass starts none of them again."""
    org_id, line_ids = await renewing_lines(renewal_settings, 5)
    ours = {subscription_workflow_id(org_id, line_id) for line_id in line_ids}
    scan = ReconcileScan(task_queue=renewal_settings.task_queue, batch_size=2)
    try:
        handle = await temporal_client.start_workflow(
            RenewalReconcilerWorkflow.run,
            scan,
            id=f"renewal-reconciler-test-{uuid.uuid4().hex[:8]}",
            task_queue=renewal_settings.task_queue,
        )
        result = await handle.result()
        assert ours <= set(result.started), result
        batches = [
            event.activity_task_scheduled_event_attributes
            async for event in handle.fetch_history_events()
            if event.HasField("activity_task_scheduled_event_attributes")
            and event.activity_task_scheduled_event_attributes.activity_type.name == "subscriptions.reconcile_batch"
        ]
        # At least three pages of lines for five (more lines of this module's other tests may come between),
        # then the pools and the terminated lines, one page each at least.
        assert len(batches) >= 3 + 2, len(batches)
        for wf_id in ours:
            assert await status_of(temporal_client, wf_id) == WorkflowExecutionStatus.RUNNING

        async def none_started_again() -> bool:
            again = await temporal_client.execute_workflow(
                RenewalReconcilerWorkflow.run,
                scan,
                id=f"renewal-reconciler-test-{uuid.uuid4().hex[:8]}",
                task_queue=renewal_settings.task_queue,
            )
            return not ours & set(again.started) and again.running >= len(ours)

        await eventually(none_started_again, "a second pass finds the five workflows running")
    finally:
        for wf_id in ours:
            try:
                await temporal_client.get_workflow_handle(wf_id).terminate("test: the start is what is checked")
            except RPCError:
                pass
