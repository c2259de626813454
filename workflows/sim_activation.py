"""SIM activation `sim-activation/{org}/{iccid}` (SPEC §4.2): reserve the SIM → allocate an MSISDN (or
check a port-in) → SNAIC create line (callback, polling fallback, SLA) → OCS account + plan allowance →
CFAST customer / billing point / site (ids fetched on the fly when missing) + service line → SIM
`ready_for_activation` (then `active` on first usage, from the OCS usage or the AccountStatus file) → on a
plan that renews, the line's subscription workflow `subscription/{org}/{line}`.

Saga: each compensation is registered before its step and is idempotent ("if applied"); on any failure,
or on cancellation, they run in reverse: CFAST service terminated, OCS account removed, SNAIC line
terminated, number released, SIM released and the line row kept as `obsolete` with the reason. Nothing
half-provisioned remains. A compensation that fails for good leaves the workflow `needs_attention`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.contracts import ExternalCallResult, snaic_reference
    from domain.enums import BusinessStatus, DeploymentStatus, ExternalSystem, SnaicOrderStatus
    from domain.errors import ErrorCode
    from domain.lifecycle_contracts import (
        ActivationContext,
        AllocatedMsisdn,
        AllocateMsisdn,
        CfastEnsureService,
        CfastServiceRef,
        CloseDeployment,
        FinalizeActivation,
        LoadActivation,
        OcsAccountRequest,
        OcsGrant,
        ReleaseMsisdn,
        ReleaseSim,
        ReservedSim,
        ReserveSim,
        SimActivationInput,
        SimActivationResult,
        SnaicCancelLine,
        SnaicCreateLine,
        SnaicOrderPlaced,
        plan_balance_id,
    )
    from domain.subscription_contracts import LineSubscriptionStarted, StartLineSubscription
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._line_saga import CfastHierarchy
    from workflows._saga import Compensation, StepFailed, is_cancellation, reason_of

PLAN_BALANCE_WEIGHT = 20.0  # the plan allowance is consumed before top-ups expiring the same day (SPEC §8)
# Activations recorded before it end at step 6; from it on, a line on a renewing plan gets its subscription.
START_SUBSCRIPTION_PATCH = "start-subscription-on-activation"


def workflow_id(org_id: str, iccid: str) -> str:
    return f"sim-activation/{org_id}/{iccid}"


@workflow.defn
class SimActivationWorkflow(CfastHierarchy):
    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None
        self.msisdn = ""
        self.snaic_line_id: str | None = None
        self.cfast_service_id: str | None = None
        self.subscription_workflow_id: str | None = None

    @workflow.run
    async def run(self, data: SimActivationInput) -> SimActivationResult:
        wf_id = workflow.info().workflow_id
        self._org_id, self._company_id, self._line_id = data.org_id, data.company_id, data.line_id
        compensations: list[Compensation] = []
        try:
            return await self._activate(data, wf_id, compensations)
        except BaseException as err:
            cancelled = is_cancellation(err)
            if not cancelled and not isinstance(err, ActivityError | ApplicationError | StepFailed):
                raise  # a bug: fail the workflow task, fix, and the workflow resumes
            self.failure = "activation annulée" if cancelled else reason_of(err)
            self._set_status(BusinessStatus.COMPENSATING, f"Échec : {self.failure} — annulation des étapes réalisées")
            failed = await self._run_compensations(compensations)
            await self._close_deployment(DeploymentStatus.NEEDS_ATTENTION if failed else DeploymentStatus.FAILED)
            if failed:
                self._set_status(BusinessStatus.NEEDS_ATTENTION, "Compensation incomplète : " + "; ".join(failed))
                raise ApplicationError(
                    f"activation failed ({self.failure}); compensation incomplete: {'; '.join(failed)}",
                    type=ErrorCode.ACTIVATION_NEEDS_ATTENTION,
                    non_retryable=True,
                ) from err
            self._set_status(
                BusinessStatus.CANCELLED if cancelled else BusinessStatus.FAILED, f"Activation échouée : {self.failure}"
            )
            if cancelled:
                raise
            raise ApplicationError(
                f"activation failed: {self.failure}", type=ErrorCode.ACTIVATION_FAILED, non_retryable=True
            ) from err

    async def _close_deployment(self, status: DeploymentStatus) -> None:
        if self._deployment_id is not None:
            await self._db(
                names.INVENTORY_CLOSE_DEPLOYMENT, CloseDeployment(deployment_id=self._deployment_id, status=status)
            )

    async def _activate(
        self, data: SimActivationInput, wf_id: str, compensations: list[Compensation]
    ) -> SimActivationResult:
        actor = data.requested_by
        # Side-effect keys: the workflow id and this attempt's line (a new activation of the same SIM after
        # a failed one is a new line, and must not get the first attempt's answers back), plus the step.
        key = self._key = f"{wf_id}/{data.line_id}"

        # 1. The SIM, held by this workflow only (the line row exists from here on).
        self._set_status(BusinessStatus.RESERVING_SIM, f"Réservation de la SIM {data.iccid}")

        async def release_sim() -> None:
            await self._compensating(
                names.INVENTORY_RELEASE_SIM,
                ReleaseSim(
                    org_id=data.org_id,
                    iccid=data.iccid,
                    line_id=data.line_id,
                    reservation_key=wf_id,
                    actor=actor,
                    reason=self.failure or "",
                ),
            )

        compensations.append(("release_sim", release_sim))
        reserved = await self._db(
            names.INVENTORY_RESERVE_SIM,
            ReserveSim(
                org_id=data.org_id,
                company_id=data.company_id,
                line_id=data.line_id,
                iccid=data.iccid,
                plan_id=data.plan_id,
                end_user_id=data.end_user_id,
                reservation_key=wf_id,
                actor=actor,
            ),
            ReservedSim,
        )
        self._deployment_id = reserved.deployment_id

        # 2. The number: allocated from the organisation's ranges, chosen, or ported in (RIO checked).
        self._set_status(BusinessStatus.ALLOCATING_NUMBER, "Attribution du numéro")

        async def release_number() -> None:
            await self._compensating(names.INVENTORY_RELEASE_MSISDN, ReleaseMsisdn(reservation_key=wf_id))

        compensations.append(("release_msisdn", release_number))
        number = await self._db(
            names.INVENTORY_ALLOCATE_MSISDN,
            AllocateMsisdn(
                org_id=data.org_id,
                line_id=data.line_id,
                reservation_key=wf_id,
                msisdn=data.msisdn,
                port_in_msisdn=data.port_in_msisdn,
                port_in_rio=data.port_in_rio,
            ),
            AllocatedMsisdn,
        )
        self.msisdn = number.msisdn
        self._set_msisdn(number.msisdn, number.msisdn_hash)
        ctx = await self._db(
            names.INVENTORY_LOAD_ACTIVATION,
            LoadActivation(
                org_id=data.org_id,
                line_id=data.line_id,
                company_id=data.company_id,
                plan_id=data.plan_id,
                end_user_id=data.end_user_id,
            ),
            ActivationContext,
        )

        # 3. SNAIC: the supplier line, completed asynchronously.
        self._set_status(BusinessStatus.CREATING_SUPPLIER_LINE, f"Création de la ligne {number.msisdn} chez SNAIC")
        create_reference = snaic_reference(wf_id, "create_line")

        async def cancel_supplier_line() -> None:
            placed = await self._external(
                "compensate_snaic_line",
                ExternalSystem.SNAIC,
                names.PROV_SNAIC_CANCEL_LINE,
                SnaicCancelLine(
                    iccid=data.iccid,
                    known_line_id=self.snaic_line_id,
                    create_reference=create_reference,
                    reference=snaic_reference(wf_id, "compensate_line"),
                    idempotency_key=f"{key}:compensate_line",
                ),
                SnaicOrderPlaced,
                compensation=True,
            )
            if placed.order_id:
                outcome = await self._await_order("compensate_snaic_line", placed, data.snaic_sla_s, data.snaic_poll_s)
                if outcome.status != SnaicOrderStatus.COMPLETED:
                    raise StepFailed("compensate_snaic_line", outcome.reason or outcome.status)

        compensations.append(("snaic_cancel_line", cancel_supplier_line))
        placed = await self._external(
            "snaic_create_line",
            ExternalSystem.SNAIC,
            names.PROV_SNAIC_CREATE_LINE,
            SnaicCreateLine(
                iccid=data.iccid,
                msisdn=number.msisdn,
                offer_code=ctx.offer_code,
                port_in_rio=number.port_in_rio,
                reference=create_reference,
                idempotency_key=f"{key}:create_line",
            ),
            SnaicOrderPlaced,
        )
        self.snaic_line_id = placed.line_id
        outcome = await self._await_order("snaic_create_line", placed, data.snaic_sla_s, data.snaic_poll_s)
        if outcome.status != SnaicOrderStatus.COMPLETED:
            raise StepFailed("snaic_create_line", outcome.reason or outcome.status)

        # 4. OCS: the account (named after the line) and the plan allowance.
        self._set_status(BusinessStatus.CREATING_OCS_ACCOUNT, "Compte OCS et solde initial du forfait")
        account = data.line_id

        async def remove_account() -> None:
            await self._external(
                "compensate_ocs_account",
                ExternalSystem.OCS,
                names.PROV_OCS_REMOVE_ACCOUNT,
                OcsAccountRequest(account=account, request_id=f"{key}:compensate_ocs_account"),
                ExternalCallResult,
                compensation=True,
            )

        compensations.append(("ocs_remove_account", remove_account))
        await self._external(
            "ocs_create_account",
            ExternalSystem.OCS,
            names.PROV_OCS_CREATE_ACCOUNT,
            OcsAccountRequest(account=account, request_id=f"{key}:ocs_account"),
            ExternalCallResult,
        )
        now = workflow.now()
        expiry = now + timedelta(days=ctx.validity_days)
        await self._external(
            "ocs_grant_plan",
            ExternalSystem.OCS,
            names.PROV_OCS_GRANT_PLAN,
            OcsGrant(
                account=account,
                balance_id=plan_balance_id(data.plan_id),
                value_bytes=ctx.data_allowance_bytes,
                expiry=expiry,
                weight=PLAN_BALANCE_WEIGHT,
                request_id=f"{key}:ocs_plan",
            ),
            ExternalCallResult,
        )

        # 5. CFAST: the hierarchy (fetched or created when ids are missing), then the service line.
        self._set_status(BusinessStatus.CREATING_BILLING_LINE, "Ligne de service CFAST")
        site_id = await self._ensure_cfast_hierarchy(ctx, data.company_id)
        start_date = now.date()

        async def terminate_service() -> None:
            await self._external(
                "compensate_cfast_service",
                ExternalSystem.CFAST,
                names.PROV_CFAST_TERMINATE_SERVICE,
                CfastServiceRef(
                    service_id=self.cfast_service_id,
                    service_label=number.msisdn,
                    site_id=site_id,
                    article_code=ctx.offer_code,
                    start_date=start_date,
                    termination_date=start_date,
                    idempotency_key=f"{key}:compensate_cfast_service",
                ),
                ExternalCallResult,
                compensation=True,
            )

        compensations.append(("cfast_terminate_service", terminate_service))
        service = await self._external(
            "cfast_create_service",
            ExternalSystem.CFAST,
            names.PROV_CFAST_ENSURE_SERVICE,
            CfastEnsureService(
                site_id=site_id,
                service_label=number.msisdn,
                last_name=ctx.user_last_name,
                first_name=ctx.user_first_name,
                article_code=ctx.offer_code,
                article_label=ctx.plan_name,
                article_periodic_price=ctx.price_minor,
                periodic_buy_price=ctx.purchase_price_minor,
                start_date=start_date,
                idempotency_key=f"{key}:cfast_service",
            ),
            ExternalCallResult,
        )
        self.cfast_service_id = service.object_id

        # 6. Done: line active, number assigned, SIM ready for activation (active on first usage).
        await self._db(
            names.INVENTORY_FINALIZE_ACTIVATION,
            FinalizeActivation(
                org_id=data.org_id,
                line_id=data.line_id,
                iccid=data.iccid,
                reservation_key=wf_id,
                company_id=data.company_id,
                plan_id=data.plan_id,
                end_user_id=data.end_user_id,
                billing_site_id=ctx.billing_site_id,
                parc_id=ctx.parc_id,
                next_renewal_on=expiry.date(),
                actor=actor,
                workflow_id=wf_id,
                snaic_line_id=self.snaic_line_id,
                ocs_account=account,
                cfast_service_id=service.object_id,
                cfast_service_label=number.msisdn,
                deployment_id=self._deployment_id,
            ),
        )
        if workflow.patched(START_SUBSCRIPTION_PATCH):
            await self._start_subscription(data)
        self._set_status(BusinessStatus.READY_FOR_ACTIVATION, f"Ligne {number.msisdn} prête, SIM prête à l'activation")
        return SimActivationResult(
            line_id=data.line_id,
            iccid=data.iccid,
            msisdn=number.msisdn,
            status=BusinessStatus.READY_FOR_ACTIVATION,
            snaic_line_id=self.snaic_line_id,
            ocs_account=account,
            cfast_service_id=service.object_id,
            subscription_workflow_id=self.subscription_workflow_id,
        )

    async def _start_subscription(self, data: SimActivationInput) -> None:
        """7. The subscription workflow of a line on a renewing plan, started (or joined) by a local activity
        with the reconciler's start. The line is active whatever happens here: a start that keeps failing is
        left to the daily reconciler, never compensated."""
        try:
            started = await workflow.execute_local_activity(
                names.SUBSCRIPTION_START_FOR_LINE,
                StartLineSubscription(org_id=data.org_id, line_id=data.line_id),
                result_type=LineSubscriptionStarted,
                start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                retry_policy=policies.EXTERNAL_CALL_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("subscription of line %s not started (the reconciler will): %s", data.line_id, err)
            return
        self.subscription_workflow_id = started.workflow_id
