"""The side effects of the subscription workflow: its row (opened on first load), the renewal charge by card
(off-session), wallet or on account (CFAST), its refund, the renewal's record (transaction, expiry) and the
customer's notices (outbox mail).

Every write is keyed: the charge by the workflow's key (sent to Stripe, the wallet entry's and the CFAST
article's reference), the transaction by the period's charge key, the mail by the notice's reference.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from activities._errors import external_call, translates_errors
from activities.payments import saved_card
from domain.enums import (
    AutoRenewMode,
    BusinessStatus,
    DeploymentKind,
    DeploymentStatus,
    DunningStage,
    InvoiceStatus,
    LineStatus,
    PaymentMethod,
    PaymentStatus,
    PlanType,
    SubscriptionKind,
    SubscriptionStatus,
    WalletOwnerType,
)
from domain.errors import DomainError, ErrorCode
from domain.models import (
    Company,
    Deployment,
    DeploymentItem,
    DunningPolicy,
    EndUser,
    Line,
    Notification,
    Organisation,
    Plan,
    Pool,
    SimCard,
    Subscription,
    Wallet,
    WalletEntry,
    utcnow,
)
from domain.money import Money
from domain.pools import pool_owner_id, pool_renewal
from domain.renewal_calendar import RenewalCalendar, add_months, is_monthly
from domain.security import MsisdnIndex
from domain.services.billing import (
    BILLED_BY_CFAST,
    BILLED_BY_RECEIPT,
    issue_invoice,
    record_payment,
    record_refund,
    record_transaction,
)
from domain.services.wallets import balance_of
from domain.subscription_contracts import (
    DunningDays,
    LineSubscriptionStarted,
    LoadSubscription,
    PlanQuote,
    PoolMember,
    PoolMembers,
    PoolMembersQuery,
    PoolQuote,
    QuotePlan,
    QuotePool,
    ReconcileBatch,
    ReconcileBatchResult,
    ReconcileOrphans,
    ReconcileResult,
    ReconcileScan,
    RecordRenewal,
    RenewalCharge,
    RenewalPaid,
    RenewalRefund,
    StartLineSubscription,
    SubscriptionChange,
    SubscriptionInput,
    SubscriptionNotice,
    SubscriptionTerms,
    changed_by,
    subscription_workflow_id,
)
from integrations.cfast import CfastClient
from integrations.errors import RejectedError
from integrations.stripe_gateway import PaymentDeclinedError, StripeGateway
from workflows import activity_names as names
from workflows._search import initial_attributes

RENEWING_LINE_STATUSES = (LineStatus.ACTIVE, LineStatus.SUSPENDED)
ENDED_LINE_STATUSES = (LineStatus.TERMINATED, LineStatus.OBSOLETE)
# Pools renew at pool level (a later subscription owned by the pool), never line by line.
POOL_KINDS = (SubscriptionKind.STATIC_POOL, SubscriptionKind.DYNAMIC_POOL)

RENEWAL_ARTICLE_CODE = "RENOUVELLEMENT"
RECONCILE_KINDS = ("lines", "pools", "ended")
RUNNING_SUBSCRIPTIONS = "WorkflowType = 'SubscriptionWorkflow' AND ExecutionStatus = 'Running'"
POOL_OWNER_PREFIX = pool_owner_id("")


def renews(line: Line, plan: Plan) -> bool:
    """The lines that get a subscription workflow (at activation, from the reconciler, the API): active or
    suspended, on a plan that renews line by line (not PAYGO, not a pool plan), outside any pool (a pool renews
    for its members)."""
    return (
        line.status in RENEWING_LINE_STATUSES
        and line.pool_id is None
        and plan.plan_type != PlanType.PAYGO
        and plan.subscription_kind not in POOL_KINDS
    )


def refused(message: str, code: ErrorCode) -> DomainError:
    return DomainError(None, message, code=code)


async def payer_wallet(session: AsyncSession, subscription: Subscription, *, lock: bool) -> Wallet | None:
    """The end user's enabled wallet if any, else the company's."""
    owners = [(WalletOwnerType.END_USER, subscription.end_user_id), (WalletOwnerType.COMPANY, subscription.company_id)]
    for owner_type, owner_id in owners:
        if owner_id is None:
            continue
        query = select(Wallet).where(Wallet.owner_type == owner_type, Wallet.owner_id == owner_id)
        wallet = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
        if wallet is not None and wallet.enabled:
            return wallet
    return None


async def default_payment_method(session: AsyncSession, plan: Plan, subscription: Subscription) -> PaymentMethod:
    """A subscription plan is billed on account (CFAST); a prepaid one pays by wallet when the payer has one
    enabled, else by the saved card, else on account."""
    if plan.plan_type == PlanType.SUBSCRIPTION:
        return PaymentMethod.ACCOUNT
    if await payer_wallet(session, subscription, lock=False) is not None:
        return PaymentMethod.WALLET
    if await saved_card(session, subscription.end_user_id, subscription.company_id) is not None:
        return PaymentMethod.CARD
    return PaymentMethod.ACCOUNT


@translates_errors
class SubscriptionActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        cfast: CfastClient,
        msisdn_index: MsisdnIndex | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._gateway = gateway
        self._cfast = cfast
        self._msisdn_index = msisdn_index

    async def _subscription(self, session: AsyncSession, subscription_id: str) -> Subscription:
        found = await session.get(Subscription, subscription_id)
        if found is None:
            raise refused(f"abonnement {subscription_id} introuvable", ErrorCode.SUBSCRIPTION_NOT_FOUND)
        return found

    @activity.defn(name=names.SUBSCRIPTION_LOAD)
    async def load(self, data: LoadSubscription) -> SubscriptionTerms:
        if data.pool_id:
            return await self._load_pool(data)
        async with self._sessionmaker.begin() as session:
            line = await session.get(Line, data.line_id)
            if line is None or line.org_id != data.org_id:
                raise refused(f"ligne {data.line_id} introuvable", ErrorCode.SUBSCRIPTION_LINE_NOT_FOUND)
            query = select(Subscription).where(Subscription.line_id == line.id)
            subscription = (await session.execute(query)).scalar_one_or_none()
            if subscription is None:
                subscription = await self._open(session, line, data)
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None  # a foreign key
            dunning = await _dunning_days(session, subscription.org_id)
            return SubscriptionTerms(
                subscription_id=subscription.id,
                org_id=subscription.org_id,
                company_id=subscription.company_id,
                line_id=line.id,
                line_status=line.status.value,
                ocs_account=line.ocs_account,
                plan_id=plan.id,
                plan_name=plan.name,
                plan_type=plan.plan_type.value,
                next_plan_id=subscription.next_plan_id,
                price_minor=plan.price_minor,
                currency=plan.currency,
                data_bytes=plan.data_allowance_bytes,
                anchor_on=subscription.anchor_on,
                validity_days=subscription.validity_days,
                period=subscription.period,
                auto_renew_mode=subscription.auto_renew_mode.value,
                payment_method=subscription.payment_method.value,
                status=subscription.status.value,
                dunning_stage=subscription.dunning_stage.value if subscription.dunning_stage else None,
                dunning=dunning,
            )

    async def _load_pool(self, data: LoadSubscription) -> SubscriptionTerms:
        """A pool's subscription: its plan's price and data are per pool (static) or per member (dynamic);
        the charge and the grant of a renewal come from `quote_pool` at renewal time."""
        async with self._sessionmaker.begin() as session:
            pool = await session.get(Pool, data.pool_id)
            if pool is None or pool.org_id != data.org_id:
                raise refused(f"pool {data.pool_id} introuvable", ErrorCode.SUBSCRIPTION_NOT_FOUND)
            query = select(Subscription).where(Subscription.pool_id == pool.id)
            subscription = (await session.execute(query)).scalar_one_or_none()
            if subscription is None:
                subscription = await self._open_pool(session, pool, data)
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None  # a foreign key
            return SubscriptionTerms(
                subscription_id=subscription.id,
                org_id=subscription.org_id,
                company_id=subscription.company_id,
                line_id="",
                line_status=LineStatus.ACTIVE.value,
                ocs_account=pool.ocs_account,
                plan_id=plan.id,
                plan_name=plan.name,
                plan_type=plan.plan_type.value,
                next_plan_id=subscription.next_plan_id,
                price_minor=plan.price_minor,
                currency=plan.currency,
                data_bytes=plan.data_allowance_bytes,
                anchor_on=subscription.anchor_on,
                validity_days=subscription.validity_days,
                period=subscription.period,
                auto_renew_mode=subscription.auto_renew_mode.value,
                payment_method=subscription.payment_method.value,
                status=subscription.status.value,
                dunning_stage=subscription.dunning_stage.value if subscription.dunning_stage else None,
                dunning=await _dunning_days(session, subscription.org_id),
                pool_id=pool.id,
            )

    async def _open_pool(self, session: AsyncSession, pool: Pool, data: LoadSubscription) -> Subscription:
        """A pool's first period is paid when its subscription opens: period 0 is the one ending today, so
        the workflow renews (charges and grants period 1) at once, and automatically after that."""
        plan = await session.get(Plan, pool.plan_id) if pool.plan_id else None
        if plan is None:
            raise refused("le pool n'a pas de forfait", ErrorCode.SUBSCRIPTION_NOT_RENEWABLE)
        anchor = pool_anchor(data.today, plan.validity_days)
        subscription = Subscription(
            org_id=pool.org_id,
            company_id=pool.company_id,
            pool_id=pool.id,
            plan_id=plan.id,
            anchor_on=anchor,
            validity_days=plan.validity_days,
            period=0,
            next_renewal_on=RenewalCalendar(anchor=anchor, validity_days=plan.validity_days).period_end(0),
            auto_renew_mode=AutoRenewMode.ON,
            status=SubscriptionStatus.ACTIVE,
            workflow_id=data.workflow_id,
        )
        subscription.payment_method = await pool_payment_method(session, subscription)
        session.add(subscription)
        await session.flush()
        return subscription

    @activity.defn(name=names.SUBSCRIPTION_QUOTE_POOL)
    async def quote_pool(self, data: QuotePool) -> PoolQuote:
        """The pool's renewal as it stands now: the members active at renewal time are the ones counted."""
        async with self._sessionmaker() as session:
            subscription = await self._subscription(session, data.subscription_id)
            pool = await session.get(Pool, subscription.pool_id) if subscription.pool_id else None
            if pool is None:
                raise refused("abonnement sans pool", ErrorCode.SUBSCRIPTION_NOT_FOUND)
            plan_id = subscription.next_plan_id or subscription.plan_id
            plan = await session.get(Plan, plan_id)
            assert plan is not None  # a foreign key
            members = await active_members(session, pool.id)
        renewal = pool_renewal(
            pool.kind, price_minor=plan.price_minor, data_bytes=plan.data_allowance_bytes, members=members
        )
        return PoolQuote(members=members, amount_minor=renewal.amount_minor, data_bytes=renewal.data_bytes)

    @activity.defn(name=names.SUBSCRIPTION_POOL_MEMBERS)
    async def pool_members(self, data: PoolMembersQuery) -> PoolMembers:
        """The member lines of a pool's subscription (those in `statuses`), in a stable order: the lines its
        dunning suspends, resumes or terminates."""
        async with self._sessionmaker() as session:
            subscription = await self._subscription(session, data.subscription_id)
            if subscription.pool_id is None:
                raise refused("abonnement sans pool", ErrorCode.SUBSCRIPTION_NOT_FOUND)
            query = select(Line.id, Line.company_id, Line.status).where(Line.pool_id == subscription.pool_id)
            if data.statuses:
                query = query.where(Line.status.in_([LineStatus(s) for s in data.statuses]))
            rows = (await session.execute(query.order_by(Line.id))).all()
            if data.changed_by_operation:
                changed = await _last_completed_changes(session, [line_id for line_id, _, _ in rows])
                rows = [row for row in rows if changed_by(changed.get(row[0], ""), data.changed_by_operation)]
        return PoolMembers(
            members=[PoolMember(line_id=i, company_id=c, status=LineStatus(st).value) for i, c, st in rows]
        )

    async def _open(self, session: AsyncSession, line: Line, data: LoadSubscription) -> Subscription:
        """The subscription of a line on a renewing plan, anchored on the day its service started (the
        activation's expiry minus the validity), its first renewal on the calendar."""
        plan = await session.get(Plan, line.plan_id) if line.plan_id else None
        if plan is None or plan.plan_type == PlanType.PAYGO:
            raise refused("la ligne n'a pas de forfait renouvelable", ErrorCode.SUBSCRIPTION_NOT_RENEWABLE)
        anchor = line.next_renewal_on - timedelta(days=plan.validity_days) if line.next_renewal_on else data.today
        calendar = RenewalCalendar(anchor=anchor, validity_days=plan.validity_days)
        subscription = Subscription(
            org_id=line.org_id,
            company_id=line.company_id,
            line_id=line.id,
            end_user_id=line.end_user_id,
            plan_id=plan.id,
            anchor_on=anchor,
            validity_days=plan.validity_days,
            period=0,
            next_renewal_on=calendar.period_end(0),
            auto_renew_mode=plan.auto_renew_mode,
            status=SubscriptionStatus.ACTIVE,
            workflow_id=data.workflow_id,
        )
        subscription.payment_method = await default_payment_method(session, plan, subscription)
        session.add(subscription)
        line.next_renewal_on = subscription.next_renewal_on
        await session.flush()
        return subscription

    @activity.defn(name=names.SUBSCRIPTION_QUOTE_PLAN)
    async def quote_plan(self, data: QuotePlan) -> PlanQuote:
        async with self._sessionmaker() as session:
            subscription = await self._subscription(session, data.subscription_id)
            plan = await session.get(Plan, data.plan_id)
            current = await session.get(Plan, subscription.plan_id)
            if (
                plan is None
                or plan.org_id != subscription.org_id
                or plan.company_id not in (None, subscription.company_id)
            ):
                raise refused(f"plan_id : forfait {data.plan_id} introuvable", ErrorCode.SUBSCRIPTION_INVALID_PLAN)
            if plan.plan_type == PlanType.PAYGO or (current is not None and plan.currency != current.currency):
                raise refused(
                    "plan_id : forfait non renouvelable ou d'une autre devise", ErrorCode.SUBSCRIPTION_INVALID_PLAN
                )
            return PlanQuote(
                plan_id=plan.id,
                plan_name=plan.name,
                price_minor=plan.price_minor,
                currency=plan.currency,
                prorated=plan.prorated,
                data_bytes=plan.data_allowance_bytes,
            )

    # --- money -----------------------------------------------------------------------------------

    @activity.defn(name=names.SUBSCRIPTION_CHARGE)
    async def charge(self, data: RenewalCharge) -> RenewalPaid:
        if data.amount_minor == 0:  # a dynamic pool without active members: nothing to pay
            return RenewalPaid(method=data.method, payment_reference="none:nothing-due")
        if data.method == PaymentMethod.CARD:
            return await self._charge_card(data)
        if data.method == PaymentMethod.WALLET:
            return await self._debit_wallet(data)
        return await self._charge_on_account(data)

    async def _charge_card(self, data: RenewalCharge) -> RenewalPaid:
        async with self._sessionmaker() as session:
            subscription = await self._subscription(session, data.subscription_id)
            payer = await saved_card(session, subscription.end_user_id, subscription.company_id)
            org = await session.get(Organisation, subscription.org_id)
        if payer is None:
            raise refused("aucune carte enregistrée pour ce client", ErrorCode.PAYMENT_NO_SAVED_CARD)
        metadata = {"subscription_id": data.subscription_id, "period": str(data.period), "org_id": subscription.org_id}
        async with external_call():
            try:
                result = await self._gateway.charge_off_session(
                    payer.customer_id,
                    payer.payment_method_id,
                    data.amount_minor,
                    data.currency,
                    data.idempotency_key,
                    metadata,
                    account=org.stripe_account_ref if org is not None else None,
                )
            except PaymentDeclinedError as declined:
                raise refused(f"carte refusée : {declined.decline_code}", ErrorCode.PAYMENT_DECLINED) from declined
        return RenewalPaid(method=PaymentMethod.CARD.value, payment_reference=result.payment_intent_id)

    async def _debit_wallet(self, data: RenewalCharge) -> RenewalPaid:
        async with self._sessionmaker.begin() as session:
            subscription = await self._subscription(session, data.subscription_id)
            wallet = await payer_wallet(session, subscription, lock=True)
            if wallet is None:
                raise refused("aucun portefeuille actif pour ce client", ErrorCode.WALLET_NOT_FOUND)
            existing = await session.execute(select(WalletEntry).where(WalletEntry.reference == data.idempotency_key))
            entry = existing.scalar_one_or_none()
            if entry is None:
                if wallet.currency != data.currency:
                    raise refused("devise du portefeuille différente", ErrorCode.WALLET_CURRENCY_MISMATCH)
                balance = await balance_of(session, wallet.id)
                if balance - data.amount_minor < wallet.min_balance_minor:
                    raise refused(
                        f"solde insuffisant : {balance} disponible, minimum {wallet.min_balance_minor}",
                        ErrorCode.WALLET_INSUFFICIENT_FUNDS,
                    )
                entry = WalletEntry(
                    wallet_id=wallet.id,
                    amount_minor=-data.amount_minor,
                    kind="renewal_debit",
                    reference=data.idempotency_key,
                    description=data.description[:300],
                )
                session.add(entry)
                await session.flush()
            return RenewalPaid(method=PaymentMethod.WALLET.value, payment_reference=f"wallet-entry:{entry.id}")

    async def _service_id(self, subscription_id: str) -> str:
        async with self._sessionmaker() as session:
            subscription = await self._subscription(session, subscription_id)
            line = await session.get(Line, subscription.line_id) if subscription.line_id else None
        if line is None or not line.cfast_service_id:
            raise refused("ligne sans service CFAST : facturation sur compte impossible", ErrorCode.CFAST_REJECTED)
        return line.cfast_service_id

    async def _charge_on_account(self, data: RenewalCharge) -> RenewalPaid:
        service_id = await self._service_id(data.subscription_id)
        try:
            async with external_call():
                article = await self._cfast.add_one_off_article(
                    service_id,
                    article_code=RENEWAL_ARTICLE_CODE,
                    label=data.description[:100],
                    quantity=1,
                    unit_price=data.amount_minor,
                    reference=data.idempotency_key,
                    idempotency_key=data.idempotency_key,
                )
        except ApplicationError as err:
            if err.non_retryable and isinstance(err.__cause__, RejectedError):
                raise refused(f"CFAST a refusé la facturation : {err.message}", ErrorCode.CFAST_REJECTED) from err
            raise
        return RenewalPaid(method=PaymentMethod.ACCOUNT.value, payment_reference=f"cfast:{article.article_line_id}")

    @activity.defn(name=names.SUBSCRIPTION_REFUND)
    async def refund(self, data: RenewalRefund) -> str:
        """Gives a renewal's payment back by the method that paid (SPEC §8)."""
        if data.payment_reference == "none:nothing-due":
            return "none:nothing-due"
        if data.method == PaymentMethod.CARD:
            async with external_call():
                refund = await self._gateway.refund(data.payment_reference, data.amount_minor, data.idempotency_key)
            async with self._sessionmaker.begin() as session:
                subscription = await self._subscription(session, data.subscription_id)
                await record_refunded_renewal(session, subscription, data, refund.refund_id)
            return refund.refund_id
        if data.method == PaymentMethod.WALLET:
            async with self._sessionmaker.begin() as session:
                entries = select(WalletEntry).where(WalletEntry.reference.in_([data.charge_key, data.idempotency_key]))
                found = {e.reference: e for e in (await session.execute(entries)).scalars()}
                debit, credit = found.get(data.charge_key), found.get(data.idempotency_key)
                if debit is None:
                    return "none:not-charged"
                if credit is None:
                    credit = WalletEntry(
                        wallet_id=debit.wallet_id,
                        amount_minor=-debit.amount_minor,
                        kind="renewal_refund",
                        reference=data.idempotency_key,
                        description="Remboursement du renouvellement",
                    )
                    session.add(credit)
                    await session.flush()
                subscription = await self._subscription(session, data.subscription_id)
                await record_refunded_renewal(session, subscription, data, f"wallet-entry:{credit.id}")
                return f"wallet-entry:{credit.id}"
        service_id = await self._service_id(data.subscription_id)
        async with external_call():
            await self._cfast.cancel_one_off_article(
                service_id, data.payment_reference.removeprefix("cfast:"), idempotency_key=data.idempotency_key
            )
        return f"cfast-cancelled:{data.payment_reference}"

    @activity.defn(name=names.SUBSCRIPTION_RECORD_RENEWAL)
    async def record_renewal(self, data: RecordRenewal) -> None:
        async with self._sessionmaker.begin() as session:
            subscription = await self._subscription(session, data.subscription_id)
            await record_renewal_books(session, subscription, data)
            if data.period >= subscription.period:
                subscription.period = data.period
                subscription.next_renewal_on = data.next_renewal_on
                subscription.plan_id = data.plan_id
                if subscription.next_plan_id == data.plan_id:
                    subscription.next_plan_id = None
                subscription.status = SubscriptionStatus.ACTIVE
                subscription.dunning_stage = None
                subscription.dunning_since = None
                subscription.last_failure = None
                line = await session.get(Line, subscription.line_id) if subscription.line_id else None
                if line is not None:
                    line.next_renewal_on = data.next_renewal_on
                    line.plan_id = data.plan_id

    @activity.defn(name=names.SUBSCRIPTION_CHANGE)
    async def change(self, data: SubscriptionChange) -> None:
        async with self._sessionmaker.begin() as session:
            subscription = await self._subscription(session, data.subscription_id)
            if data.status is not None:
                subscription.status = SubscriptionStatus(data.status)
            if data.dunning_stage is not None:
                subscription.dunning_stage = DunningStage(data.dunning_stage)
                subscription.dunning_since = data.dunning_since or subscription.dunning_since
            if data.clear_dunning:
                subscription.dunning_stage = None
                subscription.dunning_since = None
            if data.auto_renew_mode is not None:
                subscription.auto_renew_mode = AutoRenewMode(data.auto_renew_mode)
            if data.plan_id is not None:
                subscription.plan_id = data.plan_id
                line = await session.get(Line, subscription.line_id) if subscription.line_id else None
                if line is not None:
                    line.plan_id = data.plan_id
            if data.next_plan_id is not None:
                subscription.next_plan_id = data.next_plan_id
            if data.clear_next_plan:
                subscription.next_plan_id = None
            if data.failure is not None:
                subscription.last_failure = data.failure
            if data.ended and subscription.ended_at is None:
                subscription.ended_at = utcnow()

    # --- notices ---------------------------------------------------------------------------------

    @activity.defn(name=names.SUBSCRIPTION_NOTIFY)
    async def notify(self, data: SubscriptionNotice) -> None:
        """The mail of a notice, queued once (its reference is unique) for the outbox relay."""
        async with self._sessionmaker.begin() as session:
            exists = await session.execute(select(Notification.id).where(Notification.reference == data.reference))
            if exists.scalar_one_or_none() is not None:
                return
            subscription = await self._subscription(session, data.subscription_id)
            session.add(
                Notification(
                    org_id=subscription.org_id,
                    company_id=subscription.company_id,
                    reference=data.reference,
                    recipient=await _recipient(session, subscription),
                    subject=data.subject,
                    body=data.body,
                )
            )

    # --- the start at activation ----------------------------------------------------------------

    @activity.defn(name=names.SUBSCRIPTION_START_FOR_LINE)
    async def start_for_line(self, data: StartLineSubscription) -> LineSubscriptionStarted:
        """The last step of a SIM activation: a line activated on a plan that renews gets its subscription
        workflow now, with the reconciler's start (joined if the reconciler or the API started it first)."""
        async with self._sessionmaker() as session:
            line = await session.get(Line, data.line_id)
            plan = await session.get(Plan, line.plan_id) if line is not None and line.plan_id else None
            if line is None or plan is None or not renews(line, plan):
                return LineSubscriptionStarted()
            iccid = (await session.get(SimCard, line.sim_id)).iccid if line.sim_id else None  # type: ignore[union-attr]
            start = SubscriptionInput(org_id=line.org_id, company_id=line.company_id, line_id=line.id, iccid=iccid)
            msisdn = line.msisdn
        wf_id = await start_subscription_workflow(
            activity.client(),
            activity.info().task_queue,
            start,
            msisdn_hash=self._msisdn_index.of(msisdn) if self._msisdn_index and msisdn else None,
        )
        return LineSubscriptionStarted(workflow_id=wf_id)

    # --- the daily reconciler --------------------------------------------------------------------

    @activity.defn(name=names.SUBSCRIPTION_RECONCILE)
    async def reconcile(self, data: ReconcileScan) -> ReconcileResult:
        """The whole pass in one activity (reconciler runs started before the batches): the batches one after
        the other, then the orphans."""
        started: list[str] = []
        ended: list[str] = []
        running = 0
        for kind in RECONCILE_KINDS:
            after = ""
            while True:
                batch = await self.reconcile_batch(
                    ReconcileBatch(task_queue=data.task_queue, batch_size=data.batch_size, kind=kind, after=after)
                )
                started.extend(batch.started)
                ended.extend(batch.ended)
                running += batch.running
                if batch.next_after is None:
                    break
                after = batch.next_after
        orphans = (await self.reconcile_orphans(data)).orphans
        return ReconcileResult(started=started, running=running, ended=ended, orphans=orphans)

    @activity.defn(name=names.SUBSCRIPTION_RECONCILE_BATCH)
    async def reconcile_batch(self, data: ReconcileBatch) -> ReconcileBatchResult:
        """One page of the reconciler (keyset on the row id): which of its workflows run is asked with one
        visibility query; the others are started (lines, pools) — with USE_EXISTING, so a workflow that
        visibility does not list yet is joined, never started twice — or, for terminated lines, left alone
        while those running are told their line ended."""
        if data.kind == "ended":
            return await self._end_batch(data)
        owners: list[tuple[str, SubscriptionInput, str | None]]
        if data.kind == "pools":
            pools = await self._pool_batch(data)
            owners = [(subscription_workflow_id(p.org_id, p.owner_id), p, None) for p in pools]
        else:
            lines = await self._line_batch(data)
            owners = [(subscription_workflow_id(i.org_id, i.owner_id), i, msisdn) for i, msisdn in lines]
        client = activity.client()
        running = await running_subscriptions(client, [wf_id for wf_id, _, _ in owners])
        started: list[str] = []
        for wf_id, start, msisdn in owners:
            if wf_id in running:
                continue
            await start_subscription_workflow(
                client,
                data.task_queue,
                start,
                msisdn_hash=self._msisdn_index.of(msisdn) if self._msisdn_index and msisdn else None,
            )
            started.append(wf_id)
            activity.heartbeat(len(started))
        full = len(owners) == data.batch_size
        last = (owners[-1][1].pool_id or owners[-1][1].line_id) if full else None
        return ReconcileBatchResult(started=started, running=len(running), next_after=last)

    async def _line_batch(self, data: ReconcileBatch) -> list[tuple[SubscriptionInput, str | None]]:
        async with self._sessionmaker() as session:
            renewing = await session.execute(
                select(Line, SimCard.iccid)
                .join(Plan, Line.plan_id == Plan.id)
                .outerjoin(Subscription, Subscription.line_id == Line.id)
                .outerjoin(SimCard, SimCard.id == Line.sim_id)
                .where(
                    Line.id > data.after,
                    Line.status.in_(RENEWING_LINE_STATUSES),
                    Line.pool_id.is_(None),
                    Plan.plan_type != PlanType.PAYGO,
                    or_(Plan.subscription_kind.is_(None), Plan.subscription_kind.not_in(POOL_KINDS)),
                    or_(Subscription.id.is_(None), Subscription.status != SubscriptionStatus.ENDED),
                )
                .order_by(Line.id)
                .limit(data.batch_size)
            )
            return [
                (
                    SubscriptionInput(org_id=line.org_id, company_id=line.company_id, line_id=line.id, iccid=iccid),
                    line.msisdn,
                )
                for line, iccid in renewing
            ]

    async def _pool_batch(self, data: ReconcileBatch) -> list[SubscriptionInput]:
        async with self._sessionmaker() as session:
            renewing = await session.execute(
                select(Pool.id, Pool.org_id, Pool.company_id)
                .outerjoin(Subscription, Subscription.pool_id == Pool.id)
                .where(
                    Pool.id > data.after,
                    Pool.plan_id.is_not(None),
                    or_(Subscription.id.is_(None), Subscription.status != SubscriptionStatus.ENDED),
                )
                .order_by(Pool.id)
                .limit(data.batch_size)
            )
            return [
                SubscriptionInput(org_id=org_id, company_id=company_id, pool_id=pool_id)
                for pool_id, org_id, company_id in renewing
            ]

    async def _end_batch(self, data: ReconcileBatch) -> ReconcileBatchResult:
        """Subscriptions not ended whose line is terminated: their running workflows are told to end."""
        async with self._sessionmaker() as session:
            gone = await session.execute(
                select(Subscription.id, Subscription.workflow_id)
                .join(Line, Subscription.line_id == Line.id)
                .where(
                    Subscription.id > data.after,
                    Line.status.in_(ENDED_LINE_STATUSES),
                    Subscription.status != SubscriptionStatus.ENDED,
                )
                .order_by(Subscription.id)
                .limit(data.batch_size)
            )
            rows = list(gone.all())
        client = activity.client()
        running = await running_subscriptions(client, [wf_id for _, wf_id in rows])
        ended: list[str] = []
        for _, wf_id in rows:
            if wf_id in running:
                await client.get_workflow_handle(wf_id).signal("line_ended")
                ended.append(wf_id)
                activity.heartbeat(len(ended))
        last = rows[-1][0] if len(rows) == data.batch_size else None
        return ReconcileBatchResult(ended=ended, next_after=last)

    @activity.defn(name=names.SUBSCRIPTION_RECONCILE_ORPHANS)
    async def reconcile_orphans(self, data: ReconcileScan) -> ReconcileOrphans:
        """Running subscription workflows whose line (or pool) is gone, checked a page of `batch_size` at a
        time against the database."""
        client = activity.client()
        orphans: list[str] = []
        page: list[str] = []

        async def check(ids: list[str]) -> None:
            owners = {wf_id: wf_id.rsplit("/", 1)[-1] for wf_id in ids}
            line_ids = [o for o in owners.values() if not o.startswith(POOL_OWNER_PREFIX)]
            pool_ids = [o.removeprefix(POOL_OWNER_PREFIX) for o in owners.values() if o.startswith(POOL_OWNER_PREFIX)]
            async with self._sessionmaker() as session:
                known = set((await session.execute(select(Line.id).where(Line.id.in_(line_ids)))).scalars())
                pools = (await session.execute(select(Pool.id).where(Pool.id.in_(pool_ids)))).scalars()
                known |= {pool_owner_id(pool_id) for pool_id in pools}
            orphans.extend(wf_id for wf_id, owner in owners.items() if owner not in known)
            activity.heartbeat(len(orphans))

        async for execution in client.list_workflows(RUNNING_SUBSCRIPTIONS, page_size=data.batch_size):
            page.append(execution.id)
            if len(page) >= data.batch_size:
                await check(page)
                page = []
        if page:
            await check(page)
        return ReconcileOrphans(orphans=orphans)


