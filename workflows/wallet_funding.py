"""Wallet funding by card (`wallet-funding/{org}/{funding_id}`): resolve the owner's saved card → charge it
off-session → write the ledger credit. A credit that cannot be written (a wallet disabled meanwhile) refunds
the charge; a charge whose outcome stays unknown is refunded too (the refund finds it by the funding id, or
finds nothing). A refund that keeps failing leaves the funding in `needs_attention` until staff resolve it.
Keys come from the workflow id: `{wf}:charge`, `{wf}:credit`, `{wf}:refund`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from domain.contracts import CardPayer
    from domain.enums import FundingStatus
    from domain.errors import ErrorCode, code_of
    from domain.security_contracts import AuditRecordInput
    from domain.wallet_contracts import (
        FundingCharge,
        FundingCredit,
        FundingCredited,
        FundingMoneyOutcome,
        FundingRef,
        FundingRefund,
        FundingResolution,
        FundingStatusUpdate,
        WalletFundingInput,
        WalletFundingReceipt,
    )
    from domain.wallet_contracts import funding_workflow_id as workflow_id
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS

__all__ = ["WalletFundingWorkflow", "workflow_id"]

RESOLUTION_ACTIONS = ("retry_refund", "refunded_manually")


def _reason(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)


def _refused(err: ActivityError) -> bool:
    """A final refusal (declined card, no saved card, disabled wallet): retrying changes nothing."""
    return isinstance(err.cause, ApplicationError) and err.cause.non_retryable


@workflow.defn
class WalletFundingWorkflow:
    @workflow.init
    def __init__(self, data: WalletFundingInput) -> None:
        self.data = data
        self.status = FundingStatus.PENDING
        self.payment_reference: str | None = None
        self.refund_reference: str | None = None
        self.ledger_reference: str | None = None
        self.failure_reason: str | None = None
        self.payer: CardPayer | None = None
        self.resolution: FundingResolution | None = None
        self.attention_rounds = 0

    @workflow.query
    def receipt(self) -> WalletFundingReceipt:
        return WalletFundingReceipt(
            funding_id=self.data.funding_id,
            workflow_id=workflow.info().workflow_id,
            status=self.status,
            amount_minor=self.data.amount_minor,
            currency=self.data.currency,
            payment_reference=self.payment_reference,
            refund_reference=self.refund_reference,
            ledger_reference=self.ledger_reference,
            failure_reason=self.failure_reason,
        )

    @workflow.update
    async def resolve(self, resolution: FundingResolution) -> WalletFundingReceipt:
        round_at_call = self.attention_rounds
        self.resolution = resolution
        await workflow.wait_condition(
            lambda: self.status != FundingStatus.NEEDS_ATTENTION or self.attention_rounds > round_at_call
        )
        return self.receipt()

    @resolve.validator
    def _validate_resolve(self, resolution: FundingResolution) -> None:
        if self.status != FundingStatus.NEEDS_ATTENTION:
            raise ApplicationError(
                f"funding is {self.status}, not needs_attention", type=ErrorCode.RESOLUTION_NOT_AWAITED
            )
        if resolution.action not in RESOLUTION_ACTIONS:
            raise ApplicationError(f"unknown action {resolution.action!r}", type=ErrorCode.RESOLUTION_UNKNOWN_ACTION)
        if not resolution.note.strip():
            raise ApplicationError("a note is required", type=ErrorCode.RESOLUTION_NOTE_REQUIRED)

    # --- helpers ----------------------------------------------------------------------------

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

    async def _set(self, status: FundingStatus, details: str, **fields: Any) -> None:
        self.status = status
        for name in ("payment_reference", "refund_reference", "ledger_reference", "failure_reason"):
            if fields.get(name) is not None:
                setattr(self, name, fields[name])
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        workflow.set_current_details(details)
        await self._db(
            names.LEDGER_SET_FUNDING_STATUS,
            FundingStatusUpdate(funding_id=self.data.funding_id, org_id=self.data.org_id, status=status, **fields),
        )

    async def _audit(self, action: str, *, actor: str = "system", actor_kind: str = "workflow", **details: Any) -> None:
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
                target=f"wallet_funding:{data.funding_id}",
                workflow_id=self._wf,
                details={
                    "wallet_id": data.wallet_id,
                    "amount_minor": data.amount_minor,
                    "currency": data.currency,
                    "payment_reference": self.payment_reference,
                    **details,
                },
            ),
        )

    # --- the saga ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: WalletFundingInput) -> WalletFundingReceipt:
        ref = FundingRef(funding_id=data.funding_id, org_id=data.org_id)
        try:
            self.payer = await self._db(names.PAYMENT_RESOLVE_FUNDING_PAYER, ref, CardPayer)
        except ActivityError as err:
            await self._set(FundingStatus.FAILED, f"Échec : {_reason(err)}", failure_reason=_reason(err))
            return self.receipt()
        assert self.payer is not None
        # From here on, money may have moved: every way out before the charge is known refunds.
        try:
            await self._set(
                FundingStatus.CHARGING, f"Paiement de {data.amount_minor / 100:.2f} {data.currency} par carte"
            )
            try:
                outcome: FundingMoneyOutcome = await workflow.execute_activity(
                    names.PAYMENT_CHARGE_FUNDING,
                    FundingCharge(
                        funding_id=data.funding_id,
                        org_id=data.org_id,
                        idempotency_key=f"{self._wf}:charge",
                        amount_minor=data.amount_minor,
                        currency=data.currency,
                        payer=self.payer,
                    ),
                    result_type=FundingMoneyOutcome,
                    start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                    schedule_to_close_timeout=timedelta(seconds=data.charge_window_s),
                    retry_policy=policies.CHARGE_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                if _refused(err) and code_of(err) is not ErrorCode.STRIPE_CONFLICT:
                    # Declined: no money moved.
                    await self._set(
                        FundingStatus.FAILED, f"Paiement refusé : {_reason(err)}", failure_reason=_reason(err)
                    )
                    return self.receipt()
                # The charge's outcome is unknown after every retry: the refund finds it, or finds nothing.
                await self._refund(f"paiement : résultat inconnu ({_reason(err)})")
                return self.receipt()
        except BaseException as err:
            if is_cancelled_exception(err):
                # Cancelled before the charge was known: whatever was charged goes back (the search settles it).
                await self._refund("approvisionnement annulé")
            raise
        self.payment_reference = outcome.reference
        # Charged: too late to cancel. The credit is written (idempotent by its reference), or the charge refunded.
        try:
            await self._set(
                FundingStatus.CHARGED, "Paiement accepté, crédit du portefeuille", payment_reference=outcome.reference
            )
            await self._audit("wallet_funding.charge")
            credited = await self._credit()
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            workflow.logger.info("cancellation after the charge: the funding completes")
            await self._audit("wallet_funding.charge")
            credited = await self._credit()
        if credited is not None:
            await self._set(
                FundingStatus.SUCCEEDED,
                "Portefeuille crédité",
                ledger_reference=credited.ledger_reference,
                failure_reason=None,
            )
        return self.receipt()

    async def _credit(self) -> FundingCredited | None:
        """The ledger credit; None once a refused credit has been refunded."""
        data = self.data
        try:
            credited: FundingCredited = await self._db(
                names.LEDGER_CREDIT_FUNDING,
                FundingCredit(funding_id=data.funding_id, org_id=data.org_id, reference=f"{self._wf}:credit"),
                FundingCredited,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            await self._refund(f"crédit du portefeuille impossible : {_reason(err)}")
            return None
        return credited

    async def _refund(self, reason: str) -> None:
        """Refunds the charge (found by the funding id when its answer was lost); a refund that keeps failing
        waits in needs_attention for staff: retry it, or confirm a refund made by hand."""
        data = self.data
        assert self.payer is not None
        self.failure_reason = reason
        request = FundingRefund(
            funding_id=data.funding_id,
            org_id=data.org_id,
            idempotency_key=f"{self._wf}:refund",
            payment_reference=self.payment_reference or "",
            amount_minor=data.amount_minor,
            currency=data.currency,
            payer=self.payer,
        )
        while True:
            try:
                refunded: FundingMoneyOutcome = await workflow.execute_activity(
                    names.PAYMENT_REFUND_FUNDING,
                    request,
                    result_type=FundingMoneyOutcome,
                    start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                    schedule_to_close_timeout=policies.REFUND_SCHEDULE_TO_CLOSE,
                    retry_policy=policies.REFUND_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
            except ActivityError as err:
                self.attention_rounds += 1
                await self._set(
                    FundingStatus.NEEDS_ATTENTION,
                    "Remboursement impossible : intervention requise",
                    failure_reason=f"{reason} ; remboursement en échec : {_reason(err)}",
                )
                await workflow.wait_condition(lambda: self.resolution is not None)
                resolution = self.resolution
                assert resolution is not None
                self.resolution = None
                if resolution.action == "refunded_manually":
                    await self._audit(
                        "wallet_funding.refund_confirmed_manually",
                        actor=resolution.actor,
                        actor_kind="staff",
                        note=resolution.note,
                    )
                    await self._set(FundingStatus.REFUNDED, "Remboursement manuel confirmé", failure_reason=reason)
                    return
                continue
            break
        if refunded.reference.startswith("none:"):
            # Nothing was charged: nothing to give back.
            await self._set(FundingStatus.FAILED, f"Échec : {reason}", failure_reason=reason)
            return
        await self._audit("wallet_funding.refund", refund_reference=refunded.reference)
        await self._set(
            FundingStatus.REFUNDED, f"Remboursé : {reason}", refund_reference=refunded.reference, failure_reason=reason
        )
