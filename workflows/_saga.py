"""The saga kit every saga workflow uses (top-up, SIM activation, line operations, CFAST customer,
deprovisioning): the step failure, reasons and error codes of failures, activity calls with their named
policies, update (MAJ) records of external pushes, the wait for an asynchronous SNAIC order (callback,
polling as fallback, SLA) and the compensation runner that asks staff when a compensation fails for good.

Plain functions, no base class: each workflow keeps its own state and messages and hands the kit what
differs (how an order's callback is read, how the order is polled, how staff are asked)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from domain.contracts import ExternalCallResult, SnaicOrderUpdate, UpdateRecordInput
    from domain.enums import ExternalSystem, MajStatus, SnaicOrderStatus
    from domain.errors import ErrorCode, code_of
    from domain.lifecycle_contracts import SnaicOrderPlaced
    from workflows import _policies as policies
    from workflows import activity_names as names

T = TypeVar("T")

Compensation = tuple[str, Callable[[], Awaitable[None]]]
# What staff decide about compensations that failed for good: run them again, or they were undone by hand.
# `None`: nobody is asked, the failures are returned as they are.
StaffDecision = Literal["retry", "resolved_manually"] | None
AskStaff = Callable[[list[Compensation], list[str]], Awaitable[StaffDecision]]


class StepFailed(Exception):
    """A step failed for good (supplier refusal, SLA exceeded): the saga compensates."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def root_cause(err: BaseException) -> BaseException:
    """The failure under the activity / child workflow wrappers."""
    cause: BaseException = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return cause


def reason_of(err: BaseException) -> str:
    """A readable reason from an activity / child / step failure (never its stack)."""
    cause = root_cause(err)
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause)


def error_code_of(err: BaseException) -> ErrorCode:
    """The catalogue code of a failure (its `type`, set once at the activity boundary; the type strings of
    histories recorded before the catalogue read as their code). Workflows branch on it, never on the words
    of a type or a message."""
    return code_of(err)


def is_cancellation(err: BaseException) -> bool:
    return isinstance(err, asyncio.CancelledError) or is_cancelled_exception(err)


def _cancellation(wait: bool) -> ActivityCancellationType:
    # Waiting for the attempt in flight on cancellation: its effect (a credit, a charge) lands before the
    # compensations run, never after them.
    return ActivityCancellationType.WAIT_CANCELLATION_COMPLETED if wait else ActivityCancellationType.TRY_CANCEL


# --- activity calls ------------------------------------------------------------------------------------


async def local_step(
    activity: str, arg: object, result_type: type[T] | None = None, *, wait_cancellation: bool = False
) -> T:
    """A database step: short, retried until the database answers. A local activity: a chain of them
    completes inside one workflow task, without a round trip through the server each."""
    result: T = await workflow.execute_local_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=policies.DATABASE_TIMEOUT,
        retry_policy=policies.DATABASE_RETRY,
        cancellation_type=_cancellation(wait_cancellation),
    )
    return result


async def call(
    activity: str,
    arg: object,
    result_type: type[T] | None = None,
    *,
    timeout: timedelta = policies.EXTERNAL_CALL_TIMEOUT,  # noqa: ASYNC109 - an activity timeout
    retry: RetryPolicy = policies.EXTERNAL_CALL_RETRY,
    schedule_to_close: timedelta | None = None,
    wait_cancellation: bool = False,
) -> T:
    """An activity on the worker's task queue (an external call by default policies)."""
    result: T = await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=timeout,
        schedule_to_close_timeout=schedule_to_close,
        retry_policy=retry,
        cancellation_type=_cancellation(wait_cancellation),
    )
    return result


async def compensating(activity: str, arg: object, result_type: type[T] | None = None) -> T:
    """A compensation: retried until it succeeds (each one is idempotent)."""
    return await call(
        activity, arg, result_type, timeout=policies.COMPENSATION_TIMEOUT, retry=policies.COMPENSATION_RETRY
    )


# --- update (MAJ) records ------------------------------------------------------------------------------


class MajScope(BaseModel):
    """What a MAJ record is attached to, besides its workflow."""

    org_id: str
    company_id: str | None = None
    deployment_id: str | None = None
    line_id: str | None = None


def maj_entry(
    scope: MajScope,
    reference: str,
    system: ExternalSystem,
    operation: str,
    *,
    workflow_id: str,
    sent: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
    ids: dict[str, Any] | None = None,
    error: str | None = None,
) -> UpdateRecordInput:
    """The update (MAJ) record of one external push, for a saga that writes it with others (the top-up)."""
    return UpdateRecordInput(
        reference=reference,
        org_id=scope.org_id,
        company_id=scope.company_id,
        deployment_id=scope.deployment_id,
        line_id=scope.line_id,
        workflow_id=workflow_id,
        system=system,
        operation=operation,
        status=MajStatus.ERROR if error else MajStatus.OK,
        sent=sent or {},
        answer=answer or {},
        ids_obtained=ids or {},
        error=error,
    )


