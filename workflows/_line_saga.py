"""What the line workflows share on top of the saga kit (`workflows/_saga.py`): business status with search
attributes, the SNAIC callback signal, MAJ references per attempt, and staff answering a compensation that
failed for good (`resolve_compensation`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from domain.contracts import (
        SNAIC_ORDER_SIGNAL,
        CfastCustomerInput,
        CfastCustomerResult,
        ExternalCallResult,
        OcsRemoveRequest,
        SaveCfastIds,
        SnaicOrderPoll,
        SnaicOrderUpdate,
    )
    from domain.enums import SNAIC_SETTLED_ORDER_STATUSES, BusinessStatus, ExternalSystem, SnaicOrderStatus
    from domain.errors import ErrorCode
    from domain.lifecycle_contracts import (
        ActivationContext,
        AttentionState,
        OcsGrant,
        ResolveCompensation,
        SnaicOrderPlaced,
        SnaicOrderQuery,
    )
    from workflows import _saga as saga
    from workflows import activity_names as names
    from workflows._saga import Compensation
    from workflows._search import BUSINESS_STATUS, MSISDN, MSISDN_HASH, MSISDN_HASH_PATCH
    from workflows.cfast_customer import ACTIVATION_STEPS_BEFORE_KIT, CFAST_STEPS, ensure_cfast_hierarchy

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Runs started with this patch wait for staff when a compensation fails for good (`resolve_compensation`);
# runs started before it end `needs_attention` at once, as they did.
COMPENSATION_WAITS_PATCH = "compensation-waits-for-staff"
COMPENSATION_ACTIONS = ("retry", "resolved_manually")
# Runs started with this patch call one activity per external call (`snaic.get_order`,
# `ocs.remove_balance`) and name the CFAST steps as the CFAST customer workflow does; runs started before
# it call the `provisioning.*` twins, still registered (docs/decisions.md).
ONE_ACTIVITY_PER_CALL_PATCH = "one-activity-per-external-call"


class LineSaga:
    """Base of the line workflows (not a workflow itself)."""

    def __init__(self) -> None:
        self.status = BusinessStatus.STARTING
        self.details = ""
        self._orders: dict[str, SnaicOrderUpdate] = {}
        self._attempts: dict[str, int] = {}
        self._org_id = ""
        self._company_id: str | None = None
        self._line_id: str | None = None
        self._deployment_id: str | None = None
        # Base of side-effect keys and MAJ references: the workflow id, plus what makes this attempt unique
        # when a workflow id may run again (a new activation of the SIM after a failed one, a new termination
        # request after a cancelled one). Never the run id: a staff Reset must not repeat side effects.
        self._key = ""
        self.attention: str | None = None
        self.attention_since: datetime | None = None
        self._awaiting_staff = False
        self._compensation_answer: ResolveCompensation | None = None

    # --- messages ----------------------------------------------------------------------------------

    @workflow.signal(name=SNAIC_ORDER_SIGNAL)
    def snaic_order_update(self, update: SnaicOrderUpdate) -> None:
        """SNAIC's callback, routed here by the API from the order's reference."""
        self._orders[update.order_id] = update

    @workflow.query
    def business_status(self) -> str:
        return self.status

    @workflow.query
    def attention_state(self) -> AttentionState:
        """Why the workflow waits for staff, and since when (none while it does not)."""
        if not self._awaiting_staff:
            return AttentionState(status=self.status)
        return AttentionState(status=self.status, attention=self.attention, since=self.attention_since)

    @workflow.update
    def resolve_compensation(self, answer: ResolveCompensation) -> str:
        """Staff answer a compensation that failed for good: retry it, or confirm it was undone by hand."""
        self._compensation_answer = answer
        return answer.action

    @resolve_compensation.validator
    def _validate_resolve_compensation(self, answer: ResolveCompensation) -> None:
        if not self._awaiting_staff:
            raise ApplicationError(
                f"no compensation waits for staff ({self.status})", type=ErrorCode.RESOLUTION_NOT_AWAITED
            )
        if answer.action not in COMPENSATION_ACTIONS:
            raise ApplicationError(f"unknown action {answer.action!r}", type=ErrorCode.RESOLUTION_UNKNOWN_ACTION)

    # --- helpers -----------------------------------------------------------------------------------

    def _set_status(self, status: BusinessStatus, details: str) -> None:
        self.status = status
        self.details = details
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        workflow.set_current_details(details)

    def _set_msisdn(self, msisdn: str, msisdn_hash: str) -> None:
        """Indexes the workflow by its line's keyed hash (computed by the activity that read the number)."""
        if workflow.patched(MSISDN_HASH_PATCH):
            if msisdn_hash:
                workflow.upsert_search_attributes([MSISDN_HASH.value_set(msisdn_hash)])
        elif msisdn:
            workflow.upsert_search_attributes([MSISDN.value_set(msisdn)])

    async def _db(self, activity: str, arg: object, result_type: type[T] | None = None) -> T:
        """A database step (local activity): a bulk activation of a thousand SIMs keeps up because a chain
        of them completes inside one workflow task."""
        return await saga.local_step(activity, arg, result_type)

    async def _compensating(self, activity: str, arg: object, result_type: type[T] | None = None) -> T:
        return await saga.compensating(activity, arg, result_type)

    def _reference(self, step: str) -> str:
        """The MAJ reference of a step: unique per attempt, deterministic on replay."""
        count = self._attempts.get(step, 0) + 1
        self._attempts[step] = count
        base = self._key or workflow.info().workflow_id
        return f"{base}:{step}" if count == 1 else f"{base}:{step}#{count}"

    def _scope(self) -> saga.MajScope:
        return saga.MajScope(
            org_id=self._org_id, company_id=self._company_id, deployment_id=self._deployment_id, line_id=self._line_id
        )

    async def _record(self, step: str, system: ExternalSystem, **fields: Any) -> None:
        """One update (MAJ) record (`sent`, `answer`, `ids`, `error`); a local activity."""
        await saga.record(self._scope(), self._reference(step), system, step, **fields)

    async def _external(
        self,
        step: str,
        system: ExternalSystem,
        activity: str,
        arg: object,
        result_type: type[M],
        *,
        compensation: bool = False,
    ) -> M:
        """An external push with its MAJ record (ok with ids, or the error), then the result."""

        async def recorder(**fields: Any) -> None:
            await self._record(step, system, **fields)

        return await saga.external(recorder, activity, arg, result_type, compensation=compensation)

    async def _await_order(self, step: str, placed: SnaicOrderPlaced, sla_s: int, poll_s: int) -> SnaicOrderUpdate:
        """Waits for SNAIC's callback; polls the order every `poll_s`; gives `timeout` after `sla_s`."""
        order_id = placed.order_id
        if placed.status in SNAIC_SETTLED_ORDER_STATUSES:
            outcome = SnaicOrderUpdate(order_id=order_id, line_id=placed.line_id, status=placed.status)
        else:
            outcome = await saga.await_snaic_order(
                order_id,
                arrived=lambda: self._orders.get(order_id),
                poll=lambda: self._poll_order(order_id),
                sla=timedelta(seconds=max(1, sla_s)),
                poll_every=timedelta(seconds=max(1, min(poll_s, sla_s))),
                line_id=placed.line_id,
            )
        answer = outcome.model_dump(mode="json")
        error = None if outcome.status == SnaicOrderStatus.COMPLETED else (outcome.reason or outcome.status)
        await self._record(
            f"{step}_result", ExternalSystem.SNAIC, sent={"order_id": order_id}, answer=answer, error=error
        )
        return outcome

    async def _poll_order(self, order_id: str) -> SnaicOrderUpdate:
        if workflow.patched(ONE_ACTIVITY_PER_CALL_PATCH):
            return await saga.call(names.SNAIC_GET_ORDER, SnaicOrderPoll(order_id=order_id), SnaicOrderUpdate)
        return await saga.call(names.PROV_SNAIC_GET_ORDER, SnaicOrderQuery(order_id=order_id), SnaicOrderUpdate)

    async def _remove_ocs_balance(
        self, step: str, account: str, balance_id: str, request_id: str, *, compensation: bool = False
    ) -> None:
        """Removes exactly that OCS balance, with its MAJ record."""
        request: OcsRemoveRequest | OcsGrant
        if workflow.patched(ONE_ACTIVITY_PER_CALL_PATCH):
            activity = names.OCS_REMOVE_BALANCE
            request = OcsRemoveRequest(account=account, balance_id=balance_id, request_id=request_id)
        else:
            activity = names.PROV_OCS_REMOVE_BALANCE
            request = OcsGrant(account=account, balance_id=balance_id, value_bytes=0, request_id=request_id)
        await self._external(step, ExternalSystem.OCS, activity, request, ExternalCallResult, compensation=compensation)

    async def _ask_staff(self, failed: list[Compensation], errors: list[str]) -> saga.StaffDecision:
        """With COMPENSATION_WAITS_PATCH, compensations that failed for good wait in `needs_attention` for
        staff, who retry them or confirm they were undone by hand (`resolve_compensation`)."""
        if not workflow.patched(COMPENSATION_WAITS_PATCH):
            return None
        self.attention = "Compensation incomplète : " + "; ".join(errors)
        self.attention_since = workflow.now()
        self._compensation_answer = None
        self._awaiting_staff = True
        self._set_status(BusinessStatus.NEEDS_ATTENTION, self.attention)
        await workflow.wait_condition(lambda: self._compensation_answer is not None)
        answer = self._compensation_answer
        assert answer is not None
        self._awaiting_staff = False
        self.attention = self.attention_since = None
        if answer.action == "resolved_manually":
            workflow.logger.info("undone by hand: %s", answer.note)
            return "resolved_manually"
        self._set_status(BusinessStatus.COMPENSATING, f"Nouvelle tentative demandée par {answer.requested_by}")
        return "retry"

    async def _run_compensations(self, compensations: list[Compensation]) -> list[str]:
        """Every registered compensation in reverse; returns the ones that failed for good (and were not
        resolved by staff)."""
        return await saga.run_compensations(compensations, ask_staff=self._ask_staff)


