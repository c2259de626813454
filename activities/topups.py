"""Database side of top-ups: line ids (fetched on the fly), status, receipt, notification.

Every write is idempotent: receipts and notifications are unique by reference, status updates are
plain overwrites of the workflow's current view.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities._errors import external_call
from domain.authz import Action, TenantChain
from domain.contracts import (
    LineTargets,
    ResolveLineTargets,
    SettledTopUps,
    SettleUnstartedTopUps,
    TopUpNotice,
    TopUpReceiptRecord,
    TopUpStatusUpdate,
)
from domain.enums import DeploymentStatus, InvoiceStatus, PaymentMethod
from domain.errors import NotFound
from domain.identifiers import msisdn_national
from domain.models import (
    CatalogueArticle,
    Company,
    Deployment,
    EndUser,
    Invoice,
    InvoiceCounter,
    Line,
    Notification,
    Payment,
    TopUp,
    Transaction,
)
from domain.money import DEFAULT_VAT_RATE_BP
from domain.services.lines import topup_refusal
from domain.services.tenancy import ensure_in_tenant
from integrations.cfast import CfastClient
from integrations.snaic import SnaicClient
from workflows import activity_names as names

DEFAULT_TOPUP_VALIDITY = timedelta(days=30)
NOT_STARTED = "recharge jamais démarrée (interruption du service) : aucun paiement effectué"


def vat_included(amount_minor: int, rate_bp: int = DEFAULT_VAT_RATE_BP) -> int:
    """The VAT inside a tax-inclusive amount, rounded half up to the cent."""
    net = (amount_minor * 10_000 * 2 + (10_000 + rate_bp)) // (2 * (10_000 + rate_bp))
    return amount_minor - net


async def next_invoice_number(session: AsyncSession, org_id: str) -> int:
    """Gapless per organisation: the counter row is incremented in the transaction issuing the invoice.
    The UPDATE comes first so the row is write-locked at once (SQLite and PostgreSQL alike)."""
    bump = (
        update(InvoiceCounter)
        .where(InvoiceCounter.org_id == org_id)
        .values(last_number=InvoiceCounter.last_number + 1)
        .returning(InvoiceCounter.last_number)
    )
    number = (await session.execute(bump)).scalar_one_or_none()
    if number is None:
        session.add(InvoiceCounter(org_id=org_id, last_number=1))
        await session.flush()
        return 1
    return int(number)


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
        values = data.model_dump(exclude={"topup_id", "deployment_status"}, exclude_none=True)
        async with self._sessionmaker.begin() as session:
            topup = await session.get(TopUp, data.topup_id)
            if topup is None:
                raise ApplicationError(f"top-up {data.topup_id} not found", type="topup.not_found", non_retryable=True)
            for field, value in values.items():
                setattr(topup, field, value)
            if data.deployment_status and topup.deployment_id:
                deployment = await session.get(Deployment, topup.deployment_id)
                if deployment is not None:
                    deployment.status = DeploymentStatus(data.deployment_status)

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
                    .where(TopUp.status == "pending", TopUp.created_at < cutoff)
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
                    .where(TopUp.id == topup_id, TopUp.status == "pending")
                    .values(status="failed", payment_status="not_started", failure_reason=NOT_STARTED)
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
        """Transaction, payment and the paid invoice (receipt) carrying the payment reference."""
        transaction_ref = f"{data.reference_prefix}:transaction"
        async with self._sessionmaker.begin() as session:
            done = await session.execute(select(Transaction.id).where(Transaction.reference == transaction_ref))
            if done.first() is not None:
                return
            topup = await session.get(TopUp, data.topup_id)
            if topup is None:
                raise ApplicationError(f"top-up {data.topup_id} not found", type="topup.not_found", non_retryable=True)
            article = await session.get(CatalogueArticle, topup.article_id)
            wholesale = (article.purchase_price_minor if article else 0) * topup.quantity
            tax = vat_included(topup.amount_minor)
            invoice = Invoice(
                org_id=topup.org_id,
                company_id=topup.company_id,
                number=await next_invoice_number(session, topup.org_id),
                reference=f"{data.reference_prefix}:invoice",
                status=InvoiceStatus.PAID,
                total_minor=topup.amount_minor,
                tax_minor=tax,
                currency=topup.currency,
                payment_reference=topup.payment_reference,
            )
            session.add(invoice)
            await session.flush()
            session.add(
                Transaction(
                    org_id=topup.org_id,
                    company_id=topup.company_id,
                    line_id=topup.line_id,
                    reference=transaction_ref,
                    description=f"Recharge DATA {topup.quantity} Go",
                    retail_minor=topup.amount_minor,
                    wholesale_minor=wholesale,
                    tax_minor=tax,
                    currency=topup.currency,
                    invoice_id=invoice.id,
                )
            )
            session.add(
                Payment(
                    org_id=topup.org_id,
                    company_id=topup.company_id,
                    invoice_id=invoice.id,
                    method=topup.payment_method,
                    amount_minor=topup.amount_minor,
                    currency=topup.currency,
                    status="succeeded" if topup.payment_method is not PaymentMethod.ACCOUNT else "on_account",
                    reference=f"{data.reference_prefix}:payment",
                    stripe_payment_intent_id=(
                        topup.payment_reference if topup.payment_method is PaymentMethod.CARD else None
                    ),
                )
            )

    @activity.defn(name=names.TOPUP_NOTIFY)
    async def notify(self, data: TopUpNotice) -> None:
        async with self._sessionmaker.begin() as session:
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
