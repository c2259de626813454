"""The subscription activities on the real database (SQLite; PostgreSQL with SIMFLOW_TEST_BACKEND=postgres):
the subscription opened on the calendar, the wallet charge once per key, the renewal's transaction and expiry
written once, a notice queued once, plans of another tenant refused; a pool's subscription opened due the day it
opens, its renewal quoted from the members active at renewal time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.subscriptions import SubscriptionActivities
from domain.enums import (
    AutoRenewMode,
    DeploymentKind,
    DeploymentStatus,
    InvoiceStatus,
    LineStatus,
    PlanType,
    PoolKind,
    SubscriptionKind,
    WalletOwnerType,
)
from domain.models import (
    Company,
    Deployment,
    DeploymentItem,
    Invoice,
    Line,
    Notification,
    Organisation,
    Payment,
    Plan,
    Pool,
    Refund,
    Subscription,
    Transaction,
    Wallet,
    WalletEntry,
)
from domain.pools import pool_owner_id
from domain.renewal_calendar import RenewalCalendar
from domain.subscription_contracts import (
    LoadSubscription,
    PoolMembersQuery,
    QuotePlan,
    QuotePool,
    RecordRenewal,
    RenewalCharge,
    RenewalRefund,
    SubscriptionChange,
    SubscriptionNotice,
    SubscriptionTerms,
    charge_key,
    subscription_workflow_id,
)
from infra.db import create_engine, create_sessionmaker
from integrations.stripe_gateway import StripeGateway


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def tenant_with_line(
    db: async_sessionmaker[AsyncSession], *, plan_type: PlanType = PlanType.PREPAID, wallet_minor: int | None = 5000
) -> tuple[str, str]:
    async with db.begin() as session:
        org = Organisation(name="Acola Mobile", slug=f"subs-{uuid.uuid4().hex[:10]}")
        session.add(org)
        await session.flush()
        company = Company(
            org_id=org.id,
            name="Transports Martin",
            customer_reference=f"SUBS-{uuid.uuid4().hex[:10]}",
            billing_email="compta@transports-martin.fr",
        )
        session.add(company)
        await session.flush()
        plan = Plan(
            org_id=org.id,
            name="Basique 5 Go",
            plan_type=plan_type,
            price_minor=1500,
            data_allowance_bytes=5 << 30,
            validity_days=30,
            carrier="Orange",
            auto_renew_mode=AutoRenewMode.ON,
        )
        session.add(plan)
        await session.flush()
        line = Line(
            org_id=org.id,
            company_id=company.id,
            msisdn="+33670000001",
            plan_id=plan.id,
            status=LineStatus.ACTIVE,
            ocs_account="ocs-0670000001",
            next_renewal_on=date(2027, 3, 2),  # activated on 31 January (30 days of validity)
        )
        session.add(line)
        if wallet_minor is not None:
            wallet = Wallet(
                org_id=org.id, company_id=company.id, owner_type=WalletOwnerType.COMPANY, owner_id=company.id
            )
            session.add(wallet)
            await session.flush()
            session.add(
                WalletEntry(wallet_id=wallet.id, amount_minor=wallet_minor, kind="funding", reference=uuid.uuid4().hex)
            )
        await session.flush()
        return org.id, line.id


def activities(db: async_sessionmaker[AsyncSession]) -> SubscriptionActivities:
    # The wallet path and the database writes need neither Stripe nor CFAST.
    return SubscriptionActivities(db, cast(Any, None), cast(Any, None))


async def test_load_opens_the_subscription_on_the_calendar_and_charges_the_wallet_once_per_key(
    db: async_sessionmaker[AsyncSession],
) -> None:
    org_id, line_id = await tenant_with_line(db)
    acts = activities(db)
    wf_id = subscription_workflow_id(org_id, line_id)
    request = LoadSubscription(org_id=org_id, line_id=line_id, workflow_id=wf_id, today=date(2027, 2, 10))
    terms = await acts.load(request)
    again = await acts.load(request)
    assert again.subscription_id == terms.subscription_id
    assert (terms.anchor_on, terms.period, terms.payment_method) == (date(2027, 1, 31), 0, "wallet")
    async with db() as session:
        line = await session.get(Line, line_id)
        assert line is not None and line.next_renewal_on == date(2027, 2, 28)  # the anchor's calendar

    key = charge_key(wf_id, 1)
    charge = RenewalCharge(
        subscription_id=terms.subscription_id,
        period=1,
        idempotency_key=key,
        amount_minor=1500,
        currency="EUR",
        method="wallet",
        description="Renouvellement",
    )
    first, second = await acts.charge(charge), await acts.charge(charge)
    assert first == second
    too_much = charge.model_copy(update={"idempotency_key": charge_key(wf_id, 2), "amount_minor": 4000})
    with pytest.raises(ApplicationError) as refused:
        await acts.charge(too_much)
    assert refused.value.type == "wallet.insufficient_funds" and refused.value.non_retryable

    renewal = RecordRenewal(
        subscription_id=terms.subscription_id,
        period=1,
        plan_id=terms.plan_id,
        next_renewal_on=date(2027, 3, 31),
        transaction_reference=key,
        description="Renouvellement Basique 5 Go — période 1",
        amount_minor=1500,
        currency="EUR",
        method="wallet",
        payment_reference=first.payment_reference,
    )
    await acts.record_renewal(renewal)
    await acts.record_renewal(renewal)
    refund = RenewalRefund(
        subscription_id=terms.subscription_id,
        charge_key=key,
        idempotency_key=f"{key}:refund",
        method="wallet",
        payment_reference=first.payment_reference,
        amount_minor=1500,
        currency="EUR",
    )
    assert await acts.refund(refund) == await acts.refund(refund)
    async with db() as session:
        transactions = (await session.execute(select(Transaction).where(Transaction.reference == key))).scalars()
        assert [t.retail_minor for t in transactions] == [1500]
        entries = await session.execute(
            select(func.count()).select_from(WalletEntry).where(WalletEntry.reference.like(f"{key}%"))
        )
        assert entries.scalar_one() == 2  # the debit and its refund, once each
        subscription = await session.get(Subscription, terms.subscription_id)
        line = await session.get(Line, line_id)
        assert subscription is not None and line is not None
        assert (subscription.period, subscription.next_renewal_on, line.next_renewal_on) == (
            1,
            date(2027, 3, 31),
            date(2027, 3, 31),
        )


async def test_a_renewal_paid_from_the_wallet_gets_its_receipt_and_a_refunded_attempt_its_books(
    db: async_sessionmaker[AsyncSession],
) -> None:
    org_id, line_id = await tenant_with_line(db)
    acts = activities(db)
    wf_id = subscription_workflow_id(org_id, line_id)
    request = LoadSubscription(org_id=org_id, line_id=line_id, workflow_id=wf_id, today=date(2027, 2, 10))
    terms = await acts.load(request)

    def charge(attempt: int) -> RenewalCharge:
        return RenewalCharge(
            subscription_id=terms.subscription_id,
            period=1,
            idempotency_key=charge_key(wf_id, 1, attempt),
            amount_minor=1500,
            currency="EUR",
            method="wallet",
            description="Renouvellement",
        )

    # Attempt 0 is charged, then given back (its OCS grant failed): charge, reversal and Refund, once each.
    refused = await acts.charge(charge(0))
    given_back = RenewalRefund(
        subscription_id=terms.subscription_id,
        charge_key=charge_key(wf_id, 1, 0),
        idempotency_key=f"{charge_key(wf_id, 1, 0)}:refund",
        method="wallet",
        payment_reference=refused.payment_reference,
        amount_minor=1500,
        currency="EUR",
    )
    assert await acts.refund(given_back) == await acts.refund(given_back)
    # Attempt 1 is paid and recorded (twice: a retried local activity) under the period's first key.
    paid = await acts.charge(charge(1))
    renewal = RecordRenewal(
        subscription_id=terms.subscription_id,
        period=1,
        plan_id=terms.plan_id,
        next_renewal_on=date(2027, 3, 31),
        transaction_reference=charge_key(wf_id, 1),
        description="Renouvellement Basique 5 Go — période 1",
        amount_minor=1500,
        currency="EUR",
        method="wallet",
        payment_reference=paid.payment_reference,
    )
    async with db.begin() as session:
        plan = await session.get(Plan, terms.plan_id)
        assert plan is not None
        plan.purchase_price_minor = 900
    await acts.record_renewal(renewal)
    await acts.record_renewal(renewal)
    async with db() as session:
        rows = (await session.execute(select(Transaction).where(Transaction.org_id == org_id))).scalars().all()
        books = sorted((t.retail_minor, t.billed_by, t.invoice_id is not None) for t in rows)
        assert books == [(-1500, "receipt", False), (1500, "receipt", False), (1500, "receipt", True)]
        [period] = [t for t in rows if t.reference == charge_key(wf_id, 1)]
        assert (period.wholesale_minor, period.tax_minor) == (900, 250)  # the purchase price; 20 % inside 15,00 €
        invoices = (await session.execute(select(Invoice).where(Invoice.org_id == org_id))).scalars().all()
        assert [(i.status, i.total_minor, i.payment_reference) for i in invoices] == [
            (InvoiceStatus.PAID, 1500, paid.payment_reference)
        ]
        payments = (await session.execute(select(Payment).where(Payment.org_id == org_id))).scalars().all()
        assert sorted((p.status, p.invoice_id == invoices[0].id) for p in payments) == [
            ("refunded", False),
            ("succeeded", True),
        ]
        refunds = (await session.execute(select(Refund).where(Refund.org_id == org_id))).scalars().all()
        assert [(r.amount_minor, r.reference, r.status) for r in refunds] == [
            (1500, given_back.idempotency_key, "succeeded")
        ]
        mails = await session.execute(select(Notification).where(Notification.attachment_ref == invoices[0].id))
        assert [(m.recipient, m.attachment_kind) for m in mails.scalars()] == [
            ("compta@transports-martin.fr", "invoice")
        ]


async def test_a_refunded_card_renewal_writes_its_refund_with_stripes_id(
    db: async_sessionmaker[AsyncSession], stripe_url: str
) -> None:
    org_id, line_id = await tenant_with_line(db, wallet_minor=None)
    async with StripeGateway("sk_test_simflow_renewals", stripe_url, timeout_s=10.0) as gateway:
        customer = await gateway.ensure_customer(
            f"{uuid.uuid4().hex[:8]}@example.org", "Transports Martin", {"org_id": org_id}, uuid.uuid4().hex
        )
        card = await gateway.attach_card(customer.customer_id, "4242424242424242", uuid.uuid4().hex)
        async with db.begin() as session:
            line = await session.get(Line, line_id)
            assert line is not None
            company = await session.get(Company, line.company_id)
            assert company is not None
            company.stripe_customer_id, company.stripe_payment_method_id = customer.customer_id, card.payment_method_id
        acts = SubscriptionActivities(db, gateway, cast(Any, None))
        wf_id = subscription_workflow_id(org_id, line_id)
        request = LoadSubscription(org_id=org_id, line_id=line_id, workflow_id=wf_id, today=date(2027, 2, 10))
        terms = await acts.load(request)
        key = charge_key(wf_id, 1)
        paid = await acts.charge(
            RenewalCharge(
                subscription_id=terms.subscription_id,
                period=1,
                idempotency_key=key,
                amount_minor=1500,
                currency="EUR",
                method="card",
                description="Renouvellement",
            )
        )
        given_back = RenewalRefund(
            subscription_id=terms.subscription_id,
            charge_key=key,
            idempotency_key=f"{key}:refund",
            method="card",
            payment_reference=paid.payment_reference,
            amount_minor=1500,
            currency="EUR",
        )
        refund_id = await acts.refund(given_back)
        assert await acts.refund(given_back) == refund_id and refund_id.startswith("re_")
    async with db() as session:
        payments = (await session.execute(select(Payment).where(Payment.org_id == org_id))).scalars().all()
        assert [(p.status, p.stripe_payment_intent_id) for p in payments] == [("refunded", paid.payment_reference)]
        refunds = (await session.execute(select(Refund).where(Refund.org_id == org_id))).scalars().all()
        assert [(r.amount_minor, r.stripe_refund_id) for r in refunds] == [(1500, refund_id)]
        rows = (await session.execute(select(Transaction).where(Transaction.org_id == org_id))).scalars().all()
        assert sorted(t.retail_minor for t in rows) == [-1500, 1500]
        assert (await session.execute(select(Invoice).where(Invoice.org_id == org_id))).first() is None


async def test_notices_are_queued_once_and_states_change(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, line_id = await tenant_with_line(db, wallet_minor=None)
    acts = activities(db)
    wf_id = subscription_workflow_id(org_id, line_id)
    terms = await acts.load(LoadSubscription(org_id=org_id, line_id=line_id, workflow_id=wf_id, today=date(2027, 2, 1)))
    assert terms.payment_method == "account"  # no wallet, no saved card
    notice = SubscriptionNotice(
        subscription_id=terms.subscription_id,
        reference=f"{wf_id}:period-0:reminder-10",
        kind="reminder",
        subject="Votre solde expire dans 10 jours",
        body="Il vous reste 10 jours et votre solde va expirer.",
    )
    await acts.notify(notice)
    await acts.notify(notice)
    await acts.change(
        SubscriptionChange(
            subscription_id=terms.subscription_id, status="suspended", dunning_stage="suspension", auto_renew_mode="off"
        )
    )
    async with db() as session:
        mails = (
            await session.execute(select(Notification).where(Notification.reference == notice.reference))
        ).scalars()
        assert [m.recipient for m in mails] == ["compta@transports-martin.fr"]
        subscription = await session.get(Subscription, terms.subscription_id)
        assert subscription is not None
        assert (subscription.status, subscription.dunning_stage, subscription.auto_renew_mode) == (
            "suspended",
            "suspension",
            "off",
        )


async def test_plans_of_another_tenant_and_paygo_lines_are_refused(db: async_sessionmaker[AsyncSession]) -> None:
    org_id, line_id = await tenant_with_line(db)
    other_org, other_line = await tenant_with_line(db)
    acts = activities(db)
    terms = await acts.load(
        LoadSubscription(
            org_id=org_id,
            line_id=line_id,
            workflow_id=subscription_workflow_id(org_id, line_id),
            today=date(2027, 2, 1),
        )
    )
    async with db() as session:
        other = await session.get(Line, other_line)
        assert other is not None and other.plan_id is not None
        other_plan = other.plan_id
    with pytest.raises(ApplicationError) as refused:
        await acts.quote_plan(QuotePlan(subscription_id=terms.subscription_id, plan_id=other_plan))
    assert refused.value.type == "subscription.invalid_plan"
    paygo_org, paygo_line = await tenant_with_line(db, plan_type=PlanType.PAYGO)
    with pytest.raises(ApplicationError) as not_renewable:
        await acts.load(
            LoadSubscription(
                org_id=paygo_org,
                line_id=paygo_line,
                workflow_id=subscription_workflow_id(paygo_org, paygo_line),
                today=date(2027, 2, 1),
            )
        )
    assert not_renewable.value.type == "subscription.not_renewable"
    with pytest.raises(ApplicationError):  # a line of another organisation
        await acts.load(LoadSubscription(org_id=other_org, line_id=line_id, workflow_id="x", today=date(2027, 2, 1)))


# --- a pool's subscription ------------------------------------------------------------------------------

GB = 1 << 30


async def _dynamic_pool(db: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    async with db.begin() as session:
        org = Organisation(name="Acola Mobile", slug=f"pool-{uuid.uuid4().hex[:10]}")
        session.add(org)
        await session.flush()
        company = Company(org_id=org.id, name="Transports Martin", customer_reference=f"P-{uuid.uuid4().hex[:10]}")
        session.add(company)
        await session.flush()
        plan = Plan(
            org_id=org.id,
            name="Pool dynamique 2 Go par SIM",
            plan_type=PlanType.SUBSCRIPTION,
            subscription_kind=SubscriptionKind.DYNAMIC_POOL,
            price_minor=700,
            data_allowance_bytes=2 * GB,
            validity_days=30,
            carrier="Orange",
        )
        session.add(plan)
        await session.flush()
        pool = Pool(org_id=org.id, company_id=company.id, name="Camions", kind=PoolKind.DYNAMIC, plan_id=plan.id)
        session.add(pool)
        await session.flush()
        pool.ocs_account = f"pool-{pool.id}"
        for n, status in enumerate([LineStatus.ACTIVE, LineStatus.ACTIVE, LineStatus.SUSPENDED]):
            session.add(
                Line(org_id=org.id, company_id=company.id, msisdn=f"+3367000010{n}", status=status, pool_id=pool.id)
            )
        session.add(Line(org_id=org.id, company_id=company.id, msisdn="+33670000199", status=LineStatus.ACTIVE))
        wallet = Wallet(org_id=org.id, company_id=company.id, owner_type=WalletOwnerType.COMPANY, owner_id=company.id)
        session.add(wallet)
        await session.flush()
        session.add(WalletEntry(wallet_id=wallet.id, amount_minor=5000, kind="funding", reference=uuid.uuid4().hex))
        return org.id, pool.id


async def _opened_dynamic_pool(
    db: async_sessionmaker[AsyncSession],
) -> tuple[str, str, str, SubscriptionActivities, SubscriptionTerms]:
    """The dynamic pool of `_dynamic_pool`, its subscription opened on 1 March 2027."""
    org_id, pool_id = await _dynamic_pool(db)
    acts = activities(db)
    wf_id = subscription_workflow_id(org_id, pool_owner_id(pool_id))
    terms = await acts.load(
        LoadSubscription(org_id=org_id, line_id="", pool_id=pool_id, workflow_id=wf_id, today=date(2027, 3, 1))
    )
    return org_id, pool_id, wf_id, acts, terms


async def test_a_pool_subscription_opens_due_today_and_renews_for_its_active_members(
    db: async_sessionmaker[AsyncSession],
) -> None:
    org_id, pool_id = await _dynamic_pool(db)
    acts = activities(db)
    wf_id = subscription_workflow_id(org_id, pool_owner_id(pool_id))
    today = date(2027, 3, 31)
    request = LoadSubscription(org_id=org_id, line_id="", pool_id=pool_id, workflow_id=wf_id, today=today)
    terms = await acts.load(request)
    assert (await acts.load(request)).subscription_id == terms.subscription_id
    assert terms.pool_id == pool_id and terms.ocs_account == f"pool-{pool_id}" and terms.line_id == ""
    assert (terms.period, terms.payment_method, terms.auto_renew_mode) == (0, "wallet", "on")
    calendar = RenewalCalendar(anchor=terms.anchor_on, validity_days=terms.validity_days)
    assert calendar.period_end(0) <= today  # the first period is paid when the subscription opens

    quote = await acts.quote_pool(QuotePool(subscription_id=terms.subscription_id))
    assert (quote.members, quote.amount_minor, quote.data_bytes) == (2, 1400, 4 * GB)  # the suspended one not

    key = charge_key(wf_id, 1)
    charge = RenewalCharge(
        subscription_id=terms.subscription_id,
        period=1,
        idempotency_key=key,
        amount_minor=quote.amount_minor,
        currency="EUR",
        method=terms.payment_method,
        description="Renouvellement — 2 SIM",
    )
    paid = await acts.charge(charge)
    assert await acts.charge(charge) == paid
    renewal = RecordRenewal(
        subscription_id=terms.subscription_id,
        period=1,
        plan_id=terms.plan_id,
        next_renewal_on=calendar.period_end(1),
        transaction_reference=key,
        description="Renouvellement — 2 SIM",
        amount_minor=quote.amount_minor,
        currency="EUR",
        method=paid.method,
        payment_reference=paid.payment_reference,
    )
    await acts.record_renewal(renewal)
    await acts.record_renewal(renewal)
    async with db() as session:
        debits = (await session.execute(select(WalletEntry).where(WalletEntry.reference == key))).scalars().all()
        transactions = (await session.execute(select(Transaction).where(Transaction.reference == key))).scalars()
        subscription = await session.get(Subscription, terms.subscription_id)
    assert [d.amount_minor for d in debits] == [-1400]
    assert [(t.retail_minor, t.line_id) for t in transactions] == [(1400, None)]
    assert subscription is not None and subscription.pool_id == pool_id and subscription.period == 1


async def test_nothing_is_charged_for_a_dynamic_pool_without_active_members(
    db: async_sessionmaker[AsyncSession],
) -> None:
    _org_id, pool_id, wf_id, acts, terms = await _opened_dynamic_pool(db)
    async with db.begin() as session:
        for line in (await session.execute(select(Line).where(Line.pool_id == pool_id))).scalars():
            line.status = LineStatus.SUSPENDED
    quote = await acts.quote_pool(QuotePool(subscription_id=terms.subscription_id))
    assert (quote.members, quote.amount_minor, quote.data_bytes) == (0, 0, 0)
    charge = RenewalCharge(
        subscription_id=terms.subscription_id,
        period=1,
        idempotency_key=charge_key(wf_id, 1),
        amount_minor=0,
        currency="EUR",
        method="wallet",
        description="Renouvellement — 0 SIM",
    )
    assert (await acts.charge(charge)).payment_reference == "none:nothing-due"
    async with db() as session:
        debits = await session.execute(select(WalletEntry).where(WalletEntry.reference == charge.idempotency_key))
    assert debits.scalar_one_or_none() is None


async def test_pool_members_lists_the_pools_lines_by_status(db: async_sessionmaker[AsyncSession]) -> None:
    """The lines a pool's dunning suspends (active), resumes (suspended) and terminates: its own only."""
    _org_id, pool_id, _wf_id, acts, terms = await _opened_dynamic_pool(db)
    async with db() as session:
        lines = (await session.execute(select(Line).where(Line.pool_id == pool_id).order_by(Line.id))).scalars().all()
    by_status = {s: sorted(line.id for line in lines if line.status == s) for s in ("active", "suspended")}

    everyone = await acts.pool_members(PoolMembersQuery(subscription_id=terms.subscription_id))
    assert [m.line_id for m in everyone.members] == [line.id for line in lines]  # not the line outside the pool
    assert {m.company_id for m in everyone.members} == {terms.company_id}
    active = await acts.pool_members(PoolMembersQuery(subscription_id=terms.subscription_id, statuses=["active"]))
    assert [m.line_id for m in active.members] == by_status["active"] and len(active.members) == 2
    both = await acts.pool_members(
        PoolMembersQuery(subscription_id=terms.subscription_id, statuses=["active", "suspended"])
    )
    assert sorted(m.line_id for m in both.members) == sorted(by_status["active"] + by_status["suspended"])
    assert {m.status for m in both.members} == {"active", "suspended"}


