"""Top-up / recharge DATA (`topup/{org}/{topup_id}`): charge → OCS credit → SNAIC one-off option →
CFAST one-off article → receipt → notification. Any failure after the charge refunds by the method
that paid and removes exactly this top-up's balance. A refund that cannot be made leaves the top-up in
`needs_attention` until staff resolve it; nothing is guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from domain.contracts import (
        SNAIC_ORDER_SIGNAL,
        STRIPE_EVENT_SIGNAL,
        CardPayer,
        CfastArticleCancel,
        CfastArticleRequest,
        ChargeOutcome,
        ChargeRequest,
        ExternalCallResult,
        LineTargets,
        OcsCreditRequest,
        OcsRemoveRequest,
        RefundOutcome,
        RefundRequest,
        ResolveLineTargets,
        ResolvePayer,
        SnaicOptionCancel,
        SnaicOptionRequest,
        SnaicOrderAccepted,
        SnaicOrderPoll,
        SnaicOrderUpdate,
        StripeEventNotice,
        TopUpInput,
        TopUpNotice,
        TopUpReceipt,
        TopUpReceiptRecord,
        TopUpResolution,
        TopUpStatusUpdate,
        UpdateRecordInput,
        snaic_reference,
    )
    from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
    from domain.enums import ExternalSystem, MajStatus
    from domain.security_contracts import AuditRecordInput, EmitEventInput
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS

T = TypeVar("T", bound=BaseModel)

RESOLUTION_ACTIONS = ("retry_refund", "refunded_manually")
PAID_BY_LABELS = {"card": "carte", "wallet": "portefeuille", "account": "compte"}
# Histories recorded before money movements were audited and published replay without those steps.
MONEY_AUDIT_PATCH = "audit-money-movements"
# BusinessStatus (a visibility write on the server for each change) carries the phase; the step within
# the phase is in the current details and the `receipt` query.
PHASE_STATUS_PATCH = "business-status-by-phase"
# Every failure after the charge compensates (or needs attention), never fails the workflow: the SNAIC order
# poll, any later activity; the card payer is fixed before the first charge attempt; Stripe's
# `idempotency_error` is an unknown outcome; a SNAIC option is cancelled with the rest of the top-up.
COMPENSATE_EVERY_FAILURE_PATCH = "compensate-every-failure-after-charge"
BUSINESS_PHASES = {
    "resolving_line": "charging",
    "charging": "charging",
    "crediting": "provisioning",
    "provisioning_supplier": "provisioning",
    "billing": "provisioning",
    "recording": "provisioning",
}


def workflow_id(org_id: str, topup_id: str) -> str:
    return f"topup/{org_id}/{topup_id}"


def balance_id(topup_id: str) -> str:
    return f"topup-{topup_id}"


class StepFailed(Exception):
    """A provisioning step failed for good; the saga compensates."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def _reason(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)


def _error_type(err: ActivityError) -> str | None:
    return err.cause.type if isinstance(err.cause, ApplicationError) else None


