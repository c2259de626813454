"""Top-up / recharge DATA (`topup/{org}/{topup_id}`): charge → OCS credit → SNAIC one-off option →
CFAST one-off article → receipt → notification. Any failure after the charge refunds by the method
that paid and removes exactly this top-up's balance. A refund that cannot be made leaves the top-up in
`needs_attention` until staff resolve it; nothing is guessed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

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
        TopUpReceipt,
        TopUpResolution,
        TopUpStatusUpdate,
        snaic_reference,
    )
    from domain.enums import (
        BusinessStatus,
        DeploymentStatus,
        ExternalSystem,
        PaymentMethod,
        SnaicOrderStatus,
        TopUpPaymentStatus,
        TopUpStatus,
    )
    from domain.errors import ErrorCode, code_of
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._saga import (
        Compensation,
        StaffDecision,
        StepFailed,
        await_snaic_order,
        call,
        is_cancellation,
        reason_of,
        run_compensations,
    )
    from workflows.topup_effects import (
        PAID_BY_LABELS,
        STEP_WRITES_PATCH,
        StatusMirror,
        StepWriter,
        TopUpFacts,
        charge_details,
    )

T = TypeVar("T", bound=BaseModel)

RESOLUTION_ACTIONS = ("retry_refund", "refunded_manually")
# Histories recorded before money movements were audited and published replay without those steps.
MONEY_AUDIT_PATCH = "audit-money-movements"
# BusinessStatus (a visibility write on the server for each change) carries the phase; the step within
# the phase is in the current details and the `receipt` query.
PHASE_STATUS_PATCH = "business-status-by-phase"
# Every failure after the charge compensates (or needs attention), never fails the workflow: the SNAIC order
# poll, any later activity; the card payer is fixed before the first charge attempt; Stripe's
# `idempotency_error` is an unknown outcome; a SNAIC option is cancelled with the rest of the top-up.
COMPENSATE_EVERY_FAILURE_PATCH = "compensate-every-failure-after-charge"


def workflow_id(org_id: str, topup_id: str) -> str:
    return f"topup/{org_id}/{topup_id}"


def balance_id(topup_id: str) -> str:
    return f"topup-{topup_id}"


# Charges and declines that tell "the customer's means of payment said no": nothing moved, the top-up fails
# `declined`; any other refusal fails it `refused`. Old type strings read as these codes (`code_of`).
DECLINE_CODES = frozenset(
    {
        ErrorCode.PAYMENT_DECLINED,
        ErrorCode.WALLET_NOT_FOUND,
        ErrorCode.WALLET_DISABLED,
        ErrorCode.WALLET_CURRENCY_MISMATCH,
        ErrorCode.WALLET_INSUFFICIENT_FUNDS,
    }
)


async def _call(activity: str, arg: Any, result_type: type[T] | None = None, **policy: Any) -> Any:
    """Every call of the top-up waits, on cancellation, for the attempt in flight: its effect (a credit, a
    charge) lands before the compensations run, never after them."""
    return await call(activity, arg, result_type, wait_cancellation=True, **policy)


@workflow.defn
class TopUpWorkflow:
    @workflow.init
    def __init__(self, data: TopUpInput) -> None:
        self.data = data
        self.facts = TopUpFacts(data, workflow.info().workflow_id)
        self.mirror = StatusMirror(lambda: workflow.patched(PHASE_STATUS_PATCH))
        self.writes = StepWriter(data.topup_id, batched=False)
        self.payment_reference: str | None = None
        self.failure_reason: str | None = None
        self.payment_decided = False
        self.snaic_order_id: str | None = None
        self.snaic_update: SnaicOrderUpdate | None = None
        self.resolution: TopUpResolution | None = None
        self.stripe_events: list[StripeEventNotice] = []
        self.attention_rounds = 0
        self.payer: CardPayer | None = None
        self.compensates_every_failure = False

    @property
    def status(self) -> TopUpStatus:
        return self.mirror.status

    @property
    def payment_status(self) -> TopUpPaymentStatus:
        return self.mirror.payment_status

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
        await workflow.wait_condition(
            lambda: self.status != TopUpStatus.NEEDS_ATTENTION or self.attention_rounds > round_at_call
        )
        return self.receipt()

    @resolve.validator
    def _validate_resolve(self, resolution: TopUpResolution) -> None:
        if self.status != TopUpStatus.NEEDS_ATTENTION:
            raise ApplicationError(
                f"top-up is {self.status}, not needs_attention", type=ErrorCode.RESOLUTION_NOT_AWAITED
            )
        if resolution.action not in RESOLUTION_ACTIONS:
            raise ApplicationError(f"unknown action {resolution.action!r}", type=ErrorCode.RESOLUTION_UNKNOWN_ACTION)
        if not resolution.note.strip():
            raise ApplicationError("a note is required", type=ErrorCode.RESOLUTION_NOTE_REQUIRED)

    # --- helpers ----------------------------------------------------------------------------

    @property
    def _wf(self) -> str:
        return workflow.info().workflow_id

    async def _set(self, status: TopUpStatus | None = None, details: str | None = None, **fields: Any) -> None:
        self.mirror.apply(status, fields.get("payment_status"), details)
        await self.writes.status(TopUpStatusUpdate(topup_id=self.data.topup_id, status=status, **fields))

    async def _record(self, system: ExternalSystem, operation: str, **fields: Any) -> None:
        await self.writes.record(self.facts.record(system, operation, **fields))

    async def _audit_money(self, action: str, **fields: Any) -> None:
        if workflow.patched(MONEY_AUDIT_PATCH):
            await self.writes.audit(self.facts.money_audit(action, self.payment_reference, **fields))

    async def _publish_payment(self, payment_status: TopUpPaymentStatus) -> None:
        """The `payment.created` webhook event; a webhook never changes the outcome."""
        if not workflow.patched(MONEY_AUDIT_PATCH):
            return
        event = self.facts.payment_event(payment_status, self.payment_reference)
        try:
            await _call(names.WEBHOOKS_EMIT, event, timeout=policies.DATABASE_TIMEOUT, retry=policies.REFUND_RETRY)
        except ActivityError as err:
            workflow.logger.warning("payment event not published: %s", reason_of(err))

    # --- the saga ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: TopUpInput) -> TopUpReceipt:
        compensations: list[Compensation] = []
        self.compensates_every_failure = workflow.patched(COMPENSATE_EVERY_FAILURE_PATCH)
        self.writes.batched = workflow.patched(STEP_WRITES_PATCH)
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
            if is_cancellation(err):
                await self._compensate(compensations, "recharge annulée")
                raise
            if isinstance(err, ActivityError) and compensations and self.compensates_every_failure:
                # Money may have moved: compensate what was registered, never leave a failed workflow behind.
                await self._compensate(compensations, f"{self.mirror.step} : {reason_of(err)}")
                return self.receipt()
            raise
        await self._complete()
        return self.receipt()

    async def _resolve_targets(self) -> LineTargets | None:
        self.mirror.progress(BusinessStatus.RESOLVING_LINE, "Identifiants SNAIC / CFAST de la ligne")
        try:
            targets: LineTargets = await _call(
                names.TOPUP_RESOLVE_LINE_TARGETS,
                ResolveLineTargets(line_id=self.data.line_id, org_id=self.data.org_id),
                LineTargets,
            )
        except ActivityError as err:
            if code_of(err) is ErrorCode.LINE_NOT_RECHARGEABLE:  # e.g. a termination scheduled since the request
                await self._fail_before_charge(TopUpPaymentStatus.REFUSED, reason_of(err))
            else:
                await self._fail_before_charge(
                    TopUpPaymentStatus.LINE_UNRESOLVED, f"ligne non provisionnée : {reason_of(err)}"
                )
            return None
        if targets.fetched:
            await self._record(
                ExternalSystem.CFAST if "cfast_service_id" in targets.fetched else ExternalSystem.SNAIC,
                "fetch_line_ids",
                sent={"msisdn": self.data.msisdn},
                ids=targets.fetched,
            )
        return targets

    async def _fail_before_charge(self, payment_status: TopUpPaymentStatus, reason: str) -> None:
        self.failure_reason = reason
        # Our records first, then the caller's answer: a read right after the answer agrees with it.
        await self._set(
            TopUpStatus.FAILED,
            f"Échec : {reason}",
            payment_status=payment_status,
            failure_reason=reason,
            deployment_status=DeploymentStatus.FAILED,
        )
        await self.writes.flush()
        self.payment_decided = True

    async def _charge(self, targets: LineTargets, compensations: list[Compensation]) -> bool:
        data = self.data
        self.mirror.progress(BusinessStatus.CHARGING, charge_details(data))
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
        system = ExternalSystem.CFAST if data.payment_method == PaymentMethod.ACCOUNT else ExternalSystem.STRIPE
        try:
            if data.payment_method == PaymentMethod.CARD:
                if self.compensates_every_failure and self.payer is None:
                    # Fixed once, in history: every retry of the charge (and the refund's search for it) uses
                    # this customer and card, even if the saved card changes meanwhile.
                    self.payer = await _call(
                        names.PAYMENT_RESOLVE_PAYER,
                        ResolvePayer(topup_id=data.topup_id),
                        CardPayer,
                        timeout=policies.DATABASE_TIMEOUT,
                        retry=policies.DATABASE_RETRY,
                    )
                    request = request.model_copy(update={"payer": self.payer})
                outcome: ChargeOutcome = await _call(
                    names.PAYMENT_CHARGE_CARD,
                    request,
                    ChargeOutcome,
                    retry=policies.CHARGE_RETRY,
                    schedule_to_close=timedelta(seconds=data.charge_window_s),
                )
            elif data.payment_method == PaymentMethod.WALLET:
                outcome = await _call(
                    names.LEDGER_DEBIT_WALLET,
                    request,
                    ChargeOutcome,
                    timeout=policies.DATABASE_TIMEOUT,
                    retry=policies.DATABASE_RETRY,
                )
            else:
                article = await _call(
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
                    payment_status=TopUpPaymentStatus.ON_ACCOUNT,
                    payment_reference=article.object_id,
                    sent=article.sent,
                    answer=article.answer,
                )
        except ActivityError as err:
            reason = reason_of(err)
            code = code_of(err)
            if data.payment_method != PaymentMethod.WALLET and system is ExternalSystem.CFAST:
                await self._record(system, "add_one_off_article", error=reason)
            elif data.payment_method == PaymentMethod.CARD:
                await self._record(system, "charge", error=reason)
            refused = isinstance(err.cause, ApplicationError) and err.cause.non_retryable
            if refused and self.compensates_every_failure and code is ErrorCode.STRIPE_CONFLICT:
                refused = False  # the key's first request may have charged: resolved by the refund's search
            if refused:
                compensations.clear()  # declined: no money moved
                status = TopUpPaymentStatus.DECLINED if code in DECLINE_CODES else TopUpPaymentStatus.REFUSED
                await self._fail_before_charge(status, reason)
                return False
            # The outcome of the charge is unknown after every retry: only a human can tell.
            self.failure_reason = f"paiement : résultat inconnu ({reason})"
            await self.writes.flush()
            self.payment_decided = True
            await self._compensate(compensations, self.failure_reason)
            return False
        self.payment_reference = outcome.payment_reference
        await self._set(
            TopUpStatus.CHARGED,
            "Paiement accepté, provisionnement en cours",
            payment_status=outcome.payment_status,
            payment_reference=outcome.payment_reference,
            deployment_status=DeploymentStatus.IN_PROGRESS,
        )
        if not self.writes.batched:
            self.payment_decided = True  # runs started before STEP_WRITES_PATCH answered before the records
        if data.payment_method != PaymentMethod.WALLET:
            await self._record(
                system,
                "add_one_off_article" if data.payment_method == PaymentMethod.ACCOUNT else "charge",
                sent=outcome.sent,
                answer=outcome.answer,
                ids={"payment_reference": outcome.payment_reference},
            )
        await self._audit_money("topup.charge", payment_status=outcome.payment_status)
        await self.writes.flush()
        self.payment_decided = True
        await self._publish_payment(outcome.payment_status)
        return True

    async def _provision(self, targets: LineTargets, compensations: list[Compensation]) -> None:
        data = self.data
        # OCS: exactly this top-up's balance, check-and-skip so a retry never resets consumed data.
        self.mirror.progress(BusinessStatus.CREDITING, "Crédit du solde data (OCS)")
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
            credited: ExternalCallResult = await _call(names.OCS_CREDIT_DATA, credit, ExternalCallResult)
        except ActivityError as err:
            await self._record(ExternalSystem.OCS, "credit_data", sent=credit.model_dump(), error=reason_of(err))
            raise StepFailed("OCS", reason_of(err)) from err
        await self._record(
            ExternalSystem.OCS,
            "credit_data",
            sent=credited.sent,
            answer=credited.answer,
            ids={"balance_id": credited.object_id},
        )

        # SNAIC: the supplier's one-off option, completed asynchronously (callback, polling as fallback).
        self.mirror.progress(BusinessStatus.PROVISIONING_SUPPLIER, "Option ponctuelle chez le fournisseur (SNAIC)")
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
            accepted: SnaicOrderAccepted = await _call(names.SNAIC_ADD_ONE_OFF_OPTION, option, SnaicOrderAccepted)
        except ActivityError as err:
            await self._record(
                ExternalSystem.SNAIC, "add_one_off_option", sent=option.model_dump(), error=reason_of(err)
            )
            raise StepFailed("SNAIC", reason_of(err)) from err
        self.snaic_order_id = accepted.order_id
        await self._record(
            ExternalSystem.SNAIC,
            "add_one_off_option",
            sent=accepted.sent,
            answer=accepted.answer,
            ids={"order_id": accepted.order_id},
        )
        await self.writes.flush()  # the OCS credit and the SNAIC order are on record while the order runs
        result = await self._await_snaic_order(accepted.order_id)
        if result.status != SnaicOrderStatus.COMPLETED:
            reason = result.reason or result.status
            await self._record(ExternalSystem.SNAIC, "one_off_option_result", answer=result.model_dump(), error=reason)
            raise StepFailed("SNAIC", reason)
        await self._record(
            ExternalSystem.SNAIC, "one_off_option_result", answer=result.model_dump(), ids={"order_id": result.order_id}
        )

        # CFAST: the billed record of the option. Paid by card or wallet, it is recorded at 0 € so the
        # customer's invoice does not bill it a second time; on account the charge step already billed it.
        if data.payment_method != PaymentMethod.ACCOUNT:
            self.mirror.progress(BusinessStatus.BILLING, "Option ponctuelle dans CFAST")
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
                billed: ExternalCallResult = await _call(names.CFAST_ADD_ONE_OFF_ARTICLE, article, ExternalCallResult)
            except ActivityError as err:
                await self._record(
                    ExternalSystem.CFAST, "add_one_off_article", sent=article.model_dump(), error=reason_of(err)
                )
                raise StepFailed("CFAST", reason_of(err)) from err
            await self._record(
                ExternalSystem.CFAST,
                "add_one_off_article",
                sent=billed.sent,
                answer=billed.answer,
                ids={"article_line_id": billed.object_id},
            )

    async def _await_snaic_order(self, order_id: str) -> SnaicOrderUpdate:
        sla = timedelta(seconds=self.data.snaic_callback_sla_s)

        async def poll() -> SnaicOrderUpdate:
            try:
                polled: SnaicOrderUpdate = await _call(
                    names.SNAIC_GET_ORDER, SnaicOrderPoll(order_id=order_id), SnaicOrderUpdate
                )
            except ActivityError as err:
                if not self.compensates_every_failure or is_cancellation(err):
                    raise
                await self._record(ExternalSystem.SNAIC, "get_order", sent={"order_id": order_id}, error=reason_of(err))
                raise StepFailed("SNAIC", f"commande {order_id} illisible : {reason_of(err)}") from err
            return polled

        return await await_snaic_order(
            order_id,
            arrived=lambda: self.snaic_update,
            poll=poll,
            sla=sla,
            poll_every=max(sla / 5, timedelta(seconds=1)),
        )

    async def _complete(self) -> None:
        self.mirror.progress(BusinessStatus.RECORDING, "Transaction et reçu")
        await self.writes.receipt(self.facts.receipt())
        await self.writes.notice(self.facts.completed_notice())
        await self._set(TopUpStatus.COMPLETED, "Recharge terminée", deployment_status=DeploymentStatus.COMPLETED)
        await self.writes.flush()

    # --- compensations ----------------------------------------------------------------------

    async def _refund(self, targets: LineTargets) -> None:
        data = self.data
        key = f"{self._wf}:refund"
        if data.payment_method == PaymentMethod.ACCOUNT:
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
            name = (
                names.PAYMENT_REFUND_CARD if data.payment_method == PaymentMethod.CARD else names.LEDGER_REFUND_WALLET
            )
            try:
                refunded: RefundOutcome = await _call(
                    name,
                    request,
                    RefundOutcome,
                    retry=policies.REFUND_RETRY,
                    schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
                )
            except ActivityError as err:
                if data.payment_method == PaymentMethod.CARD:
                    await self._record(ExternalSystem.STRIPE, "refund", sent=request.model_dump(), error=reason_of(err))
                raise
            refund_reference = refunded.refund_reference
            if data.payment_method == PaymentMethod.CARD:
                await self._record(
                    ExternalSystem.STRIPE,
                    "refund",
                    sent=refunded.sent,
                    answer=refunded.answer,
                    ids={"refund": refunded.refund_reference},
                )
        await self._set(None, payment_status=TopUpPaymentStatus.REFUNDED, refund_reference=refund_reference)
        await self._audit_money("topup.refund", refund_reference=refund_reference)

    async def _remove_balance(self, targets: LineTargets) -> None:
        request = OcsRemoveRequest(
            account=targets.ocs_account, balance_id=balance_id(self.data.topup_id), request_id=f"{self._wf}:ocs-remove"
        )
        await _call(
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
        result: ExternalCallResult = await _call(
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
        result: ExternalCallResult = await _call(
            names.CFAST_CANCEL_ONE_OFF_ARTICLE,
            request,
            ExternalCallResult,
            retry=policies.REFUND_RETRY,
            schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
        )
        await self._record(
            ExternalSystem.CFAST, "cancel_one_off_article", sent=result.sent, answer=result.answer, attempt=f"-{step}"
        )

    async def _compensate(self, compensations: list[Compensation], reason: str) -> None:
        """Runs the registered compensations in reverse. A compensation that keeps failing leaves the
        top-up in needs_attention until staff resolve it (retry, or confirm a manual refund)."""
        self.failure_reason = reason
        self.payment_decided = True
        self.mirror.progress(BusinessStatus.COMPENSATING, f"Annulation : {reason}")
        registered = list(compensations)
        compensations.clear()
        refunded_manually = False

        async def ask_staff(failed: list[Compensation], errors: list[str]) -> StaffDecision:
            nonlocal refunded_manually
            self.attention_rounds += 1
            await self._set(
                TopUpStatus.NEEDS_ATTENTION,
                "Remboursement impossible : intervention requise",
                payment_status=TopUpPaymentStatus.REFUND_FAILED
                if any(n == "refund" for n, _ in failed)
                else self.payment_status,
                failure_reason=f"{reason} ; compensation en échec : {'; '.join(errors)}",
                deployment_status=DeploymentStatus.NEEDS_ATTENTION,
            )
            await self.writes.notice(self.facts.attention_notice())
            await self.writes.flush()
            await workflow.wait_condition(lambda: self.resolution is not None)
            resolution = self.resolution
            assert resolution is not None
            self.resolution = None
            if resolution.action != "refunded_manually":
                return "retry"
            refunded_manually = True
            await self._set(
                TopUpStatus.REFUNDED,
                "Remboursement manuel confirmé",
                payment_status=TopUpPaymentStatus.REFUNDED,
                resolution_note=f"{resolution.actor}: {resolution.note}",
                deployment_status=DeploymentStatus.FAILED,
            )
            await self._audit_money(
                "topup.refund_confirmed_manually", actor=resolution.actor, actor_kind="staff", note=resolution.note
            )
            await self.writes.flush()
            return "resolved_manually"

        await run_compensations(registered, ask_staff=ask_staff, shield=True)
        if refunded_manually:
            return
        charged = self.payment_status == TopUpPaymentStatus.REFUNDED
        final = TopUpStatus.REFUNDED if charged else TopUpStatus.FAILED
        await self._set(
            final,
            f"Recharge {'remboursée' if charged else 'échouée'} : {reason}",
            failure_reason=reason,
            deployment_status=DeploymentStatus.FAILED,
        )
        if charged:
            await self.writes.notice(self.facts.refunded_notice())
        await self.writes.flush()