async def test_pool_members_changed_by_an_operation_are_those_whose_latest_completed_change_it_is(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """What a restarted pool resumes: the members its dunning suspended, not those staff changed since."""
    org_id, pool_id, _wf_id, acts, terms = await _opened_dynamic_pool(db)
    ours = f"suspend-subscription-{pool_owner_id(pool_id)}-period-1"
    at = datetime(2027, 3, 10, 8, tzinfo=UTC)
    async with db.begin() as session:
        lines = (await session.execute(select(Line).where(Line.pool_id == pool_id).order_by(Line.id))).scalars().all()
        ours_only, changed_since, failed_ours = lines[0], lines[1], lines[2]
        for line in lines:
            line.status = LineStatus.SUSPENDED
        changes = [
            (ours_only, ours, DeploymentStatus.COMPLETED, 0),
            (changed_since, ours, DeploymentStatus.COMPLETED, 0),
            (changed_since, "resume-portal-1", DeploymentStatus.COMPLETED, 1),
            (changed_since, "suspend-portal-2", DeploymentStatus.COMPLETED, 2),
            (failed_ours, "suspend-portal-3", DeploymentStatus.COMPLETED, 0),
            (failed_ours, ours, DeploymentStatus.FAILED, 1),
        ]
        for line, operation, status, minutes in changes:
            deployment = Deployment(
                org_id=org_id,
                company_id=line.company_id,
                kind=DeploymentKind.MODIFY_LINE,
                status=status,
                workflow_id=f"line-op/{org_id}/{line.id}/{operation}",
                created_by="test",
                updated_at=at + timedelta(minutes=minutes),
            )
            session.add(deployment)
            await session.flush()
            session.add(DeploymentItem(deployment_id=deployment.id, line_id=line.id))

    found = await acts.pool_members(
        PoolMembersQuery(subscription_id=terms.subscription_id, statuses=["suspended"], changed_by_operation=ours)
    )
    assert [m.line_id for m in found.members] == [ours_only.id]
    other_period = ours.replace("period-1", "period-2")
    none = await acts.pool_members(
        PoolMembersQuery(
            subscription_id=terms.subscription_id, statuses=["suspended"], changed_by_operation=other_period
        )
    )
    assert none.members == []