async def start_subscription_workflow(
    client: Client,
    task_queue: str,
    data: SubscriptionInput,
    *,
    msisdn_hash: str | None,
    start_delay: timedelta | None = None,
) -> str:
    """Starts `subscription/{org}/{line}` or joins the running one: one start for the reconciler and for
    `starters.subscriptions` (the API and the portal), so both give it the same id, policies and attributes.
    A pool's is `subscription/{org}/pool-{pool}`. `start_delay` holds its first task back (the renewal-storm
    benchmark starts them all due at one instant)."""
    wf_id = subscription_workflow_id(data.org_id, data.owner_id)
    await client.start_workflow(
        "SubscriptionWorkflow",
        data,
        id=wf_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=initial_attributes(
            org_id=data.org_id,
            company_id=data.company_id,
            iccid=data.iccid,
            msisdn_hash=msisdn_hash,
            status=BusinessStatus.STARTING,
        ),
        start_delay=start_delay,
    )
    return wf_id


def pool_anchor(today: date, validity_days: int) -> date:
    """The anchor whose period 0 ends today (a monthly plan: a month before, kept on today's day of month
    when the month before has it)."""
    if is_monthly(validity_days):
        return add_months(today, -1)
    return today - timedelta(days=validity_days)


async def record_renewal_books(session: AsyncSession, subscription: Subscription, data: RecordRenewal) -> None:
    """A paid period's transaction and payment, written once. By card or wallet simflow issues the receipt
    (an invoice paid at once, mailed with its PDF); on account CFAST bills the article and simflow issues
    nothing, as for top-ups."""
    on_account = data.method == PaymentMethod.ACCOUNT
    amount = Money(data.amount_minor, data.currency)
    plan = await session.get(Plan, data.plan_id)
    # The plan's purchase price in the proportion sold: a period, a pool's members, a prorated change.
    wholesale = (
        Money(plan.purchase_price_minor, data.currency).share(data.amount_minor, plan.price_minor)
        if plan is not None and plan.price_minor > 0
        else None
    )
    transaction = await record_transaction(
        session,
        org_id=subscription.org_id,
        company_id=subscription.company_id,
        reference=data.transaction_reference,
        description=data.description,
        retail=amount,
        wholesale=wholesale,
        line_id=subscription.line_id,
        billed_by=BILLED_BY_CFAST if on_account else BILLED_BY_RECEIPT,
    )
    if data.amount_minor == 0:  # a dynamic pool without active members: nothing paid, nothing to document
        return
    payment = await record_payment(
        session,
        org_id=subscription.org_id,
        company_id=subscription.company_id,
        reference=f"{data.transaction_reference}:payment",
        method=PaymentMethod(data.method),
        amount=amount,
        status=PaymentStatus.ON_ACCOUNT if on_account else PaymentStatus.SUCCEEDED,
        stripe_payment_intent_id=data.payment_reference if data.method == PaymentMethod.CARD else None,
    )
    if on_account or transaction.invoice_id is not None:
        return
    invoice = await issue_invoice(
        session,
        org_id=subscription.org_id,
        company_id=subscription.company_id,
        reference=f"{data.transaction_reference}:invoice",
        transactions=[transaction],
        status=InvoiceStatus.PAID,
        payment_reference=data.payment_reference,
        title=data.description,
        end_user_id=subscription.end_user_id,
    )
    payment.invoice_id = invoice.id


