"""The subscription of a line (`subscription/{org}/{line}`): an entity workflow that renews the service each
period, reminds prepaid customers before expiry, and duns a failed renewal.

One run is one period: it waits for the period's end (sending the 10- and 5-day reminders of a prepaid
plan on the way), renews (charge → OCS allowance of the new period → transaction and expiry), then
continues as new with the next period. `renew_now` renews ahead of time; `off` lets the service expire at
its end date, `prompt` too unless the customer renews by action. A failed renewal goes through the
organisation's dunning stages: retries, a second attempt, suspension (line operation), termination
(deprovisioning); a payment before termination recovers the line.

A renewal charged but not granted is refunded. With patch `renewal-refund-waits-for-staff` a refund that
fails for good (its retries exhausted, or refused) does not let the subscription go on as if nothing was
owed back: the workflow publishes BusinessStatus `needs_attention`, writes the reason on the subscription
(`last_failure`) and waits, as a line workflow whose compensation failed does, for staff's
`resolve_compensation` Update (`retry` the refund, or `resolved_manually`); `attention_state` says why and
since when (the portal home's needs-attention queue reads both).

Keys: the charge of period n is `{wf}:period-{n}:charge` (a retry after a decline adds `:retry-k`), the
allowance is the OCS balance `plan-{plan}-period-{n}`, the transaction's reference is the charge key.

A pool's subscription (`subscription/{org}/pool-{pool}`, patch `pool-subscriptions`) is the same workflow:
each renewal quotes the pool as it stands (static: the plan's price and data; dynamic: per member active at
renewal time) and grants the pool's OCS account. It has no line of its own: with patch
`pool-dunning-reaches-members` its dunning reaches the pool's member lines instead — the suspension stage
suspends every active member (line operation, as a line's dunning does), a payment before termination
resumes the members it suspended (then re-grants the pool), termination deprovisions every member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ChildWorkflowHandle

with workflow.unsafe.imports_passed_through():
    from domain.enums import AutoRenewMode, BusinessStatus, DunningStage, SubscriptionStatus
    from domain.errors import ErrorCode
    from domain.lifecycle_contracts import (
        AttentionState,
        DeprovisioningInput,
        LineOperationInput,
        OcsAccountRequest,
        OcsGrant,
        ResolveCompensation,
    )
    from domain.pools import pool_owner_id
    from domain.renewal_calendar import RenewalCalendar
    from domain.security_contracts import EmitEventInput
    from domain.subscription_contracts import (
        LoadSubscription,
        PlanQuote,
        PoolMember,
        PoolMembers,
        PoolMembersQuery,
        PoolQuote,
        QuotePlan,
        QuotePool,
        RecordRenewal,
        RenewalCharge,
        RenewalPaid,
        RenewalRefund,
        RenewOutcome,
        SubscriptionChange,
        SubscriptionInput,
        SubscriptionNotice,
        SubscriptionResult,
        SubscriptionState,
        SubscriptionTerms,
        charge_key,
        period_balance_id,
    )
    from workflows import _policies as policies
    from workflows import _saga as saga
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS

AUTO_RENEW_MODES = ("prompt", "on", "off")
ENDED_LINE_STATUSES = ("terminated", "obsolete")
# What makes a charge fail for good (the payer must act): dunning, not a workflow failure.
PAYMENT_REFUSALS = frozenset(
    {
        ErrorCode.PAYMENT_DECLINED,
        ErrorCode.PAYMENT_NO_SAVED_CARD,
        ErrorCode.WALLET_INSUFFICIENT_FUNDS,
        ErrorCode.WALLET_NOT_FOUND,
        ErrorCode.WALLET_CURRENCY_MISMATCH,
        ErrorCode.CFAST_REJECTED,
    }
)
NOTICE_EVENT = "rule.sim_card.date.triggered"
PLAN_BALANCE_WEIGHT = 20.0  # the plan allowance before top-ups expiring the same day (SPEC §8)
POOL_PATCH = "pool-subscriptions"
# A pool's dunning suspends, resumes and terminates its member lines (runs before it touched none).
POOL_MEMBERS_PATCH = "pool-dunning-reaches-members"
# The members a pool's dunning suspends (active ones) and terminates (any not terminated yet).
SUSPENDABLE_MEMBER_STATUSES = ["active"]
TERMINABLE_MEMBER_STATUSES = ["active", "suspended", "inactive"]
# A renewal refund that fails for good waits for staff (runs before it went on, the refund left undone).
REFUND_WAITS_PATCH = "renewal-refund-waits-for-staff"
# A pool's renewal whose member resumptions partly fail suspends again the members it resumed (runs before it
# left them in service while the pool stayed unpaid).
RESUME_ALL_OR_NONE_PATCH = "pool-resume-all-or-none"
COMPENSATION_ACTIONS = ("retry", "resolved_manually")


def member_operation(operation: str, key: str) -> str:
    """The end of the workflow id of a line operation a pool's dunning runs on one member."""
    return f"{operation}-subscription-{key}"


