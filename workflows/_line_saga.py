"""What the line workflows share: business status with search attributes, activity calls with their named
policies, update (MAJ) records of every external push, and waiting for an asynchronous SNAIC order
(callback signal, polling as fallback, SLA timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from domain.contracts import (
        SNAIC_ORDER_SIGNAL,
        EnsureCfastBillingPoint,
        EnsureCfastCustomer,
        EnsureCfastSite,
        ExternalCallResult,
        SaveCfastIds,
        SnaicOrderUpdate,
        UpdateRecordInput,
    )
    from domain.enums import ExternalSystem, MajStatus
    from domain.lifecycle_contracts import ActivationContext, SnaicOrderPlaced, SnaicOrderQuery
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS, MSISDN, MSISDN_HASH, MSISDN_HASH_PATCH

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Compensation = tuple[str, Callable[[], Awaitable[None]]]


class StepFailed(Exception):
    """A step failed for good (supplier refusal, SLA exceeded): the saga compensates."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def reason_of(err: BaseException) -> str:
    """A readable reason from an activity / child / step failure (never its stack)."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, StepFailed):
        return str(cause)
    return str(cause or err)


def error_type(err: BaseException) -> str | None:
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return cause.type if isinstance(cause, ApplicationError) else None


class LineSaga:
    """Base of the line workflows (not a workflow itself)."""

    def __init__(self) -> None:
        self.status = "starting"
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

    # --- messages ----------------------------------------------------------------------------------

    @workflow.signal(name=SNAIC_ORDER_SIGNAL)
    def snaic_order_update(self, update: SnaicOrderUpdate) -> None:
        """SNAIC's callback, routed here by the API from the order's reference."""
        self._orders[update.order_id] = update

    @workflow.query
    def business_status(self) -> str:
        return self.status

    # --- helpers -----------------------------------------------------------------------------------

    def _set_status(self, status: str, details: str) -> None:
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
        """A database step: short, retried until the database answers. Run as a local activity: a chain
        of them completes inside one workflow task (no server round trip each), which is what lets a bulk
        activation of a thousand SIMs keep up."""
        result: T = await workflow.execute_local_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )
        return result

    async def _compensating(self, activity: str, arg: object, result_type: type[T] | None = None) -> T:
        """A compensation: retried until it succeeds (each one is idempotent)."""
        result: T = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=policies.COMPENSATION_TIMEOUT,
            retry_policy=policies.COMPENSATION_RETRY,
        )
        return result

    def _reference(self, step: str) -> str:
        """The MAJ reference of a step: unique per attempt, deterministic on replay."""
        count = self._attempts.get(step, 0) + 1
        self._attempts[step] = count
        base = self._key or workflow.info().workflow_id
        return f"{base}:{step}" if count == 1 else f"{base}:{step}#{count}"

    async def _record(
        self,
        step: str,
        system: ExternalSystem,
        *,
        sent: dict[str, Any] | None = None,
        answer: dict[str, Any] | None = None,
        ids: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """One update (MAJ) record; a local activity, so the history stays short."""
        await workflow.execute_local_activity(
            names.RECORD_UPDATE,
            UpdateRecordInput(
                reference=self._reference(step),
                org_id=self._org_id,
                company_id=self._company_id,
                deployment_id=self._deployment_id,
                line_id=self._line_id,
                workflow_id=workflow.info().workflow_id,
                system=system,
                operation=step,
                status=MajStatus.ERROR if error else MajStatus.OK,
                sent=sent or {},
                answer=answer or {},
                ids_obtained=ids or {},
                error=error,
            ),
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )

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
        try:
            result: M = await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=policies.COMPENSATION_TIMEOUT
                if compensation
                else policies.EXTERNAL_CALL_TIMEOUT,
                retry_policy=policies.COMPENSATION_RETRY if compensation else policies.EXTERNAL_CALL_RETRY,
            )
        except ActivityError as err:
            await self._record(step, system, sent=_sent_of(arg), error=reason_of(err))
            raise
        sent, answer, ids = _maj_of(result)
        await self._record(step, system, sent=sent, answer=answer, ids=ids)
        return result

    async def _await_order(self, step: str, placed: SnaicOrderPlaced, sla_s: int, poll_s: int) -> SnaicOrderUpdate:
        """Waits for SNAIC's callback; polls the order every `poll_s`; gives `timeout` after `sla_s`."""
        order_id = placed.order_id
        if placed.status in ("completed", "rejected"):
            outcome = SnaicOrderUpdate(order_id=order_id, line_id=placed.line_id, status=placed.status)
        else:
            outcome = await self._wait_for_order(order_id, placed.line_id, sla_s, poll_s)
        answer = outcome.model_dump(mode="json")
        error = None if outcome.status == "completed" else (outcome.reason or outcome.status)
        await self._record(
            f"{step}_result", ExternalSystem.SNAIC, sent={"order_id": order_id}, answer=answer, error=error
        )
        return outcome

    async def _wait_for_order(self, order_id: str, line_id: str, sla_s: int, poll_s: int) -> SnaicOrderUpdate:
        sla = timedelta(seconds=max(1, sla_s))
        poll_every = timedelta(seconds=max(1, min(poll_s, sla_s)))
        waited = timedelta(0)
        while True:
            try:
                await workflow.wait_condition(lambda: order_id in self._orders, timeout=poll_every)
            except TimeoutError:
                waited += poll_every
            else:
                return self._orders[order_id]
            polled: SnaicOrderUpdate = await workflow.execute_activity(
                names.PROV_SNAIC_GET_ORDER,
                SnaicOrderQuery(order_id=order_id),
                result_type=SnaicOrderUpdate,
                start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                retry_policy=policies.EXTERNAL_CALL_RETRY,
            )
            if polled.status != "pending":
                return polled
            if waited >= sla:
                return SnaicOrderUpdate(
                    order_id=order_id,
                    line_id=line_id,
                    status="timeout",
                    reason=f"aucune réponse de SNAIC sous {int(sla.total_seconds())} s",
                )

    async def _run_compensations(self, compensations: list[Compensation]) -> list[str]:
        """Runs every registered compensation in reverse; returns the ones that failed for good."""
        failed: list[str] = []
        for name, compensate in reversed(compensations):
            try:
                await compensate()
            except (ActivityError, ApplicationError, StepFailed) as err:
                workflow.logger.warning("compensation %s failed: %s", name, reason_of(err))
                failed.append(f"{name}: {reason_of(err)}")
        return failed