@workflow.defn
class TopUpWorkflow:
    @workflow.init
    def __init__(self, data: TopUpInput) -> None:
        self.data = data
        self.status = "pending"
        self.payment_status = "pending"
        self.payment_reference: str | None = None
        self.failure_reason: str | None = None
        self.payment_decided = False
        self.snaic_order_id: str | None = None
        self.snaic_update: SnaicOrderUpdate | None = None
        self.resolution: TopUpResolution | None = None
        self.step = "pending"
        self.shown_status: str | None = None
        self.stripe_events: list[StripeEventNotice] = []
        self.attention_rounds = 0
        self.payer: CardPayer | None = None
        self.compensates_every_failure = False

    # --- messages ---------------------------------------------------------------------------

    @workflow.update
    async def submit(self) -> TopUpReceipt:
        """Answers once the payment is decided (charged, on account, declined…); provisioning goes on."""
        await workflow.wait_condition(lambda: self.payment_decided)
        return self.receipt()

    @workflow.query
    def receipt(self) -> TopUpReceipt:
        return TopUpReceipt(
            recharge_id=self.data.topup_id,
            workflow_id=workflow.info().workflow_id,
            status=self.status,
            payment_status=self.payment_status,
            amount_minor=self.data.amount_minor,
            currency=self.data.currency,
            payment_reference=self.payment_reference,
            failure_reason=self.failure_reason,
        )

    @workflow.signal(name=SNAIC_ORDER_SIGNAL)
    def snaic_order_update(self, update: SnaicOrderUpdate) -> None:
        if self.snaic_order_id is None or update.order_id == self.snaic_order_id:
            self.snaic_update = update

    @workflow.signal(name=STRIPE_EVENT_SIGNAL)
    def stripe_event(self, event: StripeEventNotice) -> None:
        """Stripe's view of the payment (webhooks); the saga itself never waits for it."""
        if all(e.event_id != event.event_id for e in self.stripe_events):
            self.stripe_events.append(event)

    @workflow.query
    def payment_events(self) -> list[StripeEventNotice]:
        return list(self.stripe_events)

    @workflow.update
    async def resolve(self, resolution: TopUpResolution) -> TopUpReceipt:
        round_at_call = self.attention_rounds
        self.resolution = resolution
        # Answers with the outcome: settled, or back in needs_attention after another failed attempt.
        await workflow.wait_condition(lambda: self.status != "needs_attention" or self.attention_rounds > round_at_call)
        return self.receipt()

    @resolve.validator
    def _validate_resolve(self, resolution: TopUpResolution) -> None:
        if self.status != "needs_attention":
            raise ApplicationError(f"top-up is {self.status}, not needs_attention", type="NotNeedingAttention")
        if resolution.action not in RESOLUTION_ACTIONS:
            raise ApplicationError(f"unknown action {resolution.action!r}", type="UnknownResolution")
        if not resolution.note.strip():
            raise ApplicationError("a note is required", type="NoteRequired")

    # --- helpers ----------------------------------------------------------------------------

    @property
    def _wf(self) -> str:
        return workflow.info().workflow_id

    async def _act(
        self,
        name: str,
        arg: Any,
        result_type: type[T] | None = None,
        *,
        timeout: timedelta = policies.EXTERNAL_CALL_TIMEOUT,  # noqa: ASYNC109 - an activity timeout
        retry: RetryPolicy = policies.EXTERNAL_CALL_RETRY,
        schedule_to_close: timedelta | None = None,
    ) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timeout,
            schedule_to_close_timeout=schedule_to_close,
            retry_policy=retry,
            # On cancellation, wait for the attempt in flight to end: its effect (a credit, a charge) must
            # land before the compensations run, never after them.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def _db(self, name: str, arg: Any) -> None:
        """Our own database writes (status, MAJ records, receipt) run as local activities: short,
        idempotent, and without a round trip through the server for each."""
        await workflow.execute_local_activity(
            name,
            arg,
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def _set(self, status: str | None = None, details: str | None = None, **fields: Any) -> None:
        if status is not None:
            self.status = status
        if "payment_status" in fields:
            self.payment_status = fields["payment_status"]
        self._show(status if status in TERMINAL else self.step)
        if details:
            workflow.set_current_details(details)
        await self._db(names.TOPUP_SET_STATUS, TopUpStatusUpdate(topup_id=self.data.topup_id, status=status, **fields))

    async def _record(
        self,
        system: ExternalSystem,
        operation: str,
        *,
        sent: dict[str, Any] | None = None,
        answer: dict[str, Any] | None = None,
        ids: dict[str, Any] | None = None,
        error: str | None = None,
        attempt: str = "",
    ) -> None:
        await self._db(
            names.RECORD_UPDATE,
            UpdateRecordInput(
                reference=f"{self._wf}:{operation}{attempt}",
                org_id=self.data.org_id,
                company_id=self.data.company_id,
                deployment_id=self.data.deployment_id,
                line_id=self.data.line_id,
                workflow_id=self._wf,
                system=system,
                operation=operation,
                status=MajStatus.ERROR if error else MajStatus.OK,
                sent=sent or {},
                answer=answer or {},
                ids_obtained=ids or {},
                error=error,
            ),
        )

    def _progress(self, step: str, details: str) -> None:
        self.step = step
        self._show(step)
        workflow.set_current_details(details)

    def _show(self, business: str) -> None:
        if workflow.patched(PHASE_STATUS_PATCH):
            business = BUSINESS_PHASES.get(business, business)
            if business == self.shown_status:
                return
        self.shown_status = business
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(business)])

    # --- the saga ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: TopUpInput) -> TopUpReceipt:
        compensations: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self.compensates_every_failure = workflow.patched(COMPENSATE_EVERY_FAILURE_PATCH)
        try:
            targets = await self._resolve_targets()
            if targets is None:
                return self.receipt()
            if not await self._charge(targets, compensations):
                return self.receipt()
            await self._provision(targets, compensations)
        except StepFailed as failure:
            await self._compensate(compensations, f"{failure.step} : {failure.reason}")
            return self.receipt()
        except BaseException as err:
            if is_cancelled_exception(err):
                await self._compensate(compensations, "recharge annulée")
                raise
            if isinstance(err, ActivityError) and compensations and self.compensates_every_failure:
                # Money may have moved: compensate what was registered, never leave a failed workflow behind.
                await self._compensate(compensations, f"{self.step} : {_reason(err)}")
                return self.receipt()
            raise
        await self._complete()
        return self.receipt()

    async def _resolve_targets(self) -> LineTargets | None:
        self._progress("resolving_line", "Identifiants SNAIC / CFAST de la ligne")
        try:
            targets: LineTargets = await self._act(
                names.TOPUP_RESOLVE_LINE_TARGETS,
                ResolveLineTargets(line_id=self.data.line_id, org_id=self.data.org_id),
                LineTargets,
            )
        except ActivityError as err:
            if _error_type(err) == "line.not_rechargeable":  # e.g. a termination scheduled since the request
                await self._fail_before_charge("refused", _reason(err))
            else:
                await self._fail_before_charge("line_unresolved", f"ligne non provisionnée : {_reason(err)}")
            return None
        if targets.fetched:
            await self._record(
                ExternalSystem.CFAST if "cfast_service_id" in targets.fetched else ExternalSystem.SNAIC,
                "fetch_line_ids",
                sent={"msisdn": self.data.msisdn},
                ids=targets.fetched,
            )
        return targets

    async def _fail_before_charge(self, payment_status: str, reason: str) -> None:
        self.failure_reason = reason
        # Our records first, then the caller's answer: a read right after the answer agrees with it.
        await self._set(
            "failed",
            f"Échec : {reason}",
            payment_status=payment_status,
            failure_reason=reason,
            deployment_status="failed",
        )
        self.payment_decided = True

    async def _charge(
        self, targets: LineTargets, compensations: list[tuple[str, Callable[[], Awaitable[None]]]]
    ) -> bool:
        data = self.data
        self._progress("charging", f"Paiement de {data.amount_minor / 100:.2f} {data.currency} ({data.payment_method})")
        key = f"{self._wf}:charge"
        request = ChargeRequest(
            topup_id=data.topup_id,
            idempotency_key=key,
            amount_minor=data.amount_minor,
            currency=data.currency,
            description=f"{data.article_label} × {data.quantity} — {data.msisdn}",
        )
        # The compensation is registered before the step: a charge whose answer was lost is refunded too.
        compensations.append(("refund", lambda: self._refund(targets)))
        system = ExternalSystem.CFAST if data.payment_method == "account" else ExternalSystem.STRIPE
        try:
            if data.payment_method == "card":
                if self.compensates_every_failure and self.payer is None:
                    # Fixed once, in history: every retry of the charge (and the refund's search for it) uses
                    # this customer and card, even if the saved card changes meanwhile.
                    self.payer = await self._act(
                        names.PAYMENT_RESOLVE_PAYER,
                        ResolvePayer(topup_id=data.topup_id),
                        CardPayer,
                        timeout=policies.DATABASE_TIMEOUT,
                        retry=policies.DATABASE_RETRY,
                    )
                    request = request.model_copy(update={"payer": self.payer})
                outcome: ChargeOutcome = await self._act(
                    names.PAYMENT_CHARGE_CARD,
                    request,
                    ChargeOutcome,
                    retry=policies.CHARGE_RETRY,
                    schedule_to_close=timedelta(seconds=data.charge_window_s),
                )
            elif data.payment_method == "wallet":
                outcome = await self._act(
                    names.LEDGER_DEBIT_WALLET,
                    request,
                    ChargeOutcome,
                    timeout=policies.DATABASE_TIMEOUT,
                    retry=policies.DATABASE_RETRY,
                )
            else:
                article = await self._act(
                    names.CFAST_ADD_ONE_OFF_ARTICLE,
                    CfastArticleRequest(
                        cfast_service_id=targets.cfast_service_id,
                        article_code=data.article_code,
                        label=data.article_label,
                        quantity=data.quantity,
                        unit_price_minor=data.unit_price_minor,
                        reference=f"topup:{data.topup_id}",
                        idempotency_key=key,
                    ),
                    ExternalCallResult,
                    retry=policies.CHARGE_RETRY,
                    schedule_to_close=timedelta(seconds=data.charge_window_s),
                )
                outcome = ChargeOutcome(
                    payment_status="on_account",
                    payment_reference=article.object_id,
                    sent=article.sent,
                    answer=article.answer,
                )
        except ActivityError as err:
            reason = _reason(err)
            error_type = _error_type(err) or ""
            if data.payment_method != "wallet" and system is ExternalSystem.CFAST:
                await self._record(system, "add_one_off_article", error=reason)
            elif data.payment_method == "card":
                await self._record(system, "charge", error=reason)
            refused = isinstance(err.cause, ApplicationError) and err.cause.non_retryable
            if refused and self.compensates_every_failure and error_type == "stripe.idempotency_error":
                refused = False  # the key's first request may have charged: resolved by the refund's search
            if refused:
                compensations.clear()  # declined: no money moved
                status = "declined" if ("declin" in error_type or "wallet" in error_type) else "refused"
                await self._fail_before_charge(status, reason)
                return False
            # The outcome of the charge is unknown after every retry: only a human can tell.
            self.failure_reason = f"paiement : résultat inconnu ({reason})"
            self.payment_decided = True
            await self._compensate(compensations, self.failure_reason)
            return False
        self.payment_reference = outcome.payment_reference
        await self._set(
            "charged",
            "Paiement accepté, provisionnement en cours",
            payment_status=outcome.payment_status,
            payment_reference=outcome.payment_reference,
            deployment_status="in_progress",
        )
        self.payment_decided = True
        if data.payment_method != "wallet":
            await self._record(
                system,
                "add_one_off_article" if data.payment_method == "account" else "charge",
                sent=outcome.sent,
                answer=outcome.answer,
                ids={"payment_reference": outcome.payment_reference},
            )
        await self._audit_money("topup.charge", payment_status=outcome.payment_status)
        await self._publish_payment(outcome.payment_status)
        return True

    async def _provision(
        self, targets: LineTargets, compensations: list[tuple[str, Callable[[], Awaitable[None]]]]
    ) -> None:
        data = self.data
        # OCS: exactly this top-up's balance, check-and-skip so a retry never resets consumed data.
        self._progress("crediting", "Crédit du solde data (OCS)")
        credit = OcsCreditRequest(
            account=targets.ocs_account,
            balance_id=balance_id(data.topup_id),
            data_bytes=data.data_bytes,
            expires_at_iso=targets.data_expires_at_iso,
            request_id=f"{self._wf}:ocs-credit",
            topup_id=data.topup_id,
            workflow_id=self._wf,
        )
        compensations.append(("remove_balance", lambda: self._remove_balance(targets)))
        try:
            credited: ExternalCallResult = await self._act(names.OCS_CREDIT_DATA, credit, ExternalCallResult)
        except ActivityError as err:
            await self._record(ExternalSystem.OCS, "credit_data", sent=credit.model_dump(), error=_reason(err))
            raise StepFailed("OCS", _reason(err)) from err
        await self._record(
            ExternalSystem.OCS,
            "credit_data",
            sent=credited.sent,
            answer=credited.answer,
            ids={"balance_id": credited.object_id},
        )

        # SNAIC: the supplier's one-off option, completed asynchronously (callback, polling as fallback).
        self._progress("provisioning_supplier", "Option ponctuelle chez le fournisseur (SNAIC)")
        option = SnaicOptionRequest(
            snaic_line_id=targets.snaic_line_id,
            option_code=data.article_code,
            quantity=data.quantity,
            reference=snaic_reference(self._wf, "one-off-option"),
            idempotency_key=f"{self._wf}:snaic-option",
        )
        if self.compensates_every_failure:
            # Registered before the order: an option that SNAIC completes late (or whose answer was lost) is
            # cancelled with the rest of a refunded top-up.
            compensations.append(("cancel_snaic_option", lambda: self._cancel_option(option)))
        try:
            accepted: SnaicOrderAccepted = await self._act(names.SNAIC_ADD_ONE_OFF_OPTION, option, SnaicOrderAccepted)
        except ActivityError as err:
            await self._record(ExternalSystem.SNAIC, "add_one_off_option", sent=option.model_dump(), error=_reason(err))
            raise StepFailed("SNAIC", _reason(err)) from err
        self.snaic_order_id = accepted.order_id
        await self._record(
            ExternalSystem.SNAIC,
            "add_one_off_option",
            sent=accepted.sent,
            answer=accepted.answer,
            ids={"order_id": accepted.order_id},
        )
        result = await self._await_snaic_order(accepted.order_id)
        if result.status != "completed":
            reason = result.reason or result.status
            await self._record(ExternalSystem.SNAIC, "one_off_option_result", answer=result.model_dump(), error=reason)
            raise StepFailed("SNAIC", reason)
        await self._record(
            ExternalSystem.SNAIC, "one_off_option_result", answer=result.model_dump(), ids={"order_id": result.order_id}
        )

        # CFAST: the billed record of the option. Paid by card or wallet, it is recorded at 0 € so the
        # customer's invoice does not bill it a second time; on account the charge step already billed it.
        if data.payment_method != "account":
            self._progress("billing", "Option ponctuelle dans CFAST")
            article = CfastArticleRequest(
                cfast_service_id=targets.cfast_service_id,
                article_code=data.article_code,
                label=f"{data.article_label} (réglée par {PAID_BY_LABELS[data.payment_method]})",
                quantity=data.quantity,
                unit_price_minor=0,
                reference=f"topup:{data.topup_id}",
                idempotency_key=f"{self._wf}:cfast-article",
            )
            compensations.append(("cancel_cfast_article", lambda: self._cancel_article(targets, "cfast-article")))
            try:
                billed: ExternalCallResult = await self._act(
                    names.CFAST_ADD_ONE_OFF_ARTICLE, article, ExternalCallResult
                )
            except ActivityError as err:
                await self._record(
                    ExternalSystem.CFAST, "add_one_off_article", sent=article.model_dump(), error=_reason(err)
                )
                raise StepFailed("CFAST", _reason(err)) from err
            await self._record(
                ExternalSystem.CFAST,
                "add_one_off_article",
                sent=billed.sent,
                answer=billed.answer,
                ids={"article_line_id": billed.object_id},
            )

    async def _await_snaic_order(self, order_id: str) -> SnaicOrderUpdate:
        sla = timedelta(seconds=self.data.snaic_callback_sla_s)
        poll_every = max(sla / 5, timedelta(seconds=1))
        waited = timedelta()
        while True:
            try:
                await workflow.wait_condition(lambda: self.snaic_update is not None, timeout=poll_every)
            except TimeoutError:
                waited += poll_every
            if self.snaic_update is not None and self.snaic_update.status != "pending":
                return self.snaic_update
            try:
                polled: SnaicOrderUpdate = await self._act(
                    names.SNAIC_GET_ORDER, SnaicOrderPoll(order_id=order_id), SnaicOrderUpdate
                )
            except ActivityError as err:
                if not self.compensates_every_failure or is_cancelled_exception(err):
                    raise
                await self._record(ExternalSystem.SNAIC, "get_order", sent={"order_id": order_id}, error=_reason(err))
                raise StepFailed("SNAIC", f"commande {order_id} illisible : {_reason(err)}") from err
            if polled.status != "pending":
                return polled
            if waited >= sla:
                return SnaicOrderUpdate(
                    order_id=order_id,
                    line_id=polled.line_id,
                    status="timeout",
                    reason=f"aucune réponse de SNAIC sous {int(sla.total_seconds())} s",
                )

    async def _complete(self) -> None:
        data = self.data
        self._progress("recording", "Transaction et reçu")
        await self._db(
            names.TOPUP_RECORD_RECEIPT,
            TopUpReceiptRecord(topup_id=data.topup_id, workflow_id=self._wf, reference_prefix=self._wf),
        )
        await self._notify(
            "completed",
            "Recharge effectuée",
            f"Votre recharge de {data.quantity} Go sur le {data.msisdn} est active.",
            "topup.completed",
        )
        await self._set("completed", "Recharge terminée", deployment_status="completed")

    async def _notify(self, suffix: str, subject: str, body: str, event_type: str) -> None:
        notice = TopUpNotice(
            topup_id=self.data.topup_id,
            reference=f"{self._wf}:notify-{suffix}",
            subject=subject,
            body=body,
            event_type=event_type,
        )
        try:
            await self._act(names.TOPUP_NOTIFY, notice, timeout=policies.DATABASE_TIMEOUT, retry=policies.REFUND_RETRY)
        except ActivityError as err:  # a notification never changes the money outcome
            workflow.logger.warning("notification failed: %s", _reason(err))

    async def _audit_money(
        self, action: str, *, actor: str = "system", actor_kind: str = "workflow", **details: Any
    ) -> None:
        """One audit row per money movement (charge, refund), written once however often it is retried."""
        if not workflow.patched(MONEY_AUDIT_PATCH):
            return
        data = self.data
        await self._db(
            names.AUDIT_RECORD,
            AuditRecordInput(
                reference=f"{self._wf}:audit:{action}",
                action=action,
                actor=actor,
                actor_kind=actor_kind,
                org_id=data.org_id,
                company_id=data.company_id,
                target=f"recharge:{data.topup_id}",
                workflow_id=self._wf,
                details={
                    "amount_minor": data.amount_minor,
                    "currency": data.currency,
                    "payment_method": data.payment_method,
                    "payment_reference": self.payment_reference,
                    "line_id": data.line_id,
                    **details,
                },
            ),
        )

    async def _publish_payment(self, payment_status: str) -> None:
        """The `payment.created` webhook event (seed 000 catalogue); a webhook never changes the outcome."""
        if not workflow.patched(MONEY_AUDIT_PATCH):
            return
        data = self.data
        event = EmitEventInput(
            org_id=data.org_id,
            event_type="payment.created",
            event_id=f"payment-{data.topup_id}",  # stable and unique: one event per top-up
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
                "payment_reference": self.payment_reference,
            },
        )
        try:
            await self._act(names.WEBHOOKS_EMIT, event, timeout=policies.DATABASE_TIMEOUT, retry=policies.REFUND_RETRY)
        except ActivityError as err:
            workflow.logger.warning("payment event not published: %s", _reason(err))

    # --- compensations ----------------------------------------------------------------------

    async def _refund(self, targets: LineTargets) -> None:
        data = self.data
        key = f"{self._wf}:refund"
        if data.payment_method == "account":
            await self._cancel_article(targets, "charge")
            refund_reference = f"cfast-cancel:topup:{data.topup_id}"
        else:
            request = RefundRequest(
                topup_id=data.topup_id,
                idempotency_key=key,
                payment_reference=self.payment_reference or "",
                amount_minor=data.amount_minor,
                currency=data.currency,
                payer=self.payer,
            )
            name = names.PAYMENT_REFUND_CARD if data.payment_method == "card" else names.LEDGER_REFUND_WALLET
            try:
                refunded: RefundOutcome = await self._act(
                    name,
                    request,
                    RefundOutcome,
                    retry=policies.REFUND_RETRY,
                    schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
                )
            except ActivityError as err:
                if data.payment_method == "card":
                    await self._record(ExternalSystem.STRIPE, "refund", sent=request.model_dump(), error=_reason(err))
                raise
            refund_reference = refunded.refund_reference
            if data.payment_method == "card":
                await self._record(
                    ExternalSystem.STRIPE,
                    "refund",
                    sent=refunded.sent,
                    answer=refunded.answer,
                    ids={"refund": refunded.refund_reference},
                )
        await self._set(None, payment_status="refunded", refund_reference=refund_reference)
        await self._audit_money("topup.refund", refund_reference=refund_reference)

    async def _remove_balance(self, targets: LineTargets) -> None:
        request = OcsRemoveRequest(
            account=targets.ocs_account, balance_id=balance_id(self.data.topup_id), request_id=f"{self._wf}:ocs-remove"
        )
        await self._act(
            names.OCS_REMOVE_BALANCE,
            request,
            retry=policies.REFUND_RETRY,
            schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
        )
        await self._record(ExternalSystem.OCS, "remove_balance", sent=request.model_dump())

    async def _cancel_option(self, option: SnaicOptionRequest) -> None:
        request = SnaicOptionCancel(
            snaic_line_id=option.snaic_line_id,
            reference=option.reference,
            idempotency_key=f"{self._wf}:cancel-snaic-option",
        )
        result: ExternalCallResult = await self._act(
            names.SNAIC_CANCEL_ONE_OFF_OPTION,
            request,
            ExternalCallResult,
            retry=policies.REFUND_RETRY,
            schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
        )
        await self._record(ExternalSystem.SNAIC, "cancel_one_off_option", sent=result.sent, answer=result.answer)

    async def _cancel_article(self, targets: LineTargets, step: str) -> None:
        request = CfastArticleCancel(
            cfast_service_id=targets.cfast_service_id,
            reference=f"topup:{self.data.topup_id}",
            idempotency_key=f"{self._wf}:cancel-{step}",
        )
        result: ExternalCallResult = await self._act(
            names.CFAST_CANCEL_ONE_OFF_ARTICLE,
            request,
            ExternalCallResult,
            retry=policies.REFUND_RETRY,
            schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
        )
        await self._record(
            ExternalSystem.CFAST, "cancel_one_off_article", sent=result.sent, answer=result.answer, attempt=f"-{step}"
        )

    async def _compensate(self, compensations: list[tuple[str, Callable[[], Awaitable[None]]]], reason: str) -> None:
        """Runs the registered compensations in reverse. A compensation that keeps failing leaves the
        top-up in needs_attention until staff resolve it (retry, or confirm a manual refund)."""
        self.failure_reason = reason
        self.payment_decided = True
        self._progress("compensating", f"Annulation : {reason}")
        pending = list(reversed(compensations))
        compensations.clear()
        while pending:
            failed: list[tuple[str, Callable[[], Awaitable[None]]]] = []
            errors: list[str] = []
            for name, compensation in pending:
                try:
                    await asyncio.shield(asyncio.ensure_future(compensation()))
                except ActivityError as err:
                    failed.append((name, compensation))
                    errors.append(f"{name}: {_reason(err)}")
            if not failed:
                break
            self.attention_rounds += 1
            await self._set(
                "needs_attention",
                "Remboursement impossible : intervention requise",
                payment_status="refund_failed" if any(n == "refund" for n, _ in failed) else self.payment_status,
                failure_reason=f"{reason} ; compensation en échec : {'; '.join(errors)}",
                deployment_status="needs_attention",
            )
            await self._notify(
                "attention",
                "Recharge en attente",
                "Votre recharge est en cours de vérification.",
                "topup.needs_attention",
            )
            await workflow.wait_condition(lambda: self.resolution is not None)
            resolution = self.resolution
            assert resolution is not None
            if resolution.action == "refunded_manually":
                await self._set(
                    "refunded",
                    "Remboursement manuel confirmé",
                    payment_status="refunded",
                    resolution_note=f"{resolution.actor}: {resolution.note}",
                    deployment_status="failed",
                )
                await self._audit_money(
                    "topup.refund_confirmed_manually", actor=resolution.actor, actor_kind="staff", note=resolution.note
                )
                self.resolution = None
                return
            pending = failed
            self.resolution = None
        charged = self.payment_status in ("refunded",)
        final = "refunded" if charged else "failed"
        await self._set(
            final,
            f"Recharge {'remboursée' if charged else 'échouée'} : {reason}",
            failure_reason=reason,
            deployment_status="failed",
        )
        if charged:
            await self._notify(
                "refunded",
                "Recharge remboursée",
                "Nous n'avons pas pu compléter votre recharge. Votre paiement a été remboursé.",
                "topup.refunded",
            )