async def record_refunded_renewal(
    session: AsyncSession, subscription: Subscription, data: RenewalRefund, provider_reference: str
) -> None:
    """A renewal charge given back (its period not granted): the charge, its reversal and the `Refund` row,
    once each, under the refund's own key (a later attempt of the same period records its own charge)."""
    amount = Money(data.amount_minor, data.currency)
    charge = await record_transaction(
        session,
        org_id=subscription.org_id,
        company_id=subscription.company_id,
        reference=f"{data.idempotency_key}:charge",
        description="Renouvellement remboursé",
        retail=amount,
        line_id=subscription.line_id,
        billed_by=BILLED_BY_RECEIPT,
    )
    payment = await record_payment(
        session,
        org_id=subscription.org_id,
        company_id=subscription.company_id,
        reference=f"{data.idempotency_key}:payment",
        method=PaymentMethod(data.method),
        amount=amount,
        status=PaymentStatus.SUCCEEDED,
        stripe_payment_intent_id=data.payment_reference if data.method == PaymentMethod.CARD else None,
    )
    await record_refund(
        session,
        charge=charge,
        payment=payment,
        reversal_reference=f"{data.idempotency_key}:reversal",
        refund_reference=data.idempotency_key,
        description="Remboursement du renouvellement",
        provider_reference=provider_reference,
    )


