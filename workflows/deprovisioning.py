"""Deprovisioning `deprovision/{org}/{line}` (SPEC §4.5, OmniCRM "Annulation en attente"):

1. the termination is scheduled at once: the line accepts no more top-ups from here on;
2. optional grace period (7–30 days): the line keeps working, staff or the customer may cancel it with
   the `cancel_termination` Update (the API's `DELETE /lines/{id}/termination`), or end it early with
   `terminate_now`;
3. SNAIC terminate (callback / polling) → OCS account disabled (late CDRs still rate) → CFAST service
   terminated with its date → line and SIM `terminated`, MSISDN in quarantine → the rows stay (history);
4. a `LineQuarantineWorkflow` child (abandoned by this one) removes the OCS account once the quarantine
   is over.

Forward recovery, no compensation: each step is retried with backoff; one that still fails puts the
workflow in `needs_attention` (search attribute BusinessStatus) until staff answer the `retry` Update,
and the step is tried again. It never stops silently half-way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.contracts import ExternalCallResult, snaic_reference
    from domain.enums import BusinessStatus, DeploymentStatus, ExternalSystem, LineStatus, SnaicOrderStatus
    from domain.errors import ErrorCode
    from domain.lifecycle_contracts import (
        CancelScheduledTermination,
        CancelTermination,
        CfastServiceRef,
        CloseDeployment,
        CompleteTermination,
        DeprovisioningInput,
        DeprovisioningResult,
        DeprovisioningState,
        LineSnapshot,
        LoadLine,
        OcsAccountRequest,
        OpenDeployment,
        ResolveAttention,
        ScheduleTermination,
        SnaicLineOrder,
        SnaicOrderPlaced,
    )
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._line_saga import LineSaga
    from workflows._saga import StepFailed, reason_of

T = TypeVar("T")

MIN_GRACE_DAYS = 7
MAX_GRACE_DAYS = 30
# Until the grace period ends, the termination can still be cancelled or brought forward.
BEFORE_TERMINATION = (BusinessStatus.STARTING, BusinessStatus.SCHEDULED, BusinessStatus.GRACE_PERIOD)
TERMINABLE_LINE_STATUSES = (LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.INACTIVE)


def workflow_id(org_id: str, line_id: str) -> str:
    return f"deprovision/{org_id}/{line_id}"


def quarantine_workflow_id(org_id: str, line_id: str) -> str:
    return f"line-quarantine/{org_id}/{line_id}"


@workflow.defn
class DeprovisioningWorkflow(LineSaga):
    def __init__(self) -> None:
        super().__init__()
        self.grace_until: datetime | None = None
        self.cancel_request: CancelTermination | None = None
        self.terminate_now_requested = False
        self.attention: str | None = None
        self.attention_since: datetime | None = None
        self.retry_requested = False
        self.step = ""

    # --- messages ----------------------------------------------------------------------------------

    @workflow.query
    def state(self) -> DeprovisioningState:
        return DeprovisioningState(
            status=self.status,
            grace_until=self.grace_until,
            step=self.step,
            attention=self.attention,
            attention_since=self.attention_since,
        )

    @workflow.update
    def cancel_termination(self, request: CancelTermination) -> DeprovisioningState:
        """Cancels the termination during the grace period; refused once it has begun."""
        self.cancel_request = request
        return DeprovisioningState(status=BusinessStatus.CANCELLING, grace_until=self.grace_until)

    @cancel_termination.validator
    def _validate_cancel(self, request: CancelTermination) -> None:
        if self.status not in BEFORE_TERMINATION:
            raise ApplicationError(f"termination already {self.status}", type=ErrorCode.TERMINATION_NOT_CANCELLABLE)

    @workflow.update
    def terminate_now(self, request: ResolveAttention) -> DeprovisioningState:
        """Ends the grace period early (staff)."""
        self.terminate_now_requested = True
        return DeprovisioningState(status=self.status, grace_until=self.grace_until)

    @terminate_now.validator
    def _validate_terminate_now(self, request: ResolveAttention) -> None:
        if self.status not in BEFORE_TERMINATION:
            raise ApplicationError(f"termination already {self.status}", type=ErrorCode.TERMINATION_NOT_IN_GRACE)

    @workflow.update
    def retry(self, request: ResolveAttention) -> DeprovisioningState:
        """Staff tell a workflow in `needs_attention` to try its failed step again."""
        self.retry_requested = True
        return DeprovisioningState(status=BusinessStatus.RETRYING, step=self.step, attention=self.attention)

    @retry.validator
    def _validate_retry(self, request: ResolveAttention) -> None:
        if self.status != BusinessStatus.NEEDS_ATTENTION:
            raise ApplicationError(
                f"nothing to retry ({self.status})", type=ErrorCode.TERMINATION_NOT_NEEDING_ATTENTION
            )

    # --- run ---------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: DeprovisioningInput) -> DeprovisioningResult:
        wf_id = workflow.info().workflow_id
        self._org_id, self._company_id, self._line_id = data.org_id, data.company_id, data.line_id
        key = self._key = f"{wf_id}/{data.request_id}" if data.request_id else wf_id
        if data.grace_days and not MIN_GRACE_DAYS <= data.grace_days <= MAX_GRACE_DAYS:
            raise ApplicationError(
                f"grace period must be 0 or {MIN_GRACE_DAYS}-{MAX_GRACE_DAYS} days",
                type=ErrorCode.TERMINATION_INVALID_GRACE,
                non_retryable=True,
            )
        line = await self._db(
            names.INVENTORY_LOAD_LINE, LoadLine(line_id=data.line_id, org_id=data.org_id), LineSnapshot
        )
        self._set_msisdn(line.msisdn, line.msisdn_hash)
        if line.status == LineStatus.TERMINATED:
            self._set_status(BusinessStatus.TERMINATED, f"Ligne {line.msisdn} déjà résiliée")
            return DeprovisioningResult(line_id=data.line_id, status=BusinessStatus.TERMINATED)
        if line.status not in TERMINABLE_LINE_STATUSES:
            self._set_status(BusinessStatus.REFUSED, f"Ligne {line.status} : résiliation impossible")
            raise ApplicationError(
                f"line is {line.status}: termination not possible",
                type=ErrorCode.LINE_INVALID_STATE,
                non_retryable=True,
            )

        # 1. Scheduled: the top-up gate closes now, whatever the grace period.
        now = workflow.now()
        self.grace_until = now + timedelta(days=data.grace_days)
        await self._db(
            names.INVENTORY_SCHEDULE_TERMINATION,
            ScheduleTermination(
                org_id=data.org_id,
                line_id=data.line_id,
                at=self.grace_until,
                actor=data.requested_by,
                workflow_id=wf_id,
            ),
        )
        self._deployment_id = await self._db(
            names.INVENTORY_OPEN_DEPLOYMENT,
            OpenDeployment(
                org_id=data.org_id,
                company_id=data.company_id,
                line_id=data.line_id,
                kind="terminate_line",
                workflow_id=wf_id,
                created_by=data.requested_by,
            ),
            str,
        )

        # 2. Grace period, cancellable.
        if data.grace_days:
            self._set_status(BusinessStatus.GRACE_PERIOD, f"Résiliation le {self.grace_until:%d/%m/%Y} sauf annulation")
            try:
                await workflow.wait_condition(
                    lambda: self.cancel_request is not None or self.terminate_now_requested,
                    timeout=timedelta(days=data.grace_days),
                    timeout_summary="délai de grâce",
                )
            except TimeoutError:
                pass
        else:
            self._set_status(BusinessStatus.SCHEDULED, "Résiliation immédiate")
        if self.cancel_request is not None:
            return await self._cancelled(data, wf_id, self.cancel_request)

        # 3. Termination, forward recovery only.
        self._set_status(BusinessStatus.TERMINATING, f"Résiliation de la ligne {line.msisdn}")
        terminated_at = workflow.now()
        termination_date = terminated_at.date()
        if line.snaic_line_id:
            await self._forward("snaic_terminate", lambda: self._terminate_supplier(data, line, wf_id, key))
        if line.ocs_account:
            account = line.ocs_account
            await self._forward(
                "ocs_disable",
                lambda: self._external(
                    "ocs_disable_account",
                    ExternalSystem.OCS,
                    names.PROV_OCS_DISABLE_ACCOUNT,
                    OcsAccountRequest(account=account, request_id=f"{key}:ocs_disable"),
                    ExternalCallResult,
                ),
            )
        if line.cfast_service_id or line.cfast_service_label:
            service_ref = CfastServiceRef(
                service_id=line.cfast_service_id,
                service_label=line.cfast_service_label or line.msisdn,
                termination_date=termination_date,
                idempotency_key=f"{key}:cfast_terminate",
            )
            await self._forward(
                "cfast_terminate",
                lambda: self._external(
                    "cfast_terminate_service",
                    ExternalSystem.CFAST,
                    names.PROV_CFAST_TERMINATE_SERVICE,
                    service_ref,
                    ExternalCallResult,
                ),
            )
        quarantine_until = terminated_at + timedelta(days=data.quarantine_days)
        self.step = "database"
        await self._db(
            names.INVENTORY_COMPLETE_TERMINATION,
            CompleteTermination(
                org_id=data.org_id,
                line_id=data.line_id,
                terminated_at=terminated_at,
                quarantine_until=quarantine_until,
                actor=data.requested_by,
                workflow_id=wf_id,
            ),
        )
        await self._db(
            names.INVENTORY_CLOSE_DEPLOYMENT,
            CloseDeployment(deployment_id=self._deployment_id, status=DeploymentStatus.COMPLETED),
        )

        # 4. The OCS account is removed after the quarantine, by a child that outlives this workflow.
        if line.ocs_account:
            await workflow.start_child_workflow(
                LineQuarantineWorkflow.run,
                DeprovisioningInput(
                    org_id=data.org_id,
                    company_id=data.company_id,
                    line_id=data.line_id,
                    quarantine_days=data.quarantine_days,
                    requested_by=data.requested_by,
                ),
                id=quarantine_workflow_id(data.org_id, data.line_id),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                static_summary=f"Quarantaine du numéro {line.msisdn}",
            )
        self._set_status(BusinessStatus.TERMINATED, f"Ligne {line.msisdn} résiliée, numéro en quarantaine")
        return DeprovisioningResult(
            line_id=data.line_id,
            status=BusinessStatus.TERMINATED,
            terminated_at=terminated_at,
            quarantine_until=quarantine_until,
        )

    async def _cancelled(
        self, data: DeprovisioningInput, wf_id: str, request: CancelTermination
    ) -> DeprovisioningResult:
        await self._db(
            names.INVENTORY_CANCEL_TERMINATION,
            CancelScheduledTermination(
                org_id=data.org_id, line_id=data.line_id, actor=request.requested_by, workflow_id=wf_id
            ),
        )
        if self._deployment_id is not None:
            await self._db(
                names.INVENTORY_CLOSE_DEPLOYMENT,
                CloseDeployment(deployment_id=self._deployment_id, status=DeploymentStatus.FAILED),
            )
        self._set_status(BusinessStatus.CANCELLED, f"Résiliation annulée par {request.requested_by}")
        return DeprovisioningResult(line_id=data.line_id, status=BusinessStatus.CANCELLED)

    async def _terminate_supplier(self, data: DeprovisioningInput, line: LineSnapshot, wf_id: str, key: str) -> None:
        assert line.snaic_line_id is not None
        placed = await self._external(
            "snaic_terminate_line",
            ExternalSystem.SNAIC,
            names.PROV_SNAIC_TERMINATE,
            SnaicLineOrder(
                line_id=line.snaic_line_id,
                reference=snaic_reference(wf_id, "terminate_line"),
                idempotency_key=f"{key}:terminate_line",
            ),
            SnaicOrderPlaced,
        )
        outcome = await self._await_order("snaic_terminate_line", placed, data.snaic_sla_s, data.snaic_poll_s)
        if outcome.status != SnaicOrderStatus.COMPLETED:
            raise StepFailed("snaic_terminate_line", outcome.reason or outcome.status)

    async def _forward(self, step: str, action: Callable[[], Awaitable[T]]) -> T:
        """Runs the step until it succeeds; between failed rounds, waits in `needs_attention` for staff."""
        self.step = step
        while True:
            try:
                return await action()
            except (ActivityError, StepFailed) as err:
                self.attention = f"{step}: {reason_of(err)}"
                self.attention_since = workflow.now()  # state only: no command, replays unchanged
                self._set_status(BusinessStatus.NEEDS_ATTENTION, f"Étape {step} en échec : {reason_of(err)}")
                self.retry_requested = False
                await workflow.wait_condition(lambda: self.retry_requested)
                self.attention = self.attention_since = None
                self._set_status(BusinessStatus.TERMINATING, f"Nouvelle tentative : {step}")


@workflow.defn
class LineQuarantineWorkflow(LineSaga):
    """After the quarantine of a terminated line's number, removes its OCS account (SPEC §8)."""

    @workflow.run
    async def run(self, data: DeprovisioningInput) -> str:
        self._org_id, self._company_id, self._line_id = data.org_id, data.company_id, data.line_id
        self._set_status(BusinessStatus.QUARANTINE, f"Quarantaine de {data.quarantine_days} jours")
        await workflow.sleep(timedelta(days=data.quarantine_days), summary="quarantaine du numéro")
        line = await self._db(
            names.INVENTORY_LOAD_LINE, LoadLine(line_id=data.line_id, org_id=data.org_id), LineSnapshot
        )
        if line.ocs_account:
            await workflow.execute_activity(
                names.PROV_OCS_REMOVE_ACCOUNT,
                OcsAccountRequest(
                    account=line.ocs_account, request_id=f"{workflow.info().workflow_id}:ocs_remove_account"
                ),
                result_type=ExternalCallResult,
                start_to_close_timeout=policies.COMPENSATION_TIMEOUT,
                retry_policy=policies.COMPENSATION_RETRY,
            )
            await self._record("ocs_remove_account", ExternalSystem.OCS, sent={"Account": line.ocs_account})
        self._set_status(BusinessStatus.RELEASED, "Compte OCS supprimé, numéro réutilisable")
        return BusinessStatus.RELEASED