async def record(
    scope: MajScope,
    reference: str,
    system: ExternalSystem,
    operation: str,
    *,
    sent: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
    ids: dict[str, Any] | None = None,
    error: str | None = None,
    local: bool = True,
    wait_cancellation: bool = False,
) -> None:
    """One update (MAJ) record, ok or with its error; `reference` makes it written once."""
    entry = maj_entry(
        scope,
        reference,
        system,
        operation,
        workflow_id=workflow.info().workflow_id,
        sent=sent,
        answer=answer,
        ids=ids,
        error=error,
    )
    if local:
        await local_step(names.RECORD_UPDATE, entry, wait_cancellation=wait_cancellation)
    else:  # runs recorded before the kit wrote their records as regular activities
        await call(names.RECORD_UPDATE, entry, timeout=policies.DATABASE_TIMEOUT, retry=policies.DATABASE_RETRY)


def sent_of(arg: object) -> dict[str, Any]:
    """What a request sends, without its idempotency key or secrets."""
    if isinstance(arg, BaseModel):
        return {k: v for k, v in arg.model_dump(mode="json").items() if k not in ("idempotency_key", "port_in_rio")}
    return {}


def maj_of(result: object) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(sent, answer, ids obtained) of an external call's result."""
    if isinstance(result, ExternalCallResult):
        ids = {"id": result.object_id, "fetched_existing": result.fetched_existing} if result.object_id else {}
        return result.sent, result.answer, ids
    if isinstance(result, SnaicOrderPlaced):
        ids = {"order_id": result.order_id, "line_id": result.line_id} if result.order_id else {}
        return result.sent, result.answer, ids
    if isinstance(result, BaseModel):
        return {}, result.model_dump(mode="json"), {}
    return {}, {}, {}


Recorder = Callable[..., Awaitable[None]]


async def external(
    recorder: Recorder,
    activity: str,
    arg: object,
    result_type: type[T],
    *,
    compensation: bool = False,
) -> T:
    """An external push with its MAJ record (ok with ids, or the error), then the result. `recorder`
    writes the record: called with `sent`, `answer`, `ids` or `error`."""
    try:
        if compensation:
            result: T = await compensating(activity, arg, result_type)
        else:
            result = await call(activity, arg, result_type)
    except ActivityError as err:
        await recorder(sent=sent_of(arg), error=reason_of(err))
        raise
    sent, answer, ids = maj_of(result)
    await recorder(sent=sent, answer=answer, ids=ids)
    return result


# --- SNAIC orders --------------------------------------------------------------------------------------


def snaic_timeout(order_id: str, line_id: str, sla: timedelta) -> SnaicOrderUpdate:
    return SnaicOrderUpdate(
        order_id=order_id,
        line_id=line_id,
        status=SnaicOrderStatus.TIMEOUT,
        reason=f"aucune réponse de SNAIC sous {int(sla.total_seconds())} s",
    )


SNAIC_WAIT_SKIPS_PENDING = "snaic-wait-skips-pending-callback"


async def await_snaic_order(
    order_id: str,
    *,
    arrived: Callable[[], SnaicOrderUpdate | None],
    poll: Callable[[], Awaitable[SnaicOrderUpdate]],
    sla: timedelta,
    poll_every: timedelta,
    line_id: str | None = None,
) -> SnaicOrderUpdate:
    """Waits for SNAIC's callback (`arrived`, fed by the workflow's signal); polls the order (`poll`) each
    `poll_every` it does not come; after `sla`, the outcome is `timeout`. `line_id` of the timeout: the
    line known when the order was placed, else the one the last poll read."""
    # Before this patch a pending callback ended every later wait at once: the order was polled back to back.
    pending_waits = workflow.patched(SNAIC_WAIT_SKIPS_PENDING)

    def answered() -> bool:
        update = arrived()
        return update is not None and not (pending_waits and update.status == SnaicOrderStatus.PENDING)

    waited = timedelta(0)
    while True:
        try:
            await workflow.wait_condition(answered, timeout=poll_every)
        except TimeoutError:
            waited += poll_every
        update = arrived()
        if update is not None and update.status != SnaicOrderStatus.PENDING:
            return update
        polled = await poll()
        if polled.status != SnaicOrderStatus.PENDING:
            return polled
        if waited >= sla:
            return snaic_timeout(order_id, polled.line_id if line_id is None else line_id, sla)


# --- compensations -------------------------------------------------------------------------------------


async def run_compensations(
    compensations: list[Compensation], *, ask_staff: AskStaff, shield: bool = False
) -> list[str]:
    """Runs the registered compensations in reverse; returns the failures left (`name: reason`), none when
    all succeeded or staff confirmed the failed ones were undone by hand. After a round with failures,
    `ask_staff` decides: retry the failed ones, resolved by hand, or `None` (stop, return the failures).
    `shield`: a compensation in flight is not cancelled with the workflow."""
    pending = list(reversed(compensations))
    while True:
        failed: list[Compensation] = []
        errors: list[str] = []
        for name, compensate in pending:
            try:
                if shield:
                    await asyncio.shield(asyncio.ensure_future(compensate()))
                else:
                    await compensate()
            except (ActivityError, ApplicationError, StepFailed) as err:
                workflow.logger.warning("compensation %s failed: %s", name, reason_of(err))
                failed.append((name, compensate))
                errors.append(f"{name}: {reason_of(err)}")
        if not failed:
            return []
        decision = await ask_staff(failed, errors)
        if decision is None:
            return errors
        if decision == "resolved_manually":
            workflow.logger.info("compensations %s undone by hand", errors)
            return []
        pending = failed
