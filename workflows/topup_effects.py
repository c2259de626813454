"""What a top-up writes about itself, apart from the saga: the MAJ records of its external calls, the audit
row of each money movement, the `payment.created` event, the customer's notifications, the status the
portal and the API read (database row and Temporal search attribute).

The builders are plain functions of the top-up's input, testable without Temporal. `StepWriter` applies one
saga step's writes: as one local activity and one transaction (runs started with `STEP_WRITES_PATCH`), or
one local activity per write, in the order runs started before the patch recorded them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.contracts import (
        TopUpInput,
        TopUpNotice,
        TopUpReceiptRecord,
        TopUpStatusUpdate,
        TopUpStepWrites,
        UpdateRecordInput,
    )
    from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
    from domain.enums import BusinessStatus, ExternalSystem, PaymentMethod, TopUpPaymentStatus, TopUpStatus
    from domain.money import Money
    from domain.security_contracts import AuditRecordInput, EmitEventInput
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._saga import MajScope, call, local_step, maj_entry, reason_of
    from workflows._search import BUSINESS_STATUS

# Runs started with this patch write the status, MAJ records, audit row, receipt and notification of one
# step in one local activity (`topups.record_step`), one transaction; older runs replay one write each.
STEP_WRITES_PATCH = "topup-one-write-per-step"

PAID_BY_LABELS = {PaymentMethod.CARD: "carte", PaymentMethod.WALLET: "portefeuille", PaymentMethod.ACCOUNT: "compte"}
BUSINESS_PHASES: dict[str, BusinessStatus] = {
    BusinessStatus.RESOLVING_LINE: BusinessStatus.CHARGING,
    BusinessStatus.CHARGING: BusinessStatus.CHARGING,
    BusinessStatus.CREDITING: BusinessStatus.PROVISIONING,
    BusinessStatus.PROVISIONING_SUPPLIER: BusinessStatus.PROVISIONING,
    BusinessStatus.BILLING: BusinessStatus.PROVISIONING,
    BusinessStatus.RECORDING: BusinessStatus.PROVISIONING,
}


def amount_of(data: TopUpInput) -> Money:
    return Money(data.amount_minor, data.currency)


def charge_details(data: TopUpInput) -> str:
    # Babel loads its (static) locale data on first use: a file read and an import, which the sandbox
    # forbids; the text is the same on every replay.
    with workflow.unsafe.sandbox_unrestricted(), workflow.unsafe.imports_passed_through():
        amount = amount_of(data).format_fr()
    return f"Paiement de {amount} ({data.payment_method})"


class TopUpFacts:
    """Builds the rows a top-up writes about itself, keyed by its workflow id so that every write is
    idempotent across retries and replays."""

    def __init__(self, data: TopUpInput, workflow_id: str) -> None:
        self.data = data
        self.workflow_id = workflow_id

    def record(
        self,
        system: ExternalSystem,
        operation: str,
        *,
        sent: dict[str, Any] | None = None,
        answer: dict[str, Any] | None = None,
        ids: dict[str, Any] | None = None,
        error: str | None = None,
        attempt: str = "",
    ) -> UpdateRecordInput:
        data = self.data
        scope = MajScope(
            org_id=data.org_id, company_id=data.company_id, deployment_id=data.deployment_id, line_id=data.line_id
        )
        return maj_entry(
            scope,
            f"{self.workflow_id}:{operation}{attempt}",
            system,
            operation,
            workflow_id=self.workflow_id,
            sent=sent,
            answer=answer,
            ids=ids,
            error=error,
        )

    def money_audit(
        self,
        action: str,
        payment_reference: str | None,
        *,
        actor: str = "system",
        actor_kind: str = "workflow",
        **details: Any,
    ) -> AuditRecordInput:
        """One audit row per money movement (charge, refund), written once however often it is retried."""
        data = self.data
        return AuditRecordInput(
            reference=f"{self.workflow_id}:audit:{action}",
            action=action,
            actor=actor,
            actor_kind=actor_kind,
            org_id=data.org_id,
            company_id=data.company_id,
            target=f"recharge:{data.topup_id}",
            workflow_id=self.workflow_id,
            details={
                "amount_minor": data.amount_minor,
                "currency": data.currency,
                "payment_method": data.payment_method,
                "payment_reference": payment_reference,
                "line_id": data.line_id,
                **details,
            },
        )

    def payment_event(self, payment_status: TopUpPaymentStatus, payment_reference: str | None) -> EmitEventInput:
        """The `payment.created` webhook event (seed 000 catalogue), one per top-up."""
        data = self.data
        return EmitEventInput(
            org_id=data.org_id,
            event_type="payment.created",
            event_id=f"payment-{data.topup_id}",
            data={
                "recharge_id": data.topup_id,
                "company_id": data.company_id,
                "line_id": data.line_id,
                "msisdn": data.msisdn,
                "iccid": data.iccid,
                "amount_minor": data.amount_minor,
                "currency": data.currency,
                "payment_method": data.payment_method,
                "payment_status": payment_status,
                "payment_reference": payment_reference,
            },
        )

    def receipt(self) -> TopUpReceiptRecord:
        return TopUpReceiptRecord(
            topup_id=self.data.topup_id, workflow_id=self.workflow_id, reference_prefix=self.workflow_id
        )

    def _notice(self, suffix: str, subject: str, body: str, event_type: str) -> TopUpNotice:
        return TopUpNotice(
            topup_id=self.data.topup_id,
            reference=f"{self.workflow_id}:notify-{suffix}",
            subject=subject,
            body=body,
            event_type=event_type,
        )

    def completed_notice(self) -> TopUpNotice:
        data = self.data
        return self._notice(
            "completed",
            "Recharge effectuée",
            f"Votre recharge de {data.quantity} Go sur le {data.msisdn} est active.",
            "topup.completed",
        )

    def attention_notice(self) -> TopUpNotice:
        return self._notice(
            "attention", "Recharge en attente", "Votre recharge est en cours de vérification.", "topup.needs_attention"
        )

    def refunded_notice(self) -> TopUpNotice:
        return self._notice(
            "refunded",
            "Recharge remboursée",
            "Nous n'avons pas pu compléter votre recharge. Votre paiement a été remboursé.",
            "topup.refunded",
        )


class StatusMirror:
    """The top-up's status as the workflow sees it, and its mirror in the `BusinessStatus` search attribute:
    the phase (charging, provisioning, terminal) when `by_phase()`, else every step."""

    def __init__(self, by_phase: Callable[[], bool]) -> None:
        self.status = TopUpStatus.PENDING
        self.payment_status = TopUpPaymentStatus.PENDING
        self.step: str = BusinessStatus.PENDING
        self.shown: str | None = None
        self._by_phase = by_phase

    def business_status(self, step_or_status: str) -> str | None:
        """The search attribute value to write for this step or status, None when it is already shown."""
        if self._by_phase():
            business = BUSINESS_PHASES.get(step_or_status, step_or_status)
            return None if business == self.shown else business
        return step_or_status

    def progress(self, step: BusinessStatus, details: str) -> None:
        self.step = step
        self._show(step)
        workflow.set_current_details(details)

    def apply(self, status: TopUpStatus | None, payment_status: TopUpPaymentStatus | None, details: str | None) -> None:
        if status is not None:
            self.status = status
        if payment_status is not None:
            self.payment_status = payment_status
        self._show(status if status in TERMINAL else self.step)
        if details:
            workflow.set_current_details(details)

    def _show(self, step_or_status: str) -> None:
        business = self.business_status(step_or_status)
        if business is not None:
            self.shown = business
            workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(business)])


class StepWriter:
    """Applies a step's own writes. Batched (`STEP_WRITES_PATCH`): they wait for `flush()`, one local activity
    and one transaction, status updates of the step merged. Not batched: each is its own local activity at
    once (the notification a regular one), as histories recorded before the patch expect; `flush()` then
    does nothing."""

    def __init__(self, topup_id: str, *, batched: bool) -> None:
        self.topup_id = topup_id
        self.batched = batched
        self._reset()

    def _reset(self) -> None:
        self._status: dict[str, Any] = {}
        self._records: list[UpdateRecordInput] = []
        self._audits: list[AuditRecordInput] = []
        self._notices: list[TopUpNotice] = []
        self._receipt: TopUpReceiptRecord | None = None

    async def status(self, update: TopUpStatusUpdate) -> None:
        if self.batched:
            self._status.update(update.model_dump(exclude_none=True))
        else:
            await _local(names.TOPUP_SET_STATUS, update)

    async def record(self, entry: UpdateRecordInput) -> None:
        if self.batched:
            self._records.append(entry)
        else:
            await _local(names.RECORD_UPDATE, entry)

    async def audit(self, entry: AuditRecordInput) -> None:
        if self.batched:
            self._audits.append(entry)
        else:
            await _local(names.AUDIT_RECORD, entry)

    async def receipt(self, receipt: TopUpReceiptRecord) -> None:
        if self.batched:
            self._receipt = receipt
        else:
            await _local(names.TOPUP_RECORD_RECEIPT, receipt)

    async def notice(self, notice: TopUpNotice) -> None:
        if self.batched:
            self._notices.append(notice)
            return
        try:
            await call(
                names.TOPUP_NOTIFY,
                notice,
                timeout=policies.DATABASE_TIMEOUT,
                retry=policies.REFUND_RETRY,
                wait_cancellation=True,
            )
        except ActivityError as err:  # a notification never changes the money outcome
            workflow.logger.warning("notification failed: %s", reason_of(err))

    def pending(self) -> TopUpStepWrites | None:
        """The step's writes not yet applied, as one activity input (None when there are none)."""
        if not (self._status or self._records or self._audits or self._notices or self._receipt):
            return None
        return TopUpStepWrites(
            topup_id=self.topup_id,
            status=TopUpStatusUpdate(**self._status) if self._status else None,
            records=self._records,
            audits=self._audits,
            receipt=self._receipt,
            notices=self._notices,
        )

    async def flush(self) -> None:
        writes = self.pending()
        self._reset()
        if writes is not None:
            await _local(names.TOPUP_RECORD_STEP, writes)


async def _local(name: str, arg: Any) -> None:
    await local_step(name, arg, wait_cancellation=True)
