"""Database side of top-ups: line ids (fetched on the fly), status, receipt, notification.

Every write is idempotent: receipts and notifications are unique by reference, status updates are
plain overwrites of the workflow's current view.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities._errors import external_call, translates_errors
from activities.records import insert_update_record, write_audit_row
from domain.authz import Action, TenantChain
from domain.contracts import (
    LineTargets,
    ResolveLineTargets,
    SettledTopUps,
    SettleUnstartedTopUps,
    TopUpNotice,
    TopUpReceiptRecord,
    TopUpStatusUpdate,
    TopUpStepWrites,
)
from domain.enums import DeploymentStatus, InvoiceStatus, PaymentMethod, TopUpPaymentStatus, TopUpStatus
from domain.errors import NotFound
from domain.identifiers import msisdn_national
from domain.models import (
    CatalogueArticle,
    Company,
    Deployment,
    EndUser,
    Line,
    Notification,
    Payment,
    TopUp,
    Transaction,
)
from domain.money import Money
from domain.services.billing import (
    BILLED_BY_CFAST,
    BILLED_BY_RECEIPT,
    issue_invoice,
    record_payment,
    record_refund,
    record_transaction,
)
from domain.services.lines import topup_refusal
from domain.services.tenancy import ensure_in_tenant
from integrations.cfast import CfastClient
from integrations.snaic import SnaicClient
from workflows import activity_names as names

DEFAULT_TOPUP_VALIDITY = timedelta(days=30)
NOT_STARTED = "recharge jamais démarrée (interruption du service) : aucun paiement effectué"


async def ensure_topup_charge(session: AsyncSession, topup: TopUp) -> tuple[Payment, Transaction]:
    """The payment and the charge transaction of a top-up whose money moved, written once (the references
    are the workflow's). On account, CFAST bills the article: the transaction is `billed_by=cfast` and
    simflow issues no document for it; by card or wallet, the receipt invoice at completion carries it."""
    prefix = topup.workflow_id
    article = await session.get(CatalogueArticle, topup.article_id)
    on_account = topup.payment_method is PaymentMethod.ACCOUNT
    transaction = await record_transaction(
        session,
        org_id=topup.org_id,
        company_id=topup.company_id,
        line_id=topup.line_id,
        reference=f"{prefix}:transaction",
        description=f"Recharge DATA {topup.quantity} Go",
        retail=Money(topup.amount_minor, topup.currency),
        wholesale=Money((article.purchase_price_minor if article else 0) * topup.quantity, topup.currency),
        billed_by=BILLED_BY_CFAST if on_account else BILLED_BY_RECEIPT,
    )
    payment = await record_payment(
        session,
        org_id=topup.org_id,
        company_id=topup.company_id,
        reference=f"{prefix}:payment",
        method=topup.payment_method,
        amount=Money(topup.amount_minor, topup.currency),
        status=TopUpPaymentStatus.ON_ACCOUNT if on_account else TopUpPaymentStatus.SUCCEEDED,
        stripe_payment_intent_id=(topup.payment_reference if topup.payment_method is PaymentMethod.CARD else None),
    )
    return payment, transaction


async def record_topup_refund(session: AsyncSession, topup: TopUp) -> None:
    """A refunded top-up: its reversal (negative; on a credit note when the charge was already invoiced) and
    its `Refund` row, once. A refund that found nothing charged writes nothing."""
    if (topup.refund_reference or "").startswith("none:"):
        return
    prefix = topup.workflow_id
    payment, charge = await ensure_topup_charge(session, topup)
    await record_refund(
        session,
        charge=charge,
        payment=payment,
        reversal_reference=f"{prefix}:transaction-reversal",
        refund_reference=f"{prefix}:refund",
        description=f"Remboursement recharge DATA {topup.quantity} Go",
        provider_reference=topup.refund_reference,
    )


@translates_errors
class TopUpActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], snaic: SnaicClient, cfast: CfastClient) -> None:
        self._sessionmaker = sessionmaker
        self._snaic = snaic
        self._cfast = cfast

    @activity.defn(name=names.TOPUP_RESOLVE_LINE_TARGETS)
    async def resolve_line_targets(self, data: ResolveLineTargets) -> LineTargets:
        async with self._sessionmaker() as session:
            try:
                line: Line = await ensure_in_tenant(
                    session, "line_id", data.line_id, TenantChain(data.org_id), Action.READ
                )
            except NotFound as exc:
                raise ApplicationError(str(exc), type="line.not_found", non_retryable=True) from exc
        refusal = topup_refusal(line)  # checked again here: a termination may have been scheduled since
        if refusal is not None:
            raise ApplicationError(refusal, type="line.not_rechargeable", non_retryable=True)
        if not line.ocs_account:
            raise ApplicationError("la ligne n'a pas de compte OCS", type="line.no_ocs_account", non_retryable=True)
        fetched: dict[str, str] = {}
        snaic_line_id = line.snaic_line_id
        cfast_service_id = line.cfast_service_id
        async with external_call():
            if not snaic_line_id:
                found = await self._snaic.find_line_by_msisdn(line.msisdn)
                if found is None:
                    raise ApplicationError("ligne inconnue de SNAIC", type="snaic.line_unknown", non_retryable=True)
                snaic_line_id = fetched["snaic_line_id"] = found.line_id
            if not cfast_service_id:
                service = await self._cfast.find_service_by_label(msisdn_national(line.msisdn))
                if service is None:
                    service = await self._cfast.find_service_by_label(line.msisdn)
                if service is None:
                    raise ApplicationError("ligne inconnue de CFAST", type="cfast.service_unknown", non_retryable=True)
                cfast_service_id = fetched["cfast_service_id"] = service.service_id
        if fetched:
            async with self._sessionmaker.begin() as session:
                await session.execute(update(Line).where(Line.id == line.id).values(**fetched))
        if line.next_renewal_on is not None:
            expires = datetime.combine(line.next_renewal_on, time(), tzinfo=UTC)
        else:
            expires = datetime.now(UTC).replace(microsecond=0) + DEFAULT_TOPUP_VALIDITY
        return LineTargets(
            ocs_account=line.ocs_account,
            snaic_line_id=snaic_line_id,
            cfast_service_id=cfast_service_id,
            data_expires_at_iso=expires.isoformat(),
            fetched=fetched,
        )

    @activity.defn(name=names.TOPUP_SET_STATUS)
    async def set_status(self, data: TopUpStatusUpdate) -> None:
        async with self._sessionmaker.begin() as session:
            await apply_status(session, data)

    @activity.defn(name=names.TOPUP_SETTLE_UNSTARTED)
    async def settle_unstarted(self, data: SettleUnstartedTopUps) -> SettledTopUps:
        """Closes the intents whose workflow never started (the API stopped between writing the intent and
        starting the workflow): without a workflow nothing was charged, so they end `failed`. An intent
        whose workflow exists is left to it."""
        cutoff = datetime.now(UTC) - timedelta(seconds=data.older_than_s)
        async with self._sessionmaker() as session:
            stale = (
                await session.execute(
                    select(TopUp.id, TopUp.workflow_id)
                    .where(TopUp.status == TopUpStatus.PENDING, TopUp.created_at < cutoff)
                    .order_by(TopUp.created_at)
                    .limit(data.limit)
                )
            ).all()
        client = activity.client()
        settled: list[str] = []
        for topup_id, workflow_id in stale:
            activity.heartbeat(topup_id)
            try:
                await client.get_workflow_handle(workflow_id).describe()
                continue  # the workflow runs (or ran): it owns the outcome
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
            async with self._sessionmaker.begin() as session:
                changed = await session.execute(
                    update(TopUp)
                    .where(TopUp.id == topup_id, TopUp.status == TopUpStatus.PENDING)
                    .values(
                        status=TopUpStatus.FAILED,
                        payment_status=TopUpPaymentStatus.NOT_STARTED,
                        failure_reason=NOT_STARTED,
                    )
                    .returning(TopUp.deployment_id)
                )
                row = changed.first()
                if row is None:
                    continue
                if row.deployment_id:
                    await session.execute(
                        update(Deployment)
                        .where(Deployment.id == row.deployment_id)
                        .values(status=DeploymentStatus.FAILED)
                    )
            settled.append(topup_id)
        return SettledTopUps(topup_ids=settled)

    @activity.defn(name=names.TOPUP_RECORD_RECEIPT)
    async def record_receipt(self, data: TopUpReceiptRecord) -> None:
        async with self._sessionmaker.begin() as session:
            await issue_receipt(session, data)

    @activity.defn(name=names.TOPUP_NOTIFY)
    async def notify(self, data: TopUpNotice) -> None:
        async with self._sessionmaker.begin() as session:
            await add_notice(session, data)

    @activity.defn(name=names.TOPUP_RECORD_STEP)
    async def record_step(self, data: TopUpStepWrites) -> None:
        """One saga step's own writes in one transaction (one local activity instead of up to five)."""
        async with self._sessionmaker.begin() as session:
            for entry in data.records:
                await insert_update_record(session, entry)
            if data.status is not None:
                await apply_status(session, data.status)
            if data.receipt is not None:
                await issue_receipt(session, data.receipt)
            for audit in data.audits:
                await write_audit_row(session, audit)
            for notice in data.notices:
                try:  # a notification never undoes the step it reports
                    async with session.begin_nested():
                        await add_notice(session, notice)
                except SQLAlchemyError as exc:
                    activity.logger.warning("notification %s not written: %s", notice.reference, exc)


async def _topup(session: AsyncSession, topup_id: str) -> TopUp:
    topup = await session.get(TopUp, topup_id)
    if topup is None:
        raise ApplicationError(f"top-up {topup_id} not found", type="topup.not_found", non_retryable=True)
    return topup


async def apply_status(session: AsyncSession, data: TopUpStatusUpdate) -> None:
    """The workflow's current view of the top-up, and the money rows its payment status implies."""
    topup = await _topup(session, data.topup_id)
    for field, value in data.model_dump(exclude={"topup_id", "deployment_status"}, exclude_none=True).items():
        setattr(topup, field, value)
    # Every money movement is a transaction: the charge when the money moves, its reversal on refund.
    if data.payment_status in (TopUpPaymentStatus.SUCCEEDED, TopUpPaymentStatus.ON_ACCOUNT):
        await ensure_topup_charge(session, topup)
    elif data.payment_status is TopUpPaymentStatus.REFUNDED:
        await record_topup_refund(session, topup)
    if data.deployment_status and topup.deployment_id:
        deployment = await session.get(Deployment, topup.deployment_id)
        if deployment is not None:
            deployment.status = DeploymentStatus(data.deployment_status)


async def issue_receipt(session: AsyncSession, data: TopUpReceiptRecord) -> None:
    """The completed top-up's documents. By card or wallet simflow issues the receipt: an invoice marked
    paid at once, carrying the payment reference. On account CFAST bills it: no simflow document."""
    topup = await _topup(session, data.topup_id)
    payment, transaction = await ensure_topup_charge(session, topup)
    if topup.payment_method is PaymentMethod.ACCOUNT or transaction.invoice_id is not None:
        return
    line = await session.get(Line, topup.line_id)
    invoice = await issue_invoice(
        session,
        org_id=topup.org_id,
        company_id=topup.company_id,
        reference=f"{data.reference_prefix}:invoice",
        transactions=[transaction],
        status=InvoiceStatus.PAID,
        payment_reference=topup.payment_reference,
        title=f"Recharge DATA {topup.quantity} Go — {line.msisdn if line else topup.line_id}",
        end_user_id=topup.end_user_id,
    )
    payment.invoice_id = invoice.id


async def add_notice(session: AsyncSession, data: TopUpNotice) -> None:
    """The customer's notification (end user, else the company's billing address), once per reference."""
    exists = await session.execute(select(Notification.id).where(Notification.reference == data.reference))
    if exists.first() is not None:
        return
    topup = await session.get(TopUp, data.topup_id)
    if topup is None:
        return
    recipient: str | None = None
    if topup.end_user_id:
        user = await session.get(EndUser, topup.end_user_id)
        recipient = user.email if user else None
    if recipient is None:
        company = await session.get(Company, topup.company_id)
        recipient = company.billing_email if company else None
    session.add(
        Notification(
            org_id=topup.org_id,
            company_id=topup.company_id,
            reference=data.reference,
            recipient=recipient,
            subject=data.subject,
            body=data.body,
        )
    )
