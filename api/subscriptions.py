"""The subscription of a line, shared by the API (`/api/v1/lines/{id}/subscription|auto-renew|renewals`) and
the portal: its state as the database holds it, and the workflow's `set_auto_renew` and `renew_now` Updates.

A line on a renewing plan whose workflow is not running yet (the daily reconciler has not reached it) gets it
started here, with the reconciler's own start; a line on a plan that does not renew answers 409.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.subscriptions import renews
from api.deps import AppState
from api.routes.lines import load_line
from api.schemas import Request
from domain.audit import AuditEntry, record
from domain.authz import Action, Principal
from domain.enums import PlanType
from domain.errors import ErrorCode, IllegalTransition, NotFound, ResourceBusy, code_of
from domain.models import AuditLog, Line, Plan, SimCard, Subscription, Transaction
from domain.renewal_calendar import RenewalCalendar
from domain.subscription_contracts import RenewOutcome, charge_key
from infra.temporal import workflow_ui_url
from starters.subscriptions import start_subscription
from workflows.subscription import SubscriptionWorkflow

AutoRenewModeIn = Literal["on", "off", "prompt"]
# The workflow opens its subscription (first local activity) before it takes Updates.
OPENING_WAIT_S = 15.0
OPENING_POLL_S = 0.2
T = TypeVar("T")


class Reminder(BaseModel):
    days_before: int = Field(description="Jours avant l'échéance")
    on: date


class SubscriptionOut(BaseModel):
    line_id: str
    plan_id: str
    plan_name: str
    plan_type: str
    next_plan_id: str | None
    period: int = Field(description="Dernière période payée (0 : celle de l'activation)")
    period_start: date
    next_renewal_on: date = Field(description="Échéance de la période en cours")
    auto_renew_mode: str
    payment_method: str
    status: str
    dunning_stage: str | None
    dunning_since: date | None
    upcoming_reminders: list[Reminder]
    workflow_id: str
    workflow_url: str


class AutoRenewUpdate(Request):
    mode: AutoRenewModeIn = Field(
        description="on : renouvellement automatique ; off : expiration à l'échéance ; prompt : sur demande"
    )


class RenewalOut(BaseModel):
    line_id: str
    period: int = Field(description="La période payée par ce renouvellement")
    period_start: date
    period_end: date
    amount_minor: int
    currency: str
    transaction_reference: str
    workflow_id: str
    workflow_url: str


def upcoming_reminders(subscription: Subscription, plan_type: str, today: date) -> list[Reminder]:
    """The prepaid (or `prompt`) reminders of the current period not sent yet (dated today or later)."""
    if plan_type != PlanType.PREPAID and subscription.auto_renew_mode != "prompt":
        return []
    calendar = RenewalCalendar(anchor=subscription.anchor_on, validity_days=subscription.validity_days)
    return [Reminder(days_before=d, on=day) for d, day in calendar.reminder_dates(subscription.period) if day >= today]


async def _subscription_of(session: AsyncSession, line: Line) -> Subscription:
    subscription = await _find_subscription(session, line)
    if subscription is None:
        raise NotFound(None, "aucun abonnement n'est ouvert pour cette ligne", code=ErrorCode.NOT_FOUND)
    return subscription


async def subscription_out(session: AsyncSession, state: AppState, line: Line) -> SubscriptionOut:
    subscription = await _subscription_of(session, line)
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None  # a foreign key
    calendar = RenewalCalendar(anchor=subscription.anchor_on, validity_days=subscription.validity_days)
    return SubscriptionOut(
        line_id=line.id,
        plan_id=plan.id,
        plan_name=plan.name,
        plan_type=plan.plan_type,
        next_plan_id=subscription.next_plan_id,
        period=subscription.period,
        period_start=calendar.period_start(subscription.period),
        next_renewal_on=subscription.next_renewal_on,
        auto_renew_mode=subscription.auto_renew_mode,
        payment_method=subscription.payment_method,
        status=subscription.status,
        dunning_stage=subscription.dunning_stage,
        dunning_since=subscription.dunning_since,
        upcoming_reminders=upcoming_reminders(subscription, plan.plan_type, datetime.now(UTC).date()),
        workflow_id=subscription.workflow_id,
        workflow_url=workflow_ui_url(state.settings, subscription.workflow_id),
    )


async def read_subscription(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str
) -> SubscriptionOut:
    line = await load_line(session, principal, line_id, Action.READ)
    return await subscription_out(session, state, line)


async def _workflow(session: AsyncSession, state: AppState, line: Line) -> WorkflowHandle[SubscriptionWorkflow, object]:
    """The line's running subscription workflow, started if the reconciler has not yet. The request's
    transaction is committed first: the workflow's activities write the same rows while the API waits."""
    plan = await session.get(Plan, line.plan_id) if line.plan_id else None
    if plan is None or not renews(line, plan):
        raise IllegalTransition(
            None,
            "cette ligne n'a pas d'abonnement renouvelable (ligne active ou suspendue sur un forfait prépayé "
            "ou par abonnement, hors PAYGO et pools)",
            code=ErrorCode.LINE_INVALID_STATE,
        )
    iccid = (await session.get(SimCard, line.sim_id)).iccid if line.sim_id else None  # type: ignore[union-attr]
    await session.commit()
    await session.refresh(line)
    client: Client = await state.temporal()
    wf_id = await start_subscription(client, state.settings, line, iccid)
    return client.get_workflow_handle_for(SubscriptionWorkflow.run, wf_id)