def _sent_of(arg: object) -> dict[str, Any]:
    if isinstance(arg, BaseModel):
        return {k: v for k, v in arg.model_dump(mode="json").items() if k not in ("idempotency_key", "port_in_rio")}
    return {}


def _maj_of(result: object) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    if isinstance(result, ExternalCallResult):
        ids = {"id": result.object_id, "fetched_existing": result.fetched_existing} if result.object_id else {}
        return result.sent, result.answer, ids
    if isinstance(result, SnaicOrderPlaced):
        ids = {"order_id": result.order_id, "line_id": result.line_id} if result.order_id else {}
        return result.sent, result.answer, ids
    if isinstance(result, BaseModel):
        return {}, result.model_dump(mode="json"), {}
    return {}, {}, {}


def is_cancellation(err: BaseException) -> bool:
    return isinstance(err, asyncio.CancelledError) or is_cancelled_exception(err)


class CfastHierarchy(LineSaga):
    """The company's CFAST customer (1000), billing point (5000) and site (9000): ids known in our database
    are used as they are, missing ones are fetched or created on the fly (seed 003) and saved."""

    async def _ensure_cfast_hierarchy(self, ctx: ActivationContext, company_id: str) -> str:
        if ctx.cfast_customer_id and ctx.cfast_billing_point_id and ctx.cfast_site_id:
            return ctx.cfast_site_id
        base = self._key or workflow.info().workflow_id
        customer_id = ctx.cfast_customer_id
        if not customer_id:
            customer = await self._external(
                "cfast_ensure_customer",
                ExternalSystem.CFAST,
                names.CFAST_ENSURE_CUSTOMER,
                EnsureCfastCustomer(
                    idempotency_key=f"{base}:cfast_customer",
                    customer_name=ctx.company_name,
                    customer_reference=ctx.customer_reference,
                    siret=ctx.siret,
                    vat_number=ctx.vat_number,
                ),
                ExternalCallResult,
            )
            customer_id = customer.object_id
        billing_point = await self._external(
            "cfast_ensure_billing_point",
            ExternalSystem.CFAST,
            names.CFAST_ENSURE_BILLING_POINT,
            EnsureCfastBillingPoint(
                idempotency_key=f"{base}:cfast_billing_point",
                customer_id=customer_id,
                label=ctx.billing_site_label,
                address=ctx.billing_address,
                known_billing_point_id=ctx.cfast_billing_point_id,
            ),
            ExternalCallResult,
        )
        site = await self._external(
            "cfast_ensure_site",
            ExternalSystem.CFAST,
            names.CFAST_ENSURE_SITE,
            EnsureCfastSite(
                idempotency_key=f"{base}:cfast_site",
                billing_point_id=billing_point.object_id,
                label=ctx.parc_label,
                parc_type=ctx.parc_type,
                known_site_id=ctx.cfast_site_id,
            ),
            ExternalCallResult,
        )
        await self._db(
            names.COMPANY_SAVE_CFAST_IDS,
            SaveCfastIds(
                org_id=self._org_id,
                company_id=company_id,
                billing_site_id=ctx.billing_site_id,
                parc_id=ctx.parc_id,
                customer_id=customer_id,
                billing_point_id=billing_point.object_id,
                site_id=site.object_id,
            ),
        )
        return site.object_id