def at_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@workflow.defn
class SubscriptionWorkflow:
    def __init__(self) -> None:
        self._terms: SubscriptionTerms | None = None
        self._period = 0
        self._status: str = BusinessStatus.STARTING
        self._renew_requests = 0
        self._outcome: RenewOutcome | None = None
        self._renewing_key = ""
        self._cancel_requested = False
        self._line_ended = False
        self._attempts = 0
        # A pool's members its dunning suspended (to resume on payment); None: not known in this run.
        self._suspended_members: list[PoolMember] | None = None
        # A refund that failed for good, waiting for staff (`resolve_compensation`).
        self._attention: str | None = None
        self._attention_since: datetime | None = None
        self._compensation_answer: ResolveCompensation | None = None

    # --- queries and updates ---------------------------------------------------------------------

    @workflow.query
    def business_status(self) -> str:
        return self._status

    @workflow.query
    def period(self) -> int:
        return self._period

    @workflow.query
    def attention_state(self) -> AttentionState:
        """Why the subscription waits for staff, and since when (none while it does not)."""
        return AttentionState(status=self._status, attention=self._attention, since=self._attention_since)

    @workflow.update
    def resolve_compensation(self, answer: ResolveCompensation) -> str:
        """Staff answer a renewal refund that failed for good: `retry` it, or `resolved_manually` (refunded
        by hand)."""
        self._compensation_answer = answer
        return answer.action

    @resolve_compensation.validator
    def _validate_resolve_compensation(self, answer: ResolveCompensation) -> None:
        if self._attention is None:
            raise ApplicationError(
                f"no compensation waits for staff ({self._status})", type=ErrorCode.RESOLUTION_NOT_AWAITED
            )
        if answer.action not in COMPENSATION_ACTIONS:
            raise ApplicationError(f"unknown action {answer.action!r}", type=ErrorCode.RESOLUTION_UNKNOWN_ACTION)

    @workflow.update
    async def renew_now(self, paying_period: int = 0, request_key: str = "") -> RenewOutcome:
        """Pays the next period now. `paying_period` (the period the request was recorded for, 0: none) makes
        a replayed request that arrives once its period is paid answer that period instead of paying the next.
        The same request sent twice (`request_key`, a double click) joins the renewal in flight and gets its
        outcome."""
        if paying_period and self._period >= paying_period:
            return RenewOutcome(renewed=True, period=paying_period)
        if not self._joins_renewal(request_key):
            self._outcome = None
            self._renewing_key = request_key
            self._renew_requests += 1
        await workflow.wait_condition(lambda: self._outcome is not None)
        assert self._outcome is not None
        return self._outcome

    @renew_now.validator
    def _validate_renew_now(self, paying_period: int = 0, request_key: str = "") -> None:
        if paying_period and self._period >= paying_period:
            return
        self._refuse_when_over()
        if self._renew_requests and not self._joins_renewal(request_key):
            raise ApplicationError("un renouvellement est déjà en cours", type="subscription.renewal_in_progress")

    def _joins_renewal(self, request_key: str) -> bool:
        return (
            bool(request_key)
            and self._renew_requests > 0
            and self._outcome is None
            and request_key == self._renewing_key
        )

    @workflow.update
    async def set_auto_renew(self, mode: str) -> str:
        terms = self._require_terms()
        await self._change(auto_renew_mode=mode)
        self._terms = terms.model_copy(update={"auto_renew_mode": mode})
        return mode

    @set_auto_renew.validator
    def _validate_set_auto_renew(self, mode: str) -> None:
        self._refuse_when_over()
        if mode not in AUTO_RENEW_MODES:
            raise ApplicationError(
                f"auto_renew_mode : valeur inconnue, attendu : {', '.join(AUTO_RENEW_MODES)}",
                type="subscription.invalid_mode",
            )

    @workflow.update
    async def change_plan(self, plan_id: str) -> str:
        """A plan that prorates applies now (line operation, and the difference for the rest of the period);
        another applies from the next renewal."""
        terms = self._require_terms()
        quote = await self._quote(plan_id)
        if not quote.prorated:
            await self._change(next_plan_id=plan_id)
            self._terms = terms.model_copy(update={"next_plan_id": plan_id})
            return "next_renewal"
        wf_id = workflow.info().workflow_id
        await workflow.execute_child_workflow(
            "LineOperationWorkflow",
            LineOperationInput(
                org_id=terms.org_id,
                company_id=terms.company_id,
                line_id=terms.line_id,
                operation="change_plan",
                plan_id=plan_id,
                requested_by=wf_id,
            ),
            id=f"line-op/{terms.org_id}/{terms.line_id}/change_plan-subscription-period-{self._period}-{plan_id}",
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        calendar = RenewalCalendar(anchor=terms.anchor_on, validity_days=terms.validity_days)
        today = workflow.now().date()
        difference = calendar.prorated_minor(self._period, today, terms.price_minor, quote.price_minor)
        if difference > 0:
            key = f"{wf_id}:period-{self._period}:plan-{plan_id}:charge"
            paid = await self._charge(terms, key, difference, f"Changement de forfait vers {quote.plan_name} (prorata)")
            await saga.local_step(
                names.SUBSCRIPTION_RECORD_RENEWAL,
                RecordRenewal(
                    subscription_id=terms.subscription_id,
                    period=self._period,
                    plan_id=plan_id,
                    next_renewal_on=calendar.period_end(self._period),
                    transaction_reference=key,
                    description=f"Changement de forfait vers {quote.plan_name} (prorata)",
                    amount_minor=difference,
                    currency=quote.currency,
                    method=paid.method,
                    payment_reference=paid.payment_reference,
                ),
            )
        else:
            await self._change(plan_id=plan_id)
        self._terms = terms.model_copy(
            update={"plan_id": plan_id, "plan_name": quote.plan_name, "price_minor": quote.price_minor}
        )
        return "now"

    @change_plan.validator
    def _validate_change_plan(self, plan_id: str) -> None:
        self._refuse_when_over()
        if self._terms is not None and self._terms.pool_id:
            raise ApplicationError("changement de forfait d'un pool non pris en charge", type="subscription.pool")
        if not plan_id.strip():
            raise ApplicationError("plan_id : obligatoire", type="subscription.invalid_plan")
        if self._status in (SubscriptionStatus.DUNNING, SubscriptionStatus.SUSPENDED):
            raise ApplicationError("changement de forfait impossible pendant un impayé", type="subscription.in_dunning")

    @workflow.update
    async def cancel(self) -> str:
        self._cancel_requested = True
        await self._change(status=SubscriptionStatus.CANCELLED)
        self._set_status(SubscriptionStatus.CANCELLED)
        return "cancelled"

    @cancel.validator
    def _validate_cancel(self) -> None:
        self._refuse_when_over()
        if self._attention is not None:
            raise ApplicationError(
                "un remboursement du renouvellement attend une intervention", type="subscription.needs_attention"
            )

    @workflow.signal
    def line_ended(self) -> None:
        """The line was terminated: the subscription ends without charging again."""
        self._line_ended = True

    def _refuse_when_over(self) -> None:
        if self._terms is None:
            raise ApplicationError("abonnement en cours d'ouverture", type="subscription.starting")
        if self._status in (SubscriptionStatus.ENDED, SubscriptionStatus.CANCELLED) or self._line_ended:
            raise ApplicationError("abonnement terminé ou résilié", type="subscription.ended")

    def _require_terms(self) -> SubscriptionTerms:
        assert self._terms is not None  # validators refuse updates before the terms are loaded
        return self._terms

    def _owned_by_pool(self) -> bool:
        """A pool's subscription: no line of its own (nothing to suspend, resume or terminate)."""
        return self._terms is not None and self._terms.pool_id is not None and workflow.patched(POOL_PATCH)

    async def _change(self, **fields: object) -> None:
        terms = self._require_terms()
        change = SubscriptionChange.model_validate({"subscription_id": terms.subscription_id, **fields})
        await saga.local_step(names.SUBSCRIPTION_CHANGE, change)

    async def _quote(self, plan_id: str) -> PlanQuote:
        terms = self._require_terms()
        return await saga.local_step(
            names.SUBSCRIPTION_QUOTE_PLAN, QuotePlan(subscription_id=terms.subscription_id, plan_id=plan_id), PlanQuote
        )

    def _set_status(self, status: str) -> None:
        self._status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])

    # --- the period ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: SubscriptionInput) -> SubscriptionResult:
        state = data.state or SubscriptionState()
        wf_id = workflow.info().workflow_id
        terms = await saga.local_step(
            names.SUBSCRIPTION_LOAD,
            LoadSubscription(
                org_id=data.org_id,
                line_id=data.line_id,
                workflow_id=wf_id,
                today=workflow.now().date(),
                pool_id=data.pool_id,
            ),
            SubscriptionTerms,
        )
        self._terms, self._period = terms, terms.period
        if state.period == terms.period:
            self._attempts = state.attempts
        if terms.line_status in ENDED_LINE_STATUSES or terms.status == SubscriptionStatus.ENDED:
            return await self._end("line_ended" if terms.status != SubscriptionStatus.ENDED else "ended")
        self._set_status(terms.status)
        if terms.status == SubscriptionStatus.CANCELLED:
            self._cancel_requested = True
        calendar = RenewalCalendar(anchor=terms.anchor_on, validity_days=terms.validity_days)
        expiry = at_midnight(calendar.period_end(self._period))
        reminders = list(state.reminders_sent)

        if terms.status in (SubscriptionStatus.DUNNING, SubscriptionStatus.SUSPENDED):
            return await self._dun(data, calendar)
        if terms.plan_type == "prepaid" or terms.auto_renew_mode == AutoRenewMode.PROMPT:
            for days, day in calendar.reminder_dates(self._period):
                if days in reminders or at_midnight(day) < workflow.now() - timedelta(days=1):
                    continue
                if await self._wait_until(at_midnight(day)):
                    break
                await self._notify_reminder(days, calendar.period_end(self._period))
                reminders.append(days)
        if not await self._wait_until(expiry):
            # The period is over without a renewal asked for.
            if self._line_ended:
                return await self._end("line_ended")
            terms = self._require_terms()
            if self._cancel_requested or terms.auto_renew_mode != AutoRenewMode.ON:
                await self._notice("expired", "Votre forfait a expiré", "Votre forfait est arrivé à échéance.")
                return await self._end("expired")
            self._renew_requests += 1  # the automatic renewal
            automatic = True
        else:
            automatic = False
        if self._line_ended:
            return await self._end("line_ended")
        outcome = await self._renew_next()
        if outcome.renewed:
            return await self._continue(data, reminders=[])
        if not automatic:
            # `renew_now` was refused ahead of expiry: the period goes on, nothing else changes.
            return await self._continue(data, reminders=reminders, same_period=True)
        return await self._dun(data, calendar)

    async def _wait_until(self, when: datetime, *, wake_on_cancel: bool = False) -> bool:
        """Sleeps until `when`; True as soon as a renewal is asked for (or the line ended, or the
        subscription is cancelled when `wake_on_cancel`) before it."""

        def woken() -> bool:
            return self._renew_requests > 0 or self._line_ended or (wake_on_cancel and self._cancel_requested)

        remaining = when - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(woken, timeout=remaining)
            except TimeoutError:
                return False
        return woken()

    async def _continue(
        self, data: SubscriptionInput, *, reminders: list[int], same_period: bool = False
    ) -> SubscriptionResult:
        await workflow.wait_condition(workflow.all_handlers_finished)
        state = SubscriptionState(
            period=self._period, reminders_sent=reminders, attempts=self._attempts if same_period else 0
        )
        workflow.continue_as_new(data.model_copy(update={"state": state}))

    async def _end(self, reason: str) -> SubscriptionResult:
        await self._change(status=SubscriptionStatus.ENDED, ended=True, failure=reason)
        self._set_status(SubscriptionStatus.ENDED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SubscriptionResult(status=SubscriptionStatus.ENDED, period=self._period, reason=reason)

    # --- renewal ---------------------------------------------------------------------------------

    async def _charge(self, terms: SubscriptionTerms, key: str, amount_minor: int, description: str) -> RenewalPaid:
        return await saga.call(
            names.SUBSCRIPTION_CHARGE,
            RenewalCharge(
                subscription_id=terms.subscription_id,
                period=self._period + 1,
                idempotency_key=key,
                amount_minor=amount_minor,
                currency=terms.currency,
                method=terms.payment_method,
                description=description,
            ),
            RenewalPaid,
            retry=policies.CHARGE_RETRY,
            schedule_to_close=policies.RENEWAL_CHARGE_WINDOW,
        )

    async def _renew_next(self) -> RenewOutcome:
        """Renews the next period: charge → allowance → resume if suspended → record. Answers `renew_now`."""
        terms = self._require_terms()
        wf_id = workflow.info().workflow_id
        period = self._period + 1
        calendar = RenewalCalendar(anchor=terms.anchor_on, validity_days=terms.validity_days)
        plan_id = terms.next_plan_id or terms.plan_id
        price, plan_name, data_bytes = terms.price_minor, terms.plan_name, terms.data_bytes
        if terms.next_plan_id:
            quote = await saga.local_step(
                names.SUBSCRIPTION_QUOTE_PLAN,
                QuotePlan(subscription_id=terms.subscription_id, plan_id=plan_id),
                PlanQuote,
            )
            price, plan_name, data_bytes = quote.price_minor, quote.plan_name, quote.data_bytes
        description = f"Renouvellement {plan_name} — période {period}"
        if self._owned_by_pool():
            # The pool as it stands at renewal time: a member added during the period counts from now.
            pool = await saga.local_step(
                names.SUBSCRIPTION_QUOTE_POOL, QuotePool(subscription_id=terms.subscription_id), PoolQuote
            )
            price, data_bytes = pool.amount_minor, pool.data_bytes
            description = f"{description} — {pool.members} SIM"
        first_key, key = charge_key(wf_id, period), charge_key(wf_id, period, self._attempts)
        try:
            paid = await self._charge(terms, key, price, description)
        except ActivityError as err:
            if saga.error_code_of(err) not in PAYMENT_REFUSALS:
                raise
            self._attempts += 1
            return self._answer(RenewOutcome(renewed=False, period=self._period, reason=saga.reason_of(err)))
        refund = RenewalRefund(
            subscription_id=terms.subscription_id,
            charge_key=key,
            idempotency_key=f"{key}:refund",
            method=paid.method,
            payment_reference=paid.payment_reference,
            amount_minor=price,
            currency=terms.currency,
        )
        compensations: list[saga.Compensation] = [
            ("refund", lambda: saga.compensating(names.SUBSCRIPTION_REFUND, refund))
        ]
        try:
            if self._status == SubscriptionStatus.SUSPENDED and not self._owned_by_pool():
                await self._line_operation(terms, "resume", f"period-{period}")
            elif self._status == SubscriptionStatus.SUSPENDED and workflow.patched(POOL_MEMBERS_PATCH):
                await self._resume_members(terms, period)
            if terms.ocs_account and data_bytes > 0:
                if self._owned_by_pool():
                    # No activation created the pool's account: upserted (idempotent) before its grant.
                    await saga.call(
                        names.PROV_OCS_CREATE_ACCOUNT,
                        OcsAccountRequest(account=terms.ocs_account, request_id=f"{wf_id}:period-{period}:ocs-account"),
                    )
                await saga.call(
                    names.PROV_OCS_GRANT_PLAN,
                    OcsGrant(
                        account=terms.ocs_account,
                        balance_id=period_balance_id(plan_id, period),
                        value_bytes=data_bytes,
                        expiry=at_midnight(calendar.period_end(period)),
                        weight=PLAN_BALANCE_WEIGHT,
                        request_id=f"{wf_id}:period-{period}:grant",
                    ),
                )
        except (ActivityError, ChildWorkflowError) as err:
            if workflow.patched(REFUND_WAITS_PATCH):
                # Retried for a while (as a top-up's refund), then staff are asked.
                compensations = [
                    (
                        "refund",
                        lambda: saga.call(
                            names.SUBSCRIPTION_REFUND,
                            refund,
                            retry=policies.REFUND_RETRY,
                            schedule_to_close=policies.REFUND_SCHEDULE_TO_CLOSE,
                        ),
                    )
                ]
                await saga.run_compensations(compensations, ask_staff=self._ask_staff)
            else:
                await saga.run_compensations(compensations, ask_staff=_nobody)
            self._attempts += 1
            return self._answer(RenewOutcome(renewed=False, period=self._period, reason=saga.reason_of(err)))
        await saga.local_step(
            names.SUBSCRIPTION_RECORD_RENEWAL,
            RecordRenewal(
                subscription_id=terms.subscription_id,
                period=period,
                plan_id=plan_id,
                next_renewal_on=calendar.period_end(period),
                transaction_reference=first_key,
                description=description,
                amount_minor=price,
                currency=terms.currency,
                method=paid.method,
                payment_reference=paid.payment_reference,
            ),
        )
        recovered = self._status in (SubscriptionStatus.DUNNING, SubscriptionStatus.SUSPENDED)
        self._period, self._attempts = period, 0
        self._set_status(SubscriptionStatus.ACTIVE)
        await self._notice(
            "recovered" if recovered else "renewed",
            "Votre forfait est renouvelé",
            f"Votre forfait {plan_name} est renouvelé jusqu'au {calendar.period_end(period).strftime('%d/%m/%Y')}.",
            key=f"period-{period}",
        )
        return self._answer(RenewOutcome(renewed=True, period=period))

    async def _ask_staff(self, _failed: list[saga.Compensation], errors: list[str]) -> saga.StaffDecision:
        """The renewal's refund failed for good: BusinessStatus `needs_attention`, the reason on the
        subscription, then staff's answer (`resolve_compensation`)."""
        before = self._status
        self._attention = "Remboursement du renouvellement impossible : " + "; ".join(errors)
        self._attention_since = workflow.now()
        self._compensation_answer = None
        self._set_status(BusinessStatus.NEEDS_ATTENTION)
        await self._change(failure=self._attention)
        await workflow.wait_condition(lambda: self._compensation_answer is not None)
        answer = self._compensation_answer
        assert answer is not None
        self._attention = self._attention_since = self._compensation_answer = None
        self._set_status(before)
        if answer.action == "resolved_manually":
            await self._change(failure=f"Remboursement fait à la main ({answer.requested_by}) : {answer.note}")
            return "resolved_manually"
        return "retry"

    def _answer(self, outcome: RenewOutcome) -> RenewOutcome:
        if self._renew_requests:
            self._renew_requests -= 1
            self._outcome = outcome
        return outcome

    # --- dunning ---------------------------------------------------------------------------------

    async def _dun(self, data: SubscriptionInput, calendar: RenewalCalendar) -> SubscriptionResult:
        """Stages counted in days from the failed renewal (the period's end): retry each day, a second
        attempt, suspension, then termination; any successful payment on the way recovers the line."""
        terms = self._require_terms()
        failed_on = calendar.period_end(self._period)
        days = terms.dunning
        stages = [
            ("retry", 1, days.retry_until_day),
            ("second_attempt", days.retry_until_day + 1, days.second_attempt_until_day),
            ("suspension", days.second_attempt_until_day + 1, days.suspension_until_day),
        ]
        if not terms.dunning_stage:
            await self._enter_stage("retry", failed_on)  # the failure itself is notified at once
        stages.append(("termination", days.suspension_until_day + 1, days.suspension_until_day + 1))
        for stage, first_day, last_day in stages:
            for day in range(first_day, last_day + 1):
                # A payment asked for before the day comes is tried at once; a refused one waits on.
                while await self._wait_until(at_midnight(failed_on + timedelta(days=day)), wake_on_cancel=True):
                    if self._line_ended or self._cancel_requested:
                        break
                    if (await self._renew_next()).renewed:
                        return await self._continue(data, reminders=[])
                if self._line_ended or self._cancel_requested:
                    self._answer(RenewOutcome(renewed=False, period=self._period, reason="abonnement terminé"))
                    return await self._end("line_ended" if self._line_ended else "cancelled")
                if day == first_day:
                    await self._enter_stage(stage, failed_on)
                if stage == "retry" or (stage == "second_attempt" and day == first_day):
                    self._renew_requests += 1
                    if (await self._renew_next()).renewed:
                        return await self._continue(data, reminders=[])
        if self._owned_by_pool():
            if workflow.patched(POOL_MEMBERS_PATCH):
                await self._terminate_members(terms)
            return await self._end("terminated_unpaid")
        await workflow.execute_child_workflow(
            "DeprovisioningWorkflow",
            DeprovisioningInput(
                org_id=terms.org_id,
                company_id=terms.company_id,
                line_id=terms.line_id,
                requested_by=workflow.info().workflow_id,
                reason="impayé : renouvellement non réglé",
                request_id=f"subscription-period-{self._period + 1}",
            ),
            id=f"deprovision/{terms.org_id}/{terms.line_id}",
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
        return await self._end("terminated_unpaid")

    async def _enter_stage(self, stage: str, failed_on: date) -> None:
        terms = self._require_terms()
        if terms.dunning_stage and _stage_index(stage) <= _stage_index(terms.dunning_stage):
            return  # entered before a restart: done and notified already
        status = (
            SubscriptionStatus.SUSPENDED
            if stage in (DunningStage.SUSPENSION, DunningStage.TERMINATION)
            else SubscriptionStatus.DUNNING
        )
        if stage == "suspension" and not self._owned_by_pool():
            await self._line_operation(terms, "suspend", f"period-{self._period + 1}")
        elif stage == "suspension" and self._owned_by_pool() and workflow.patched(POOL_MEMBERS_PATCH):
            await self._suspend_members(terms)
        await self._change(status=status, dunning_stage=stage, dunning_since=failed_on)
        self._terms = terms.model_copy(update={"dunning_stage": stage, "status": status})
        self._set_status(status)
        subject, body = DUNNING_NOTICES[stage]
        await self._notice("dunning", subject, body, key=f"period-{self._period + 1}:dunning-{stage}", stage=stage)

    async def _line_operation(self, terms: SubscriptionTerms, operation: str, key: str) -> None:
        await workflow.execute_child_workflow(
            "LineOperationWorkflow",
            LineOperationInput(
                org_id=terms.org_id,
                company_id=terms.company_id,
                line_id=terms.line_id,
                operation=operation,
                requested_by=workflow.info().workflow_id,
            ),
            id=f"line-op/{terms.org_id}/{terms.line_id}/{operation}-subscription-{key}",
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )

    # --- a pool's members ------------------------------------------------------------------------

    async def _pool_members(
        self, terms: SubscriptionTerms, statuses: list[str], changed_by_operation: str = ""
    ) -> list[PoolMember]:
        found = await saga.local_step(
            names.SUBSCRIPTION_POOL_MEMBERS,
            PoolMembersQuery(
                subscription_id=terms.subscription_id, statuses=statuses, changed_by_operation=changed_by_operation
            ),
            PoolMembers,
        )
        return found.members

    def _member_key(self, terms: SubscriptionTerms, period: int) -> str:
        return f"{pool_owner_id(terms.pool_id or '')}-period-{period}"

    async def _each_member(
        self, members: list[PoolMember], start: Callable[[PoolMember], Awaitable[ChildWorkflowHandle[Any, Any]]]
    ) -> tuple[list[PoolMember], list[tuple[PoolMember, BaseException]]]:
        """Runs one child workflow per member, all at once; answers the members done and the failures."""

        async def one(member: PoolMember) -> None:
            await (await start(member))

        results = await asyncio.gather(*(one(m) for m in members), return_exceptions=True)
        done: list[PoolMember] = []
        failed: list[tuple[PoolMember, BaseException]] = []
        for member, result in zip(members, results, strict=True):
            if result is None:
                done.append(member)
            elif isinstance(result, ChildWorkflowError | WorkflowAlreadyStartedError):
                failed.append((member, result))
            else:
                raise result
        for member, err in failed:
            workflow.logger.warning("pool member %s: %s", member.line_id, saga.reason_of(err))
        return done, failed

    def _member_operation(
        self, terms: SubscriptionTerms, operation: str, key: str
    ) -> Callable[[PoolMember], Awaitable[ChildWorkflowHandle[Any, Any]]]:
        async def start(member: PoolMember) -> ChildWorkflowHandle[Any, Any]:
            return await workflow.start_child_workflow(
                "LineOperationWorkflow",
                LineOperationInput(
                    org_id=terms.org_id,
                    company_id=member.company_id,
                    line_id=member.line_id,
                    operation=operation,
                    requested_by=workflow.info().workflow_id,
                ),
                id=f"line-op/{terms.org_id}/{member.line_id}/{member_operation(operation, key)}",
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )

        return start

    async def _suspend_members(self, terms: SubscriptionTerms) -> None:
        """The suspension stage of a pool: every active member is suspended (SNAIC + OCS, line operation).
        A member whose suspension fails stays as it is (its operation waits for staff or failed)."""
        members = await self._pool_members(terms, SUSPENDABLE_MEMBER_STATUSES)
        key = self._member_key(terms, self._period + 1)
        done, _ = await self._each_member(members, self._member_operation(terms, "suspend", key))
        self._suspended_members = done

    async def _resume_members(self, terms: SubscriptionTerms, period: int) -> None:
        """A payment during a pool's suspension: the members it suspended are resumed before the pool's
        allowance is granted again. A run that did not suspend them itself (a restart) resumes the members
        whose latest line change is this period's suspension, never a line suspended for another reason. A
        member that cannot be resumed fails the renewal (refunded, as for a line), and the members this attempt
        resumed are suspended again."""
        if self._suspended_members is None:
            suspension = member_operation("suspend", self._member_key(terms, period))
            self._suspended_members = await self._pool_members(terms, ["suspended"], suspension)
        key = f"{self._member_key(terms, period)}-attempt-{self._attempts}"
        done, failed = await self._each_member(
            list(self._suspended_members), self._member_operation(terms, "resume", key)
        )
        resumed = {m.line_id for m in done}
        self._suspended_members = [m for m in self._suspended_members if m.line_id not in resumed]
        if failed and done and workflow.patched(RESUME_ALL_OR_NONE_PATCH):
            # The renewal is refunded: the lines it put back in service are suspended again, as the pool is.
            suspended_again, _ = await self._each_member(
                done, self._member_operation(terms, "suspend", f"{key}-undone")
            )
            self._suspended_members.extend(suspended_again)
        if failed:
            raise failed[0][1]

    async def _terminate_members(self, terms: SubscriptionTerms) -> None:
        """Termination of an unpaid pool: every member not terminated yet goes through deprovisioning, as
        an unpaid line does. A member whose termination cannot start or fails is left to its workflow."""
        members = await self._pool_members(terms, TERMINABLE_MEMBER_STATUSES)
        request_id = f"subscription-{self._member_key(terms, self._period + 1)}"

        async def start(member: PoolMember) -> ChildWorkflowHandle[Any, Any]:
            return await workflow.start_child_workflow(
                "DeprovisioningWorkflow",
                DeprovisioningInput(
                    org_id=terms.org_id,
                    company_id=member.company_id,
                    line_id=member.line_id,
                    requested_by=workflow.info().workflow_id,
                    reason="impayé : renouvellement du pool non réglé",
                    request_id=request_id,
                ),
                id=f"deprovision/{terms.org_id}/{member.line_id}",
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )

        await self._each_member(members, start)

    # --- notices ---------------------------------------------------------------------------------

    async def _notify_reminder(self, days: int, expires_on: date) -> None:
        await self._notice(
            "reminder",
            f"Votre solde expire dans {days} jours",
            f"Il vous reste {days} jours et votre solde va expirer (le {expires_on.strftime('%d/%m/%Y')}).",
            key=f"period-{self._period}:reminder-{days}",
            days_left=days,
        )

    async def _notice(self, kind: str, subject: str, body: str, *, key: str | None = None, **data: object) -> None:
        terms = self._require_terms()
        reference = f"{workflow.info().workflow_id}:{key or f'period-{self._period}:{kind}'}"
        await saga.local_step(
            names.SUBSCRIPTION_NOTIFY,
            SubscriptionNotice(
                subscription_id=terms.subscription_id,
                reference=reference,
                kind=kind,
                subject=subject,
                body=body,
                data={"period": self._period, **data},
            ),
        )
        # The same notice to the organisation's webhook endpoints: a date-triggered event of the catalogue.
        await saga.call(
            names.WEBHOOKS_EMIT,
            EmitEventInput(
                org_id=terms.org_id,
                event_type=NOTICE_EVENT,
                event_id=reference,
                data={
                    "kind": kind,
                    "line_id": terms.line_id,
                    "subscription_id": terms.subscription_id,
                    "period": self._period,
                    **data,
                },
            ),
            timeout=policies.DATABASE_TIMEOUT,
            retry=policies.REFUND_RETRY,
        )


DUNNING_NOTICES = {
    "retry": (
        "Échec du renouvellement de votre forfait",
        "Le paiement du renouvellement a échoué ; nous réessaierons dans les prochains jours.",
    ),
    "second_attempt": (
        "Second essai de paiement de votre forfait",
        "Le paiement a de nouveau échoué. Mettez à jour votre moyen de paiement pour éviter la suspension.",
    ),
    "suspension": (
        "Votre ligne est suspendue",
        "Faute de paiement, votre ligne est suspendue. Un paiement la rétablit immédiatement.",
    ),
    "termination": (
        "Votre ligne est résiliée",
        "Faute de paiement, votre ligne est résiliée.",
    ),
}
STAGES = ("retry", "second_attempt", "suspension", "termination")


def _stage_index(stage: str) -> int:
    return STAGES.index(stage)


async def _nobody(_failed: list[saga.Compensation], _errors: list[str]) -> saga.StaffDecision:
    return None