class CfastHierarchy(LineSaga):
    """The company's CFAST customer (1000), billing point (5000) and site (9000): ids known in our database
    are used as they are, missing ones are fetched or created on the fly (seed 003) and saved."""

    async def _ensure_cfast_hierarchy(self, ctx: ActivationContext, company_id: str) -> str:
        if ctx.cfast_customer_id and ctx.cfast_billing_point_id and ctx.cfast_site_id:
            return ctx.cfast_site_id
        # Runs started before the saga kit keep their step names and keys (recorded in their history).
        steps = CFAST_STEPS if workflow.patched(ONE_ACTIVITY_PER_CALL_PATCH) else ACTIVATION_STEPS_BEFORE_KIT

        async def external(step: str, activity: str, request: object) -> ExternalCallResult:
            return await self._external(step, ExternalSystem.CFAST, activity, request, ExternalCallResult)

        async def save(ids: SaveCfastIds) -> None:
            await self._db(names.COMPANY_SAVE_CFAST_IDS, ids)

        company = CfastCustomerInput(
            org_id=self._org_id,
            company_id=company_id,
            customer_name=ctx.company_name,
            customer_reference=ctx.customer_reference,
            siret=ctx.siret,
            vat_number=ctx.vat_number,
            billing_site_id=ctx.billing_site_id,
            billing_site_label=ctx.billing_site_label,
            billing_address=ctx.billing_address,
            parc_id=ctx.parc_id,
            parc_label=ctx.parc_label,
            parc_type=ctx.parc_type,
        )
        known = CfastCustomerResult(
            customer_id=ctx.cfast_customer_id or "",
            billing_point_id=ctx.cfast_billing_point_id or "",
            site_id=ctx.cfast_site_id or "",
        )
        ids = await ensure_cfast_hierarchy(
            external, save, self._key or workflow.info().workflow_id, company, known=known, steps=steps
        )
        return ids.site_id
