"""A world for top-ups: an organisation whose lines really exist in OCS, SNAIC and CFAST, a company with a
saved card in localstripe and a funded wallet, and a staff member; and for renewals: a renewing plan and the
subscriptions of its lines, due on a given day. Used by the tests, the crash drill and the benchmarks."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import (
    ArticleKind,
    AutoRenewMode,
    LineStatus,
    PaymentMethod,
    PlanType,
    SimStatus,
    StaffRole,
    SubscriptionStatus,
    WalletOwnerType,
)
from domain.identifiers import iccid_with_check_digit, msisdn_national
from domain.models import (
    CatalogueArticle,
    Company,
    EndUser,
    Line,
    Organisation,
    Plan,
    SimCard,
    StaffUser,
    Subscription,
    Wallet,
    WalletEntry,
)
from domain.renewal_calendar import RenewalCalendar
from domain.security import hash_password
from domain.subscription_contracts import subscription_workflow_id
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.cfast import CfastClient
from integrations.ocs import OcsClient
from integrations.snaic import SnaicClient
from integrations.stripe_gateway import StripeGateway

STAFF_PASSWORD = "Staff-password-2026!"
GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"


@dataclass
class World:
    settings: Settings
    org_id: str
    company_id: str
    staff_email: str
    end_user_id: str
    article_id: str
    lines: list[str] = field(default_factory=list)


# Numbers follow each other from a random start, drawn once: distinct within a process (a storm's ten
# thousand lines), and unlikely to meet those of another process writing to the same database.
_counter = iter(range(uuid.uuid4().int % 10_000_000, 100_000_000))


def _next_numbers() -> tuple[str, str, str]:
    n = next(_counter)
    iccid = iccid_with_check_digit(f"8933150{n:011d}")
    imsi = f"20815{n:010d}"
    msisdn = f"+3367{n % 10_000_000:07d}"  # 067x: metropolitan mobile numbers
    return iccid, imsi, msisdn


async def build_world(
    settings: Settings, *, card: str | None = GOOD_CARD, wallet_minor: int = 10_000, min_balance_minor: int = 0
) -> World:
    """An organisation, a company paying with `card` (or no card), a funded wallet, a staff member."""
    slug = f"topup-{uuid.uuid4().hex[:10]}"
    engine = create_engine(settings.database_url)
    stripe_customer = stripe_pm = None
    if card is not None:
        async with StripeGateway(
            settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base, 10
        ) as gateway:
            customer = await gateway.ensure_customer(f"billing@{slug}.test", slug, {"org": slug}, f"{slug}:customer")
            saved = await gateway.attach_card(customer.customer_id, card, f"{slug}:card")
            stripe_customer, stripe_pm = customer.customer_id, saved.payment_method_id
    try:
        async with create_sessionmaker(engine).begin() as session:
            org = Organisation(name=f"Org {slug}", slug=slug)
            session.add(org)
            await session.flush()
            company = Company(
                org_id=org.id,
                name=f"Entreprise {slug}",
                customer_reference=f"REF-{slug}".upper(),
                billing_email=f"billing@{slug}.test",
                stripe_customer_id=stripe_customer,
                stripe_payment_method_id=stripe_pm,
            )
            session.add(company)
            await session.flush()
            user = EndUser(org_id=org.id, company_id=company.id, email=f"user@{slug}.test", full_name="Utilisateur")
            staff = StaffUser(
                email=f"staff@{slug}.test",
                password_hash=hash_password(STAFF_PASSWORD),
                role=StaffRole.ORG_STAFF,
                org_id=org.id,
            )
            article = CatalogueArticle(
                org_id=org.id,
                code="RECHARGE_DATA_1GO",
                label="Recharge DATA 1Go",
                kind=ArticleKind.ONE_OFF_OPTION,
                sale_price_minor=50,
                purchase_price_minor=20,
                data_bytes=1_073_741_824,
                category="Voix & Data",
                carrier="Orange",
            )
            wallet = Wallet(
                org_id=org.id,
                company_id=company.id,
                owner_type=WalletOwnerType.COMPANY,
                owner_id=company.id,
                min_balance_minor=min_balance_minor,
            )
            session.add_all([user, staff, article, wallet])
            await session.flush()
            if wallet_minor:
                session.add(
                    WalletEntry(
                        wallet_id=wallet.id, amount_minor=wallet_minor, kind="top_up", reference=f"{slug}:initial"
                    )
                )
            return World(settings, org.id, company.id, staff.email, user.id, article.id)
    finally:
        await engine.dispose()


async def provision_line(world: World, *, in_snaic: bool = True, in_cfast: bool = True, record_ids: bool = True) -> str:
    """A line that exists in OCS (account), SNAIC (active line) and CFAST (service), and in our records."""
    settings = world.settings
    iccid, imsi, msisdn = _next_numbers()
    account = f"line-{uuid.uuid4().hex[:12]}"
    snaic_line_id = cfast_service_id = None
    async with OcsClient(settings.ocs_url, settings.ocs_tenant, 10) as ocs:
        await ocs.set_account(account)
    if in_snaic:
        async with SnaicClient(settings.snaic_url, 10) as snaic:
            ack = await snaic.create_line(
                iccid=iccid, msisdn=msisdn, offer_code="MOBILE_5GO", idempotency_key=f"setup:{account}:line"
            )
            await snaic.wait_for_order(ack.order_id, timeout_s=10)
            snaic_line_id = ack.line_id
    if in_cfast:
        async with CfastClient(settings.cfast_url, 10) as cfast:
            ref = f"C-{account}"
            customer = await cfast.create_customer(
                customer_name="Client test", customer_reference=ref, idempotency_key=f"setup:{account}:customer"
            )
            point = await cfast.create_billing_point(
                customer.customer_id, label="Facturation", idempotency_key=f"setup:{account}:bp"
            )
            site = await cfast.create_site(
                point.billing_point_id, label="Mobile", parc_type="mobile", idempotency_key=f"setup:{account}:site"
            )
            service = await cfast.create_service(
                site.site_id,
                service_label=msisdn_national(msisdn),
                last_name="Test",
                article_code="MOBILE_5GO",
                article_periodic_price=990,
                periodic_buy_price=400,
                start_date=date(2026, 11, 1),
                idempotency_key=f"setup:{account}:service",
            )
            cfast_service_id = service.service_id
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            line = await _record_line(
                session,
                world,
                (iccid, imsi, msisdn),
                account,
                snaic_line_id=snaic_line_id if record_ids else None,
                cfast_service_id=cfast_service_id if record_ids else None,
            )
            return line.id
    finally:
        await engine.dispose()


async def provision_lines(world: World, count: int, *, plan_id: str | None = None, concurrency: int = 32) -> list[str]:
    """`count` lines that exist in OCS (an account each) and in our records, on `plan_id`: the bulk form of
    `provision_line` for the benchmarks (no SNAIC line, no CFAST service), one engine and one OCS client."""
    numbers = [_next_numbers() for _ in range(count)]
    accounts = [f"line-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    semaphore = asyncio.Semaphore(concurrency)
    async with OcsClient(world.settings.ocs_url, world.settings.ocs_tenant, 10) as ocs:

        async def create(account: str) -> None:
            async with semaphore:
                await ocs.set_account(account)

        await asyncio.gather(*(create(account) for account in accounts))
    engine = create_engine(world.settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            lines = [
                await _record_line(session, world, n, account, plan_id=plan_id)
                for n, account in zip(numbers, accounts, strict=True)
            ]
            return [line.id for line in lines]
    finally:
        await engine.dispose()


async def _record_line(
    session: AsyncSession,
    world: World,
    numbers: tuple[str, str, str],
    account: str,
    *,
    snaic_line_id: str | None = None,
    cfast_service_id: str | None = None,
    plan_id: str | None = None,
) -> Line:
    iccid, imsi, msisdn = numbers
    sim = SimCard(
        org_id=world.org_id,
        iccid=iccid,
        imsi=imsi,
        carrier="Orange",
        status=SimStatus.ACTIVE,
        company_id=world.company_id,
    )
    session.add(sim)
    await session.flush()
    line = Line(
        org_id=world.org_id,
        company_id=world.company_id,
        sim_id=sim.id,
        msisdn=msisdn,
        status=LineStatus.ACTIVE,
        ocs_account=account,
        snaic_line_id=snaic_line_id,
        cfast_service_id=cfast_service_id,
        plan_id=plan_id,
    )
    session.add(line)
    await session.flush()
    world.lines.append(line.id)
    return line


async def add_renewing_plan(
    world: World, *, price_minor: int = 1500, data_bytes: int = 5 << 30, validity_days: int = 30
) -> str:
    """A prepaid plan of the organisation that renews automatically."""
    engine = create_engine(world.settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            plan = Plan(
                org_id=world.org_id,
                name="Forfait 5 Go",
                plan_type=PlanType.PREPAID,
                price_minor=price_minor,
                data_allowance_bytes=data_bytes,
                validity_days=validity_days,
                carrier="Orange",
                auto_renew_mode=AutoRenewMode.ON,
            )
            session.add(plan)
            await session.flush()
            return plan.id
    finally:
        await engine.dispose()


def anchor_due_on(due_on: date, validity_days: int) -> date:
    """The latest anchor whose first period ends on `due_on` or, where the calendar skips that day (a
    month end), just before it."""
    for days in range(validity_days - 3, validity_days + 4):
        anchor = due_on - timedelta(days=days)
        if RenewalCalendar(anchor=anchor, validity_days=validity_days).period_end(0) <= due_on:
            return anchor
    return due_on - timedelta(days=validity_days + 4)


async def subscribe_lines(
    world: World, line_ids: list[str], plan_id: str, methods: list[PaymentMethod], *, due_on: date
) -> None:
    """The subscription rows of `line_ids` on `plan_id` (period 0, auto-renew on), their first renewal due on
    `due_on` or just before; the payment methods taken in turn from `methods`. The workflows are not started."""
    engine = create_engine(world.settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            plan = await session.get_one(Plan, plan_id)
            anchor = anchor_due_on(due_on, plan.validity_days)
            renews_on = RenewalCalendar(anchor=anchor, validity_days=plan.validity_days).period_end(0)
            for n, line_id in enumerate(line_ids):
                session.add(
                    Subscription(
                        org_id=world.org_id,
                        company_id=world.company_id,
                        line_id=line_id,
                        plan_id=plan_id,
                        anchor_on=anchor,
                        validity_days=plan.validity_days,
                        period=0,
                        next_renewal_on=renews_on,
                        auto_renew_mode=AutoRenewMode.ON,
                        payment_method=methods[n % len(methods)],
                        status=SubscriptionStatus.ACTIVE,
                        workflow_id=subscription_workflow_id(world.org_id, line_id),
                    )
                )
                line = await session.get_one(Line, line_id)
                line.plan_id, line.next_renewal_on = plan_id, renews_on
    finally:
        await engine.dispose()