async def pool_payment_method(session: AsyncSession, subscription: Subscription) -> PaymentMethod:
    """A pool has no CFAST service of its own: the company's wallet when enabled, else its saved card, else
    on account (which CFAST refuses until the pool has a service: the renewal goes to dunning)."""
    if await payer_wallet(session, subscription, lock=False) is not None:
        return PaymentMethod.WALLET
    if await saved_card(session, None, subscription.company_id) is not None:
        return PaymentMethod.CARD
    return PaymentMethod.ACCOUNT


async def active_members(session: AsyncSession, pool_id: str) -> int:
    query = select(func.count(Line.id)).where(Line.pool_id == pool_id, Line.status == LineStatus.ACTIVE)
    return int((await session.execute(query)).scalar_one())


async def _dunning_days(session: AsyncSession, org_id: str) -> DunningDays:
    policy = await session.get(DunningPolicy, org_id)
    if policy is None:
        return DunningDays()
    return DunningDays(
        retry_until_day=policy.retry_until_day,
        second_attempt_until_day=policy.second_attempt_until_day,
        suspension_until_day=policy.suspension_until_day,
    )


async def running_subscriptions(client: Client, workflow_ids: list[str]) -> set[str]:
    """Which of these subscription workflows run, in one visibility query (a workflow started a moment ago
    may be missing: its start with USE_EXISTING joins it)."""
    if not workflow_ids:
        return set()
    if any("'" in wf_id or "\\" in wf_id for wf_id in workflow_ids):
        raise ValueError("identifiant de workflow inattendu")
    listed = ", ".join(f"'{wf_id}'" for wf_id in workflow_ids)
    query = f"{RUNNING_SUBSCRIPTIONS} AND WorkflowId IN ({listed})"
    return {execution.id async for execution in client.list_workflows(query, page_size=len(workflow_ids))}


async def _recipient(session: AsyncSession, subscription: Subscription) -> str | None:
    """The end user's address, else the company's billing address (seed 000: the end user is reminded)."""
    if subscription.end_user_id:
        end_user = await session.get(EndUser, subscription.end_user_id)
        if end_user is not None:
            return end_user.email
    company = await session.get(Company, subscription.company_id)
    return company.billing_email if company is not None else None


async def _last_completed_changes(session: AsyncSession, line_ids: list[str]) -> dict[str, str]:
    """The workflow id of each line's latest completed line change (suspension, resumption, plan change)."""
    if not line_ids:
        return {}
    rows = await session.execute(
        select(DeploymentItem.line_id, Deployment.workflow_id)
        .join(Deployment, Deployment.id == DeploymentItem.deployment_id)
        .where(
            DeploymentItem.line_id.in_(line_ids),
            Deployment.kind == DeploymentKind.MODIFY_LINE,
            Deployment.status == DeploymentStatus.COMPLETED,
        )
        .order_by(Deployment.updated_at, Deployment.id)
    )
    return {line_id: workflow_id or "" for line_id, workflow_id in rows if line_id is not None}