async def _update(call: Callable[[], Awaitable[T]]) -> T:
    """Runs an Update, waiting while the workflow opens the subscription; a refusal of its validator is a 409
    with the workflow's French reason."""
    deadline = asyncio.get_running_loop().time() + OPENING_WAIT_S
    while True:
        try:
            return await call()
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            kind = getattr(cause, "type", None)
            if kind == "subscription.starting" and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(OPENING_POLL_S)
                continue
            message = getattr(cause, "message", None) or str(err)
            if kind == "subscription.renewal_in_progress":
                raise ResourceBusy(None, message) from err
            raise IllegalTransition(None, message, code=ErrorCode.LINE_INVALID_STATE) from err
        except RPCError as err:
            raise IllegalTransition(None, f"abonnement indisponible : {err.message}") from err


async def change_auto_renew(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str, mode: str
) -> SubscriptionOut:
    line = await load_line(session, principal, line_id, Action.WRITE)
    handle = await _workflow(session, state, line)
    await _update(lambda: handle.execute_update(SubscriptionWorkflow.set_auto_renew, mode))
    session.expire_all()
    await session.refresh(line)
    return await subscription_out(session, state, line)


async def renew_line(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str, key: str
) -> tuple[RenewalOut, bool]:
    """Renews now, once per Idempotency-Key: the key is written (audit row, unique reference) with the period
    it pays before the Update is sent. The same key again answers that period's renewal and never pays the
    following one; if the first request did not finish, the Update is sent again for the same period, whose
    charge key (`{wf}:period-{n}:charge`) the payment provider answers once. Returns the renewal and whether
    this request made it."""
    line = await load_line(session, principal, line_id, Action.WRITE)
    handle = None
    subscription = await _find_subscription(session, line)
    if subscription is None:
        handle = await _workflow(session, state, line)
        subscription = await _wait_opened(session, line)
    reference = f"renewal-request/{line.org_id}/{line.id}/{key}"
    written = await record(
        session,
        AuditEntry(
            actor=principal.label,
            actor_kind=principal.kind.value,
            action="subscription.renew_now",
            org_id=line.org_id,
            company_id=line.company_id,
            end_user_id=line.end_user_id,
            target=line.id,
            workflow_id=subscription.workflow_id,
            details={"period": subscription.period + 1, "idempotency_key": key},
            reference=reference,
        ),
    )
    await session.commit()  # the worker writes the same database while the API waits on the Update
    await session.refresh(line)
    await session.refresh(subscription)  # a concurrent request with the same key may have paid it meanwhile
    asked = (await session.execute(select(AuditLog).where(AuditLog.reference == reference))).scalar_one()
    target = int(asked.details["period"])
    if subscription.period < target:
        handle = handle or await _workflow(session, state, line)
        outcome: RenewOutcome = await _update(
            lambda: handle.execute_update(SubscriptionWorkflow.renew_now, args=[target, reference])
        )
        if not outcome.renewed:
            raise IllegalTransition(None, f"renouvellement refusé : {outcome.reason}", code=code_of(outcome.reason))
        session.expire_all()
        await session.refresh(line)
        subscription = await _subscription_of(session, line)
    return await _renewal_out(session, state, line, subscription, target), written is not None


async def _find_subscription(session: AsyncSession, line: Line) -> Subscription | None:
    found = await session.execute(select(Subscription).where(Subscription.line_id == line.id))
    return found.scalar_one_or_none()


async def _wait_opened(session: AsyncSession, line: Line) -> Subscription:
    """The row the workflow's first activity writes when it opens the subscription."""
    deadline = asyncio.get_running_loop().time() + OPENING_WAIT_S
    line_id = line.id
    opened = select(Subscription.id).where(Subscription.line_id == line_id)
    while (await session.execute(opened)).first() is None:
        await session.rollback()  # a fresh snapshot at the next look
        if asyncio.get_running_loop().time() > deadline:
            raise ResourceBusy(None, "abonnement en cours d'ouverture, réessayez dans un instant")
        await asyncio.sleep(OPENING_POLL_S)
    await session.refresh(line)
    return await _subscription_of(session, line)


async def _renewal_out(
    session: AsyncSession, state: AppState, line: Line, subscription: Subscription, period: int
) -> RenewalOut:
    reference = charge_key(subscription.workflow_id, period)
    transaction = (
        await session.execute(select(Transaction).where(Transaction.reference == reference))
    ).scalar_one_or_none()
    if transaction is None:
        raise IllegalTransition(None, f"la période {period} n'a pas été payée", code=ErrorCode.CONFLICT)
    calendar = RenewalCalendar(anchor=subscription.anchor_on, validity_days=subscription.validity_days)
    return RenewalOut(
        line_id=line.id,
        period=period,
        period_start=calendar.period_start(period),
        period_end=calendar.period_end(period),
        amount_minor=transaction.retail_minor,
        currency=transaction.currency,
        transaction_reference=reference,
        workflow_id=subscription.workflow_id,
        workflow_url=workflow_ui_url(state.settings, subscription.workflow_id),
    )
