"""Integrator onboarding (`onboarding/{org}`, seed 002): from the contracts sent to GO, over weeks.

The workflow waits in each of the ten stages (`domain.onboarding_contracts.STAGES`) until a person or a payment
completes it. People act through Updates whose validators refuse a wrong stage or an invalid input before
anything is written; each accepted change is written to the `onboardings` row before the Update answers.
A stage that waits longer than `reminder_after_s` sends a reminder mail (to the integrator's contact for its
own steps, else to the platform staff), at most `max_reminders` times. Once the dossier is validated the
platform is created (one idempotent activity per step), and the platform set-up has `platform_sla_s` (2 weeks)
until staff confirm it configured and tested: past it, staff get an alert and the onboarding needs attention.

Cancellation (Update `cancel`) rolls back what was created: the organisation is disabled, card payments are
refunded per policy (the deposit while the platform is not created yet, the balance always: see
docs/decisions.md), transfers to give back are mailed to staff, the generic SIM cards go back to stock.
Keys come from the workflow id: `{wf}:{kind}:{attempt}` for a card charge, `{wf}:{kind}:refund`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from domain.enums import BusinessStatus, DossierItemStatus, OnboardingStatus, PaymentMethod
    from domain.errors import ErrorCode
    from domain.onboarding_contracts import (
        DOSSIER_ITEMS,
        INTEGRATOR_STAGES,
        MANUAL_STAGES,
        PAYMENT_STAGES,
        STAGE_LABELS_FR,
        STAGES,
        CancelRequest,
        CardCharge,
        CardPaymentRequest,
        CardRefund,
        DossierEntry,
        DossierItemCheck,
        DossierItemSubmission,
        DossierItemVerdict,
        DossierReview,
        HistoryEntry,
        MoneyOutcome,
        OnboardingInput,
        OnboardingMail,
        OnboardingProgress,
        OnboardingSnapshot,
        PaymentState,
        PlatformStep,
        PlatformStepResult,
        Rollback,
        StepCompletion,
        TransferRecord,
    )
    from domain.onboarding_contracts import onboarding_workflow_id as workflow_id
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS

__all__ = ["OnboardingWorkflow", "workflow_id"]

# The platform creation, in order: each step is one idempotent activity.
PLATFORM_STEPS = (
    names.ONBOARDING_CONFIGURE_ORGANISATION,
    names.ONBOARDING_IMPORT_CATALOGUE,
    names.ONBOARDING_STORE_BRANDING,
    names.ONBOARDING_INVITE_STAFF,
    names.ONBOARDING_DROP_FOLDERS,
    names.ONBOARDING_STOCK_SIMS,
)
# A platform step that keeps failing waits for staff (`retry_platform`) instead of retrying for ever.
PLATFORM_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)


def _reason(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)


def _refuse(message: str, code: ErrorCode) -> ApplicationError:
    return ApplicationError(message, type=code, non_retryable=True)


@workflow.defn
class OnboardingWorkflow:
    @workflow.init
    def __init__(self, data: OnboardingInput) -> None:
        self.data = data
        self.stage_index = 0
        self.status = OnboardingStatus.IN_PROGRESS
        self.stage_since = workflow.now()
        self.history: list[HistoryEntry] = []
        self.payments: dict[str, PaymentState] = {}
        self.dossier: dict[str, DossierEntry] = {}
        self.payment_attempts: dict[str, int] = {"deposit": 0, "balance": 0}
        self.paying = False
        self.last_payment_error: str | None = None
        self.needs_attention = False
        self.attention_reason: str | None = None
        self.platform_steps: list[str] = []
        self.platform_ready = False
        self.platform_retry = False
        self.cancel_request: CancelRequest | None = None
        self.rolled_back = False  # the cancelled state is written: the `cancel` Update may answer
        self.changes = 0  # counts recorded changes, so Updates wait for theirs

    # --- queries -------------------------------------------------------------------------------------

    @property
    def stage(self) -> str:
        return STAGES[min(self.stage_index, len(STAGES) - 1)]

    @workflow.query
    def progress(self) -> OnboardingProgress:
        return OnboardingProgress(
            onboarding_id=self.data.onboarding_id,
            org_id=self.data.org_id,
            workflow_id=workflow.info().workflow_id,
            status=self.status,
            stage=self.stage,
            stage_since=self.stage_since.isoformat(),
            needs_attention=self.needs_attention,
            attention_reason=self.attention_reason,
            history=list(self.history),
            payments=dict(self.payments),
            dossier=dict(self.dossier),
            missing_items=[item for item in DOSSIER_ITEMS if self._item_status(item) != DossierItemStatus.VALID],
            platform_steps=list(self.platform_steps),
            last_payment_error=self.last_payment_error,
        )

    def _item_status(self, item: str) -> str:
        entry = self.dossier.get(item)
        return entry.status if entry is not None else DossierItemStatus.MISSING

    # --- Updates -------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.status != OnboardingStatus.IN_PROGRESS or self.cancel_request is not None:
            raise _refuse(f"l'intégration est {self.status}", ErrorCode.ONBOARDING_CLOSED)

    def _require_stage(self, stage: str) -> None:
        self._require_open()
        if self.stage != stage:
            raise _refuse(
                f"étape en cours : « {STAGE_LABELS_FR[self.stage]} », pas « {STAGE_LABELS_FR.get(stage, stage)} »",
                ErrorCode.ONBOARDING_WRONG_STAGE,
            )

    @workflow.update
    async def complete_step(self, step: StepCompletion) -> OnboardingProgress:
        await self._complete(step.actor, step.note)
        return self.progress()

    @complete_step.validator
    def _validate_complete_step(self, step: StepCompletion) -> None:
        if step.stage not in MANUAL_STAGES:
            raise _refuse(f"l'étape {step.stage!r} ne se valide pas à la main", ErrorCode.ONBOARDING_NOT_MANUAL)
        self._require_stage(step.stage)
        if step.stage == "platform_created" and not self.platform_ready:
            raise _refuse("la création de la plateforme n'est pas terminée", ErrorCode.ONBOARDING_PLATFORM_NOT_READY)

    @workflow.update
    async def record_transfer(self, transfer: TransferRecord) -> OnboardingProgress:
        self.payments[transfer.kind] = PaymentState(
            method=PaymentMethod.TRANSFER, reference=transfer.reference, amount_minor=transfer.amount_minor
        )
        await self._complete(transfer.actor, f"virement {transfer.reference}")
        return self.progress()

    @record_transfer.validator
    def _validate_transfer(self, transfer: TransferRecord) -> None:
        self._validate_payment_kind(transfer.kind)
        expected = self._amount(transfer.kind)
        if transfer.amount_minor != expected:
            raise _refuse(
                f"montant attendu : {expected} (centimes), reçu {transfer.amount_minor}", ErrorCode.ONBOARDING_AMOUNT
            )
        if not transfer.reference.strip():
            raise _refuse("la référence du virement est obligatoire", ErrorCode.ONBOARDING_REFERENCE_REQUIRED)

    @workflow.update
    async def pay_by_card(self, request: CardPaymentRequest) -> OnboardingProgress:
        self.paying = True
        try:
            self.payment_attempts[request.kind] += 1
            attempt = self.payment_attempts[request.kind]
            amount = self._amount(request.kind)
            try:
                outcome: MoneyOutcome = await workflow.execute_activity(
                    names.ONBOARDING_CHARGE_CARD,
                    CardCharge(
                        onboarding_id=self.data.onboarding_id,
                        idempotency_key=f"{self._wf}:{request.kind}:{attempt}",
                        kind=request.kind,
                        card=request.card,
                        amount_minor=amount,
                        currency=self.data.currency,
                        email=self.data.contact_email,
                        name=self.data.org_name,
                    ),
                    result_type=MoneyOutcome,
                    start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                    retry_policy=policies.EXTERNAL_CALL_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
            except ActivityError as err:
                self.last_payment_error = _reason(err)
                self._log(
                    self.stage, "payment_failed", request.actor, f"tentative {attempt} : {self.last_payment_error}"
                )
                await self._record()
                return self.progress()
            self.last_payment_error = None
            self.payments[request.kind] = PaymentState(
                method=PaymentMethod.CARD, reference=outcome.reference, amount_minor=amount
            )
            await self._complete(request.actor, f"carte, paiement {outcome.reference}")
            return self.progress()
        finally:
            self.paying = False

    @pay_by_card.validator
    def _validate_card(self, request: CardPaymentRequest) -> None:
        self._validate_payment_kind(request.kind)
        if not request.card.strip():
            raise _refuse("la carte est obligatoire", ErrorCode.ONBOARDING_CARD_REQUIRED)

    def _validate_payment_kind(self, kind: str) -> None:
        if kind not in PAYMENT_STAGES:
            raise _refuse(f"paiement inconnu : {kind!r} (deposit ou balance)", ErrorCode.ONBOARDING_PAYMENT_KIND)
        self._require_stage(PAYMENT_STAGES[kind])
        if self.paying:
            raise _refuse("un paiement est déjà en cours", ErrorCode.ONBOARDING_PAYMENT_IN_PROGRESS)

    def _amount(self, kind: str) -> int:
        return self.data.deposit_minor if kind == "deposit" else self.data.balance_minor

    @workflow.update
    async def submit_dossier_item(self, submission: DossierItemSubmission) -> DossierItemVerdict:
        verdict: DossierItemVerdict = await self._db(
            names.ONBOARDING_CHECK_ITEM,
            DossierItemCheck(
                onboarding_id=self.data.onboarding_id, item=submission.item, document_id=submission.document_id
            ),
            DossierItemVerdict,
        )
        at = workflow.now().isoformat()
        if verdict.valid:
            self.dossier[submission.item] = DossierEntry(
                status=DossierItemStatus.VALID, filename=verdict.filename, document_id=submission.document_id, at=at
            )
        elif self._item_status(submission.item) != DossierItemStatus.VALID:
            # A valid earlier upload is kept: the invalid one only reports its errors.
            self.dossier[submission.item] = DossierEntry(
                status=DossierItemStatus.INVALID,
                filename=verdict.filename,
                document_id=submission.document_id,
                errors=verdict.errors,
                at=at,
            )
        if self.stage == "dossier_submitted" and self._dossier_complete():
            await self._complete(submission.actor, "dossier complet")
        else:
            await self._record()
        return verdict

    @submit_dossier_item.validator
    def _validate_item(self, submission: DossierItemSubmission) -> None:
        self._require_open()
        if submission.item not in DOSSIER_ITEMS:
            raise _refuse(f"élément de dossier inconnu : {submission.item!r}", ErrorCode.ONBOARDING_UNKNOWN_ITEM)
        if self.stage_index > STAGES.index("dossier_submitted"):
            raise _refuse("le dossier technique est déjà remis", ErrorCode.ONBOARDING_WRONG_STAGE)
        if not submission.document_id:
            raise _refuse("document manquant", ErrorCode.ONBOARDING_DOCUMENT_REQUIRED)

    def _dossier_complete(self) -> bool:
        return all(self._item_status(item) == DossierItemStatus.VALID for item in DOSSIER_ITEMS)

    @workflow.update
    async def review_dossier(self, review: DossierReview) -> OnboardingProgress:
        if review.approved:
            await self._complete(review.actor, review.note)
            return self.progress()
        at = workflow.now().isoformat()
        for item in review.rejected_items:
            previous = self.dossier.get(item, DossierEntry(status=DossierItemStatus.MISSING))
            self.dossier[item] = DossierEntry(
                status=DossierItemStatus.REJECTED,
                filename=previous.filename,
                document_id=previous.document_id,
                errors=[review.note],
                at=at,
            )
        self._log(self.stage, "reopened", review.actor, f"{', '.join(review.rejected_items)} : {review.note}")
        self._enter(STAGES.index("dossier_submitted"))
        await self._record()
        return self.progress()

    @review_dossier.validator
    def _validate_review(self, review: DossierReview) -> None:
        self._require_stage("dossier_validated")
        if not review.approved:
            if not review.rejected_items:
                raise _refuse("indiquez les éléments refusés", ErrorCode.ONBOARDING_REJECTED_ITEMS_REQUIRED)
            unknown = [item for item in review.rejected_items if item not in DOSSIER_ITEMS]
            if unknown:
                raise _refuse(f"éléments inconnus : {', '.join(unknown)}", ErrorCode.ONBOARDING_UNKNOWN_ITEM)
            if not review.note.strip():
                raise _refuse("le motif du refus est obligatoire", ErrorCode.ONBOARDING_NOTE_REQUIRED)

    @workflow.update
    async def retry_platform(self, actor: str) -> OnboardingProgress:
        self.platform_retry = True
        self._log(self.stage, "retry", actor)
        await workflow.wait_condition(lambda: not self.platform_retry)
        return self.progress()

    @retry_platform.validator
    def _validate_retry(self, actor: str) -> None:
        self._require_stage("platform_created")
        if self.platform_ready or not self.needs_attention:
            raise _refuse("la création de la plateforme n'attend pas de relance", ErrorCode.ONBOARDING_NOTHING_TO_RETRY)

    @workflow.update
    async def cancel(self, request: CancelRequest) -> OnboardingProgress:
        self.cancel_request = request
        await workflow.wait_condition(lambda: self.rolled_back)
        return self.progress()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._require_open()
        if self.paying:
            raise _refuse("un paiement est en cours : annulez après sa fin", ErrorCode.ONBOARDING_PAYMENT_IN_PROGRESS)
        if not request.reason.strip():
            raise _refuse("le motif de l'annulation est obligatoire", ErrorCode.ONBOARDING_REASON_REQUIRED)

    # --- helpers -------------------------------------------------------------------------------------

    @property
    def _wf(self) -> str:
        return workflow.info().workflow_id

    async def _db(self, name: str, arg: Any, result_type: type[Any] | None = None) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    def _log(self, stage: str, event: str, by: str, note: str = "") -> None:
        self.history.append(HistoryEntry(stage=stage, event=event, at=workflow.now().isoformat(), by=by, note=note))

    def _enter(self, index: int) -> None:
        self.stage_index = index
        self.stage_since = workflow.now()
        workflow.set_current_details(f"Étape {index + 1}/10 : {STAGE_LABELS_FR[self.stage]}")

    async def _complete(self, by: str, note: str) -> None:
        """Completes the current stage and enters the next one (the dossier stage passes by itself when the
        dossier is already complete)."""
        self._log(self.stage, "completed", by, note)
        if self.stage_index == len(STAGES) - 1:
            self.status = OnboardingStatus.COMPLETED
            self.stage_index = len(STAGES)
        else:
            self._enter(self.stage_index + 1)
            if self.stage == "dossier_submitted" and self._dossier_complete():
                self._log(self.stage, "completed", "system", "dossier déjà complet")
                self._enter(self.stage_index + 1)
        await self._record()

    async def _record(self) -> None:
        status = (
            BusinessStatus.NEEDS_ATTENTION
            if self.needs_attention and self.status == OnboardingStatus.IN_PROGRESS
            else self.status
        )
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        self.changes += 1
        await self._db(names.ONBOARDING_RECORD, OnboardingSnapshot(progress=self.progress()))

    async def _mail(self, key: str, *, to_staff: bool, subject: str, body: str) -> None:
        await self._db(
            names.ONBOARDING_MAIL,
            OnboardingMail(
                reference=f"{self._wf}:{key}",
                org_id=self.data.org_id,
                to_staff=to_staff,
                recipient="" if to_staff else self.data.contact_email,
                subject=subject,
                body=body,
            ),
        )

    def _flag(self, reason: str) -> None:
        self.needs_attention = True
        self.attention_reason = reason

    def _unflag(self) -> None:
        self.needs_attention = False
        self.attention_reason = None

    # --- the process ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: OnboardingInput) -> OnboardingProgress:
        workflow.set_current_details(f"Étape 1/10 : {STAGE_LABELS_FR[self.stage]}")
        await self._record()
        while self.status == OnboardingStatus.IN_PROGRESS and self.cancel_request is None:
            stage_index = self.stage_index
            if self.stage == "platform_created" and not self.platform_ready:
                await self._create_platform()
                continue
            await self._wait_in_stage(stage_index)
        if self.cancel_request is not None and self.status == OnboardingStatus.IN_PROGRESS:
            await self._roll_back(self.cancel_request)
        # The Update that completed the last stage (or cancelled) answers before the workflow closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    async def _wait_in_stage(self, stage_index: int) -> None:
        """Waits until the stage is left (or the onboarding cancelled), sending the reminders and, on the
        platform stage, the SLA alert when their time comes."""
        stage = STAGES[stage_index]
        entered = self.stage_since
        reminders = 0
        sla_at: datetime | None = None
        if stage == "platform_created":
            sla_at = self._platform_sla_at
        while (
            self.stage_index == stage_index
            and self.status == OnboardingStatus.IN_PROGRESS
            and self.cancel_request is None
        ):
            due: list[datetime] = []
            if reminders < self.data.max_reminders:
                due.append(entered + timedelta(seconds=self.data.reminder_after_s * (reminders + 1)))
            if sla_at is not None and not self._sla_breached:
                due.append(sla_at)
            timeout = max(min(due) - workflow.now(), timedelta(seconds=1)) if due else None
            try:
                await workflow.wait_condition(
                    lambda: self.stage_index != stage_index or self.cancel_request is not None, timeout=timeout
                )
            except TimeoutError:
                now = workflow.now()
                if sla_at is not None and not self._sla_breached and now >= sla_at:
                    await self._sla_breach()
                if reminders < self.data.max_reminders and now >= entered + timedelta(
                    seconds=self.data.reminder_after_s * (reminders + 1)
                ):
                    reminders += 1
                    await self._remind(stage, reminders)

    @property
    def _platform_sla_at(self) -> datetime:
        validated = next(
            (e for e in reversed(self.history) if e.stage == "dossier_validated" and e.event == "completed"), None
        )
        start = datetime.fromisoformat(validated.at) if validated is not None else self.stage_since
        return start + timedelta(seconds=self.data.platform_sla_s)

    @property
    def _sla_breached(self) -> bool:
        return any(e.event == "sla_breached" for e in self.history)

    async def _remind(self, stage: str, number: int) -> None:
        to_integrator = stage in INTEGRATOR_STAGES
        label = STAGE_LABELS_FR[stage]
        waiting_days = (workflow.now() - self.stage_since).days
        self._log(stage, "reminder", "system", f"relance {number} ({'intégrateur' if to_integrator else 'équipe'})")
        await self._mail(
            f"reminder:{stage}:{self.stage_since.isoformat()}:{number}",
            to_staff=not to_integrator,
            subject=f"Intégration {self.data.org_name} : « {label} » en attente",
            body=(
                f"Bonjour,\n\nL'étape « {label} » de l'intégration de {self.data.org_name} attend depuis "
                f"{waiting_days} jour(s).\n"
                + (
                    f"Éléments du dossier manquants : {', '.join(self.progress().missing_items)}\n"
                    if stage == "dossier_submitted"
                    else ""
                )
                + "\nCordialement,\nL'équipe plateforme\n"
            ),
        )
        await self._record()

    async def _sla_breach(self) -> None:
        days = self.data.platform_sla_s // 86400
        reason = f"délai de création de la plateforme ({days} jours) dépassé"
        self._log("platform_created", "sla_breached", "system", reason)
        self._flag(reason)
        await self._mail(
            "sla:platform_created",
            to_staff=True,
            subject=f"SLA dépassé : plateforme de {self.data.org_name}",
            body=(
                f"La plateforme de {self.data.org_name} n'est pas livrée {days} jours après la validation du "
                "dossier technique. Terminez le paramétrage et les tests, puis validez l'étape.\n"
            ),
        )
        await self._record()

    async def _create_platform(self) -> None:
        """Runs the creation steps not done yet; a step that keeps failing flags the onboarding and waits for
        staff to retry it (or for a cancellation)."""
        step_input = PlatformStep(
            onboarding_id=self.data.onboarding_id,
            org_id=self.data.org_id,
            org_slug=self.data.org_slug,
            dossier=dict(self.dossier),
            sim_batch_size=self.data.sim_batch_size,
        )
        for step in PLATFORM_STEPS:
            if step in self.platform_steps:
                continue
            if self.cancel_request is not None:
                return
            try:
                await workflow.execute_activity(
                    step,
                    step_input,
                    result_type=PlatformStepResult,
                    start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                    retry_policy=PLATFORM_STEP_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
            except ActivityError as err:
                self._flag(f"création de la plateforme, {step} : {_reason(err)}")
                self._log(self.stage, "step_failed", "system", self.attention_reason or "")
                await self._record()
                await workflow.wait_condition(lambda: self.platform_retry or self.cancel_request is not None)
                self.platform_retry = False
                if self.cancel_request is None:
                    self._unflag()
                    await self._record()
                return
            self.platform_steps.append(step)
            await self._record()
        self.platform_ready = True
        self._log(self.stage, "platform_ready", "system", "organisation, catalogue, accès, dossiers FTP, cartes SIM")
        await self._record()

    async def _roll_back(self, request: CancelRequest) -> None:
        """Undoes what the onboarding created, each step idempotent; refunds follow the policy of
        docs/decisions.md (deposit before the platform is created, balance always)."""
        self._log(self.stage, "cancelled", request.actor, request.reason)
        rollback = Rollback(onboarding_id=self.data.onboarding_id, org_id=self.data.org_id, reason=request.reason)
        platform_started = self.stage_index >= STAGES.index("platform_created")
        refundable = ["balance"] if platform_started else ["deposit", "balance"]
        to_give_back: list[str] = []
        for kind in refundable:
            payment = self.payments.get(kind)
            if payment is None or payment.refund_reference:
                continue
            if payment.method == PaymentMethod.TRANSFER:
                to_give_back.append(f"{kind} : virement {payment.reference}, {payment.amount_minor} centimes")
                continue
            refund: MoneyOutcome = await workflow.execute_activity(
                names.ONBOARDING_REFUND_CARD,
                CardRefund(
                    onboarding_id=self.data.onboarding_id,
                    idempotency_key=f"{self._wf}:{kind}:refund",
                    payment_reference=payment.reference,
                    amount_minor=payment.amount_minor,
                ),
                result_type=MoneyOutcome,
                start_to_close_timeout=policies.COMPENSATION_TIMEOUT,
                retry_policy=policies.COMPENSATION_RETRY,
            )
            self.payments[kind] = payment.model_copy(update={"refund_reference": refund.reference})
            self._log(self.stage, "rollback", "system", f"{kind} remboursé : {refund.reference}")
        if to_give_back:
            await self._mail(
                "cancel:transfers",
                to_staff=True,
                subject=f"Intégration {self.data.org_name} annulée : virements à rembourser",
                body="Rembourser par virement :\n" + "\n".join(to_give_back) + "\n",
            )
            self._log(self.stage, "rollback", "system", "virements à rembourser signalés à l'équipe")
        if names.ONBOARDING_STOCK_SIMS in self.platform_steps or platform_started:
            await self._compensate(names.ONBOARDING_RETURN_SIMS, rollback)
            self._log(self.stage, "rollback", "system", "cartes SIM génériques remises en stock")
        await self._compensate(names.ONBOARDING_DISABLE_ORGANISATION, rollback)
        self._log(self.stage, "rollback", "system", "organisation désactivée")
        self.status = OnboardingStatus.CANCELLED
        self._unflag()
        await self._record()
        self.rolled_back = True

    async def _compensate(self, name: str, arg: Any) -> None:
        await workflow.execute_activity(
            name,
            arg,
            start_to_close_timeout=policies.COMPENSATION_TIMEOUT,
            retry_policy=policies.COMPENSATION_RETRY,
        )
