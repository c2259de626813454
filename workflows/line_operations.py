"""Suspend, resume or change the plan of a line (`line-op/{org}/{line}/{operation}-{request}`), keeping
SNAIC, the OCS and CFAST consistent; each push is an update (MAJ) record of a `modify_line` deployment.

- suspend: SNAIC suspend (callback / polling) → OCS account disabled → line and SIM `suspended`.
- resume: SNAIC resume → OCS account enabled → line `active`, SIM back to its status before suspension.
- change plan: SNAIC change offer → OCS allowance of the new plan → CFAST subscription changed (from
  today) → allowance of the old plan removed → line and SIM on the new plan.

Saga: a step failing for good undoes the completed ones in reverse (SNAIC back to the previous state or
offer, OCS back, CFAST back to the previous subscription), so the three systems never disagree.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.contracts import ExternalCallResult, snaic_reference
    from domain.enums import BusinessStatus, DeploymentStatus, ExternalSystem, LineStatus, SnaicOrderStatus
    from domain.errors import ErrorCode
    from domain.lifecycle_contracts import (
        CfastChangeSubscription,
        CloseDeployment,
        LineOperationInput,
        LineOperationResult,
        LineSnapshot,
        LoadLine,
        LoadPlan,
        OcsAccountRequest,
        OcsGrant,
        OpenDeployment,
        PlanTerms,
        SetLinePlan,
        SetLineStatus,
        SnaicLineOrder,
        SnaicOrderPlaced,
        plan_balance_id,
    )
    from workflows import activity_names as names
    from workflows._line_saga import LineSaga
    from workflows._saga import Compensation, StepFailed, is_cancellation, reason_of
    from workflows.sim_activation import PLAN_BALANCE_WEIGHT

OPERATIONS = ("suspend", "resume", "change_plan")


def workflow_id(org_id: str, line_id: str, operation: str, request_id: str) -> str:
    return f"line-op/{org_id}/{line_id}/{operation}-{request_id}"


@workflow.defn
class LineOperationWorkflow(LineSaga):
    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None

    @workflow.run
    async def run(self, data: LineOperationInput) -> LineOperationResult:
        if data.operation not in OPERATIONS:
            raise ApplicationError(f"unknown operation {data.operation}", type=ErrorCode.LINE_INVALID_OPERATION)
        self._org_id, self._company_id, self._line_id = data.org_id, data.company_id, data.line_id
        compensations: list[Compensation] = []
        try:
            line = await self._db(
                names.INVENTORY_LOAD_LINE, LoadLine(line_id=data.line_id, org_id=data.org_id), LineSnapshot
            )
            self._set_msisdn(line.msisdn, line.msisdn_hash)
            self._check_state(data, line)
            self._deployment_id = await self._db(
                names.INVENTORY_OPEN_DEPLOYMENT,
                OpenDeployment(
                    org_id=data.org_id,
                    company_id=data.company_id,
                    line_id=data.line_id,
                    kind="modify_line",
                    workflow_id=workflow.info().workflow_id,
                    created_by=data.requested_by,
                ),
                str,
            )
            if data.operation == "change_plan":
                detail = await self._change_plan(data, line, compensations)
            else:
                detail = await self._suspend_or_resume(data, line, compensations)
        except BaseException as err:
            cancelled = is_cancellation(err)
            if not cancelled and not isinstance(err, ActivityError | ApplicationError | StepFailed):
                raise
            self.failure = "opération annulée" if cancelled else reason_of(err)
            self._set_status(BusinessStatus.COMPENSATING, f"Échec : {self.failure}")
            failed = await self._run_compensations(compensations)
            await self._close(DeploymentStatus.NEEDS_ATTENTION if failed else DeploymentStatus.FAILED)
            if failed:
                self._set_status(BusinessStatus.NEEDS_ATTENTION, "Compensation incomplète : " + "; ".join(failed))
            else:
                self._set_status(BusinessStatus.FAILED, f"Échec : {self.failure}")
            if cancelled:
                raise
            if isinstance(err, ApplicationError) and err.non_retryable and not compensations:
                raise  # refused before any change (wrong line state, unknown plan)
            raise ApplicationError(
                f"{data.operation} failed: {self.failure}",
                type=ErrorCode.LINE_OPERATION_NEEDS_ATTENTION if failed else ErrorCode.LINE_OPERATION_FAILED,
                non_retryable=True,
            ) from err
        await self._close(DeploymentStatus.COMPLETED)
        self._set_status(BusinessStatus.COMPLETED, detail)
        return LineOperationResult(
            line_id=data.line_id, operation=data.operation, status=SnaicOrderStatus.COMPLETED, detail=detail
        )

    async def _close(self, status: DeploymentStatus) -> None:
        if self._deployment_id is not None:
            await self._db(
                names.INVENTORY_CLOSE_DEPLOYMENT, CloseDeployment(deployment_id=self._deployment_id, status=status)
            )

    @staticmethod
    def _check_state(data: LineOperationInput, line: LineSnapshot) -> None:
        allowed = {"suspend": ("active",), "resume": ("suspended",), "change_plan": ("active", "suspended")}
        if line.status not in allowed[data.operation]:
            raise ApplicationError(
                f"line is {line.status}: {data.operation} not possible",
                type=ErrorCode.LINE_INVALID_STATE,
                non_retryable=True,
            )
        if line.termination_scheduled_for is not None:
            raise ApplicationError(
                "line termination is scheduled", type=ErrorCode.LINE_TERMINATION_SCHEDULED, non_retryable=True
            )
        if not line.snaic_line_id or not line.ocs_account:
            raise ApplicationError(
                "line has no SNAIC line or OCS account", type=ErrorCode.LINE_INCOMPLETE, non_retryable=True
            )

    async def _snaic(self, step: str, activity: str, order: SnaicLineOrder, data: LineOperationInput) -> None:
        placed = await self._external(step, ExternalSystem.SNAIC, activity, order, SnaicOrderPlaced)
        outcome = await self._await_order(step, placed, data.snaic_sla_s, data.snaic_poll_s)
        if outcome.status != SnaicOrderStatus.COMPLETED:
            raise StepFailed(step, outcome.reason or outcome.status)

    def _order(self, step: str, line: LineSnapshot, offer_code: str | None = None) -> SnaicLineOrder:
        wf_id = workflow.info().workflow_id
        assert line.snaic_line_id is not None
        return SnaicLineOrder(
            line_id=line.snaic_line_id,
            reference=snaic_reference(wf_id, step),
            idempotency_key=f"{wf_id}:{step}",
            offer_code=offer_code,
        )

    async def _ocs(self, step: str, activity: str, account: str, *, compensation: bool = False) -> None:
        wf_id = workflow.info().workflow_id
        await self._external(
            step,
            ExternalSystem.OCS,
            activity,
            OcsAccountRequest(account=account, request_id=f"{wf_id}:{step}"),
            ExternalCallResult,
            compensation=compensation,
        )

    async def _suspend_or_resume(
        self, data: LineOperationInput, line: LineSnapshot, compensations: list[Compensation]
    ) -> str:
        suspend = data.operation == "suspend"
        account = line.ocs_account
        assert account is not None
        forward, backward = (
            (names.PROV_SNAIC_SUSPEND, names.PROV_SNAIC_RESUME)
            if suspend
            else (names.PROV_SNAIC_RESUME, names.PROV_SNAIC_SUSPEND)
        )
        ocs_forward, ocs_backward = (
            (names.PROV_OCS_DISABLE_ACCOUNT, names.PROV_OCS_ENABLE_ACCOUNT)
            if suspend
            else (names.PROV_OCS_ENABLE_ACCOUNT, names.PROV_OCS_DISABLE_ACCOUNT)
        )
        self._set_status(BusinessStatus.SUPPLIER, ("Suspension" if suspend else "Réactivation") + " chez SNAIC")

        async def undo_supplier() -> None:
            step = "compensate_snaic"
            placed = await self._external(
                step, ExternalSystem.SNAIC, backward, self._order(step, line), SnaicOrderPlaced, compensation=True
            )
            outcome = await self._await_order(step, placed, data.snaic_sla_s, data.snaic_poll_s)
            if outcome.status != SnaicOrderStatus.COMPLETED:
                raise StepFailed(step, outcome.reason or outcome.status)

        await self._snaic(f"snaic_{data.operation}", forward, self._order(f"snaic_{data.operation}", line), data)
        compensations.append(("snaic", undo_supplier))  # registered once SNAIC changed: undoing needs that state

        async def undo_ocs() -> None:
            await self._ocs("compensate_ocs", ocs_backward, account, compensation=True)

        compensations.append(("ocs", undo_ocs))
        self._set_status(BusinessStatus.CHARGING, "Compte OCS " + ("désactivé" if suspend else "réactivé"))
        await self._ocs(f"ocs_{data.operation}", ocs_forward, account)
        await self._db(
            names.INVENTORY_SET_LINE_STATUS,
            SetLineStatus(
                org_id=data.org_id,
                line_id=data.line_id,
                status=LineStatus.SUSPENDED if suspend else LineStatus.ACTIVE,
                actor=data.requested_by,
                workflow_id=workflow.info().workflow_id,
                sim_status="suspended" if suspend else "previous",
            ),
        )
        return f"Ligne {line.msisdn} " + ("suspendue" if suspend else "réactivée")

    async def _change_plan(
        self, data: LineOperationInput, line: LineSnapshot, compensations: list[Compensation]
    ) -> str:
        if not data.plan_id:
            raise ApplicationError("plan_id is required", type=ErrorCode.LINE_VALIDATION_FAILED, non_retryable=True)
        if data.plan_id == line.plan_id:
            raise ApplicationError(
                "the line is already on this plan", type=ErrorCode.LINE_SAME_PLAN, non_retryable=True
            )
        if not line.cfast_service_id:
            raise ApplicationError("line has no CFAST service", type=ErrorCode.LINE_INCOMPLETE, non_retryable=True)
        wf_id = workflow.info().workflow_id
        new = await self._db(
            names.INVENTORY_LOAD_PLAN,
            LoadPlan(plan_id=data.plan_id, org_id=data.org_id, company_id=data.company_id),
            PlanTerms,
        )
        old: PlanTerms | None = None
        if line.plan_id:
            old = await self._db(
                names.INVENTORY_LOAD_PLAN,
                LoadPlan(plan_id=line.plan_id, org_id=data.org_id, company_id=data.company_id),
                PlanTerms,
            )
        account = line.ocs_account
        assert account is not None
        today = workflow.now().date()

        # SNAIC: the new offer (the previous one ends when it completes).
        self._set_status(BusinessStatus.SUPPLIER, f"Changement d'offre SNAIC vers {new.offer_code}")
        if old is None or old.offer_code != new.offer_code:
            await self._snaic(
                "snaic_change_offer",
                names.PROV_SNAIC_CHANGE_OFFER,
                self._order("snaic_change_offer", line, new.offer_code),
                data,
            )
            if old is not None:
                previous = old

                async def undo_offer() -> None:
                    step = "compensate_snaic_offer"
                    placed = await self._external(
                        step,
                        ExternalSystem.SNAIC,
                        names.PROV_SNAIC_CHANGE_OFFER,
                        self._order(step, line, previous.offer_code),
                        SnaicOrderPlaced,
                        compensation=True,
                    )
                    outcome = await self._await_order(step, placed, data.snaic_sla_s, data.snaic_poll_s)
                    if outcome.status != SnaicOrderStatus.COMPLETED:
                        raise StepFailed(step, outcome.reason or outcome.status)

                compensations.append(("snaic_offer", undo_offer))

        # OCS: the new plan's allowance (its own balance ID, so a retry never resets it).
        self._set_status(BusinessStatus.CHARGING, f"Solde OCS du forfait {new.name}")

        async def remove_new_allowance() -> None:
            await self._remove_ocs_balance(
                "compensate_ocs_plan",
                account,
                plan_balance_id(new.plan_id),
                f"{wf_id}:compensate_ocs_plan",
                compensation=True,
            )

        compensations.append(("ocs_plan", remove_new_allowance))
        await self._external(
            "ocs_grant_plan",
            ExternalSystem.OCS,
            names.PROV_OCS_GRANT_PLAN,
            OcsGrant(
                account=account,
                balance_id=plan_balance_id(new.plan_id),
                value_bytes=new.data_allowance_bytes,
                expiry=workflow.now() + timedelta(days=new.validity_days),
                weight=PLAN_BALANCE_WEIGHT,
                request_id=f"{wf_id}:ocs_plan",
            ),
            ExternalCallResult,
        )

        # CFAST: the subscription from today (the previous one ends today), undone by switching back.
        self._set_status(BusinessStatus.BILLING, f"Abonnement CFAST {new.offer_code}")
        service_id = line.cfast_service_id
        if old is not None:
            previous_terms = old

            async def undo_subscription() -> None:
                await self._external(
                    "compensate_cfast_subscription",
                    ExternalSystem.CFAST,
                    names.PROV_CFAST_CHANGE_SUBSCRIPTION,
                    CfastChangeSubscription(
                        service_id=service_id,
                        article_code=previous_terms.offer_code,
                        article_label=previous_terms.name,
                        article_periodic_price=previous_terms.price_minor,
                        periodic_buy_price=previous_terms.purchase_price_minor,
                        start_date=today,
                        idempotency_key=f"{wf_id}:compensate_cfast_subscription",
                    ),
                    ExternalCallResult,
                    compensation=True,
                )

            compensations.append(("cfast_subscription", undo_subscription))
        await self._external(
            "cfast_change_subscription",
            ExternalSystem.CFAST,
            names.PROV_CFAST_CHANGE_SUBSCRIPTION,
            CfastChangeSubscription(
                service_id=service_id,
                article_code=new.offer_code,
                article_label=new.name,
                article_periodic_price=new.price_minor,
                periodic_buy_price=new.purchase_price_minor,
                start_date=today,
                idempotency_key=f"{wf_id}:cfast_subscription",
            ),
            ExternalCallResult,
        )

        # The old allowance goes last: nothing can fail after it but our own database.
        if old is not None:
            await self._remove_ocs_balance(
                "ocs_remove_old_plan", account, plan_balance_id(old.plan_id), f"{wf_id}:ocs_remove_old_plan"
            )
        await self._db(
            names.INVENTORY_SET_LINE_PLAN,
            SetLinePlan(
                org_id=data.org_id,
                line_id=data.line_id,
                plan_id=new.plan_id,
                actor=data.requested_by,
                workflow_id=wf_id,
            ),
        )
        return f"Ligne {line.msisdn} passée au forfait {new.name}"
