"""Stand-ins for the subscription workflow's activities and child workflows, under their real names.

`FakeSubscriptionStore` is the database, Stripe / wallet / CFAST and the OCS as the workflow sees them:
charges are kept by idempotency key (a key seen twice is one charge), transactions and notices by reference
(unique like the database), grants by request id. The payer's answer is `payer_pays` (flip it to recover).
Shared by the workflow tests and the replay recorder.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from domain.contracts import ExternalCallResult
from domain.lifecycle_contracts import DeprovisioningInput, LineOperationInput, OcsAccountRequest, OcsGrant
from domain.pools import pool_ocs_account, pool_renewal
from domain.renewal_calendar import RenewalCalendar, add_months
from domain.security_contracts import EmitEventInput, EmitEventResult
from domain.subscription_contracts import (
    DunningDays,
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
    SubscriptionChange,
    SubscriptionInput,
    SubscriptionNotice,
    SubscriptionResult,
    SubscriptionTerms,
    changed_by,
    subscription_workflow_id,
)
from workflows import activity_names as names
from workflows._search import initial_attributes
from workflows.subscription import SubscriptionWorkflow

FAKE_LINE_OP = "fake.line_operation"
FAKE_DEPROVISION = "fake.deprovision"
_TIMEOUT = timedelta(seconds=30)


@dataclass
class FakeSubscriptionStore:
    anchor: date
    validity_days: int = 30
    period: int = 0
    plan_type: str = "prepaid"
    auto_renew_mode: str = "on"
    payment_method: str = "card"
    status: str = "active"
    dunning_stage: str | None = None
    plan_id: str = "plan-basic"
    next_plan_id: str | None = None
    line_status: str = "active"
    end_after_period: int | None = None  # the line is terminated once this period is paid
    dunning: DunningDays = field(default_factory=DunningDays)
    payer_pays: bool = True
    charge_gate: asyncio.Event | None = None  # when set, a charge waits for it (a renewal held in flight)
    grant_fails: bool = False  # the OCS refuses the period's grant (the charge is then refunded)
    refund_fails: bool = False  # the payment provider refuses the refund (flip it to let a retry succeed)
    refund_calls: list[str] = field(default_factory=list)
    # A pool's subscription: its kind and its member lines (change them while it runs), each active unless
    # `member_statuses` says otherwise (line operations and deprovisioning of a member change it).
    pool_id: str | None = None
    pool_kind: str = "static"
    members: list[str] = field(default_factory=list)
    member_statuses: dict[str, str] = field(default_factory=dict)
    # The workflow id of each member's latest line operation (staff's, or a pool dunning's).
    member_changes: dict[str, str] = field(default_factory=dict)
    # Charge attempts that time out (the PSP overloaded) before one goes through.
    charge_unavailable_attempts: int = 0
    # (line, operation) pairs whose line operation fails (SNAIC refuses it, say).
    failing_operations: set[tuple[str, str]] = field(default_factory=set)
    pool_quotes: list[PoolQuote] = field(default_factory=list)
    plans: dict[str, PlanQuote] = field(
        default_factory=lambda: {
            "plan-basic": PlanQuote(
                plan_id="plan-basic",
                plan_name="Basique 5 Go",
                price_minor=1500,
                currency="EUR",
                prorated=False,
                data_bytes=5 << 30,
            ),
            "plan-plus": PlanQuote(
                plan_id="plan-plus",
                plan_name="Plus 20 Go",
                price_minor=3000,
                currency="EUR",
                prorated=True,
                data_bytes=20 << 30,
            ),
            "plan-later": PlanQuote(
                plan_id="plan-later",
                plan_name="Éco 2 Go",
                price_minor=900,
                currency="EUR",
                prorated=False,
                data_bytes=2 << 30,
            ),
        }
    )
    charge_calls: list[RenewalCharge] = field(default_factory=list)
    charges: dict[str, RenewalCharge] = field(default_factory=dict)
    refunds: dict[str, RenewalRefund] = field(default_factory=dict)
    grants: dict[str, OcsGrant] = field(default_factory=dict)
    ocs_accounts: set[str] = field(default_factory=set)
    transactions: dict[str, RecordRenewal] = field(default_factory=dict)
    notices: dict[str, SubscriptionNotice] = field(default_factory=dict)
    notice_calls: list[str] = field(default_factory=list)
    events: dict[str, EmitEventInput] = field(default_factory=dict)
    changes: list[SubscriptionChange] = field(default_factory=list)
    line_operations: list[LineOperationInput] = field(default_factory=list)
    deprovisioned: list[DeprovisioningInput] = field(default_factory=list)

    @property
    def calendar(self) -> RenewalCalendar:
        return RenewalCalendar(anchor=self.anchor, validity_days=self.validity_days)

    @activity.defn(name=names.SUBSCRIPTION_LOAD)
    async def load(self, data: LoadSubscription) -> SubscriptionTerms:
        plan = self.plans[self.plan_id]
        ended = self.end_after_period is not None and self.period >= self.end_after_period
        return SubscriptionTerms(
            subscription_id="sub-1",
            org_id=data.org_id,
            company_id="company-1",
            line_id=data.line_id,
            line_status="terminated" if ended else self.line_status,
            ocs_account=pool_ocs_account(self.pool_id) if self.pool_id else "ocs-0601020304",
            plan_id=plan.plan_id,
            plan_name=plan.plan_name,
            plan_type=self.plan_type,
            next_plan_id=self.next_plan_id,
            price_minor=plan.price_minor,
            currency=plan.currency,
            data_bytes=plan.data_bytes,
            anchor_on=self.anchor,
            validity_days=self.validity_days,
            period=self.period,
            auto_renew_mode=self.auto_renew_mode,
            payment_method=self.payment_method,
            status=self.status,
            dunning_stage=self.dunning_stage,
            dunning=self.dunning,
            pool_id=self.pool_id,
        )

    @activity.defn(name=names.SUBSCRIPTION_QUOTE_POOL)
    async def quote_pool(self, data: QuotePool) -> PoolQuote:
        plan = self.plans[self.next_plan_id or self.plan_id]
        renewal = pool_renewal(
            self.pool_kind, price_minor=plan.price_minor, data_bytes=plan.data_bytes, members=self.active_members()
        )
        quote = PoolQuote(members=renewal.members, amount_minor=renewal.amount_minor, data_bytes=renewal.data_bytes)
        self.pool_quotes.append(quote)
        return quote

    def member_status(self, line_id: str) -> str:
        return self.member_statuses.get(line_id, "active")

    def active_members(self) -> int:
        return sum(1 for m in self.members if self.member_status(m) == "active")

    @activity.defn(name=names.SUBSCRIPTION_POOL_MEMBERS)
    async def pool_members(self, data: PoolMembersQuery) -> PoolMembers:
        return PoolMembers(
            members=[
                PoolMember(line_id=m, company_id="company-1", status=self.member_status(m))
                for m in sorted(self.members)
                if (not data.statuses or self.member_status(m) in data.statuses)
                and (
                    not data.changed_by_operation
                    or changed_by(self.member_changes.get(m, ""), data.changed_by_operation)
                )
            ]
        )

    @activity.defn(name=names.SUBSCRIPTION_QUOTE_PLAN)
    async def quote_plan(self, data: QuotePlan) -> PlanQuote:
        if data.plan_id not in self.plans:
            raise ApplicationError(
                "plan_id : forfait introuvable", type="subscription.invalid_plan", non_retryable=True
            )
        return self.plans[data.plan_id]

    @activity.defn(name=names.SUBSCRIPTION_CHARGE)
    async def charge(self, data: RenewalCharge) -> RenewalPaid:
        self.charge_calls.append(data)
        if self.charge_unavailable_attempts > 0:
            self.charge_unavailable_attempts -= 1
            raise ApplicationError("stripe timeout: ReadTimeout", type="stripe.unavailable")
        if self.charge_gate is not None:
            await self.charge_gate.wait()
        if data.idempotency_key not in self.charges:
            if not self.payer_pays:
                raise ApplicationError("carte refusée : card_declined", type="payment.declined", non_retryable=True)
            self.charges[data.idempotency_key] = data
        return RenewalPaid(method=data.method, payment_reference=f"{data.method}:{data.idempotency_key}")

    @activity.defn(name=names.SUBSCRIPTION_REFUND)
    async def refund(self, data: RenewalRefund) -> str:
        self.refund_calls.append(data.idempotency_key)
        if self.refund_fails:
            raise ApplicationError("remboursement refusé", type="stripe.rejected", non_retryable=True)
        self.refunds.setdefault(data.idempotency_key, data)
        return f"refund:{data.idempotency_key}"

    @activity.defn(name=names.PROV_OCS_GRANT_PLAN)
    async def grant(self, data: OcsGrant) -> ExternalCallResult:
        if self.grant_fails:
            raise ApplicationError("ocs : crédit refusé", type="ocs.rejected", non_retryable=True)
        if self.pool_id and data.account not in self.ocs_accounts:  # as the OCS client: the account must exist
            raise ApplicationError("ocs ACCOUNT_NOT_FOUND", type="ocs.not_found", non_retryable=True)
        self.grants.setdefault(data.request_id, data)
        return ExternalCallResult(object_id=data.balance_id)

    @activity.defn(name=names.PROV_OCS_CREATE_ACCOUNT)
    async def create_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        self.ocs_accounts.add(data.account)
        return ExternalCallResult(object_id=data.account)

    @activity.defn(name=names.SUBSCRIPTION_RECORD_RENEWAL)
    async def record_renewal(self, data: RecordRenewal) -> None:
        self.transactions.setdefault(data.transaction_reference, data)
        if data.period >= self.period:
            self.period, self.plan_id = data.period, data.plan_id
            self.status, self.dunning_stage = "active", None
            if self.next_plan_id == data.plan_id:
                self.next_plan_id = None

    @activity.defn(name=names.SUBSCRIPTION_CHANGE)
    async def change(self, data: SubscriptionChange) -> None:
        self.changes.append(data)
        self.status = data.status or self.status
        self.dunning_stage = data.dunning_stage or self.dunning_stage
        self.auto_renew_mode = data.auto_renew_mode or self.auto_renew_mode
        self.plan_id = data.plan_id or self.plan_id
        self.next_plan_id = data.next_plan_id or self.next_plan_id

    @activity.defn(name=names.SUBSCRIPTION_NOTIFY)
    async def notify(self, data: SubscriptionNotice) -> None:
        self.notice_calls.append(data.reference)
        self.notices.setdefault(data.reference, data)

    @activity.defn(name=names.WEBHOOKS_EMIT)
    async def emit(self, data: EmitEventInput) -> EmitEventResult:
        self.events.setdefault(data.event_id, data)
        return EmitEventResult(workflow_ids=[])

    @activity.defn(name=FAKE_LINE_OP)
    async def line_operation(self, data: LineOperationInput) -> None:
        self.line_operations.append(data)
        if (data.line_id, data.operation) in self.failing_operations:
            raise ApplicationError(f"{data.operation} refusé par SNAIC", type="snaic.rejected", non_retryable=True)
        if data.line_id in self.members:
            self.member_changes[data.line_id] = activity.info().workflow_id
            status = self.member_status(data.line_id)
            self.member_statuses[data.line_id] = {"suspend": "suspended", "resume": "active"}.get(
                data.operation, status
            )
            return
        self.line_status = {"suspend": "suspended", "resume": "active"}.get(data.operation, self.line_status)

    @activity.defn(name=FAKE_DEPROVISION)
    async def deprovision(self, data: DeprovisioningInput) -> None:
        self.deprovisioned.append(data)
        if data.line_id in self.members:
            self.member_statuses[data.line_id] = "terminated"
            return
        self.line_status = "terminated"

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.load,
            self.quote_plan,
            self.quote_pool,
            self.pool_members,
            self.charge,
            self.refund,
            self.grant,
            self.create_account,
            self.record_renewal,
            self.change,
            self.notify,
            self.emit,
            self.line_operation,
            self.deprovision,
        ]

    def notices_of(self, kind: str) -> list[SubscriptionNotice]:
        return [n for n in self.notices.values() if n.kind == kind]


@workflow.defn(name="LineOperationWorkflow")
class FakeLineOperationWorkflow:
    @workflow.run
    async def run(self, data: LineOperationInput) -> None:
        await workflow.execute_activity(FAKE_LINE_OP, data, start_to_close_timeout=_TIMEOUT)


@workflow.defn(name="DeprovisioningWorkflow")
class FakeDeprovisioningWorkflow:
    @workflow.run
    async def run(self, data: DeprovisioningInput) -> None:
        await workflow.execute_activity(FAKE_DEPROVISION, data, start_to_close_timeout=_TIMEOUT)


FAKE_CHILDREN = [FakeLineOperationWorkflow, FakeDeprovisioningWorkflow]


Handle = WorkflowHandle[SubscriptionWorkflow, SubscriptionResult]


async def today(env: WorkflowEnvironment) -> date:
    return (await env.get_current_time()).date()


def due_tomorrow(day: date) -> date:
    """An anchor whose first period (monthly) ends the day after `day`."""
    return add_months(day + timedelta(days=1), -1)


@asynccontextmanager
async def running(env: WorkflowEnvironment, store: FakeSubscriptionStore, case: str = "") -> AsyncIterator[Handle]:
    """A worker with the fakes, and the subscription of a fresh line (of the pool when `store.pool_id`)
    started on it."""
    task_queue = f"subscription-test-{uuid.uuid4().hex[:8]}"
    suffix = case.replace("_", "-") if case else uuid.uuid4().hex
    data = subscription_input(org_id=f"org-{suffix[:8]}", line_id=f"line-{suffix}")
    if store.pool_id:
        data = SubscriptionInput(org_id=data.org_id, company_id=data.company_id, pool_id=store.pool_id)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SubscriptionWorkflow, *FAKE_CHILDREN],
        activities=store.activities(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await env.client.start_workflow(
            SubscriptionWorkflow.run,
            data,
            id=subscription_workflow_id(data.org_id, data.owner_id),
            task_queue=task_queue,
            search_attributes=initial_attributes(
                org_id=data.org_id, company_id=data.company_id, iccid=data.iccid, status="starting"
            ),
        )
        yield handle


def subscription_input(org_id: str = "org-1", line_id: str = "line-1") -> SubscriptionInput:
    return SubscriptionInput(org_id=org_id, company_id="company-1", line_id=line_id, iccid="8933150000000000017")
