"""Inputs and results of the subscription workflow (`subscription/{org}/{line}` or
`subscription/{org}/pool-{pool}`) and of its activities."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from domain.contracts import Contract
from domain.enums import AutoRenewMode, DunningStage, PaymentMethod, SubscriptionStatus
from domain.pools import pool_owner_id


def subscription_workflow_id(org_id: str, owner_id: str) -> str:
    return f"subscription/{org_id}/{owner_id}"


def charge_key(workflow_id: str, period: int, attempt: int = 0) -> str:
    """The charge of a period: a retry after a decline (a final answer) gets its own key, since the payment
    provider replays a key's first answer; a period still has one transaction (`charge_key(…, 0)`)."""
    key = f"{workflow_id}:period-{period}:charge"
    return key if attempt == 0 else f"{key}:retry-{attempt}"


def period_balance_id(plan_id: str, period: int) -> str:
    """The OCS balance of a period's allowance: one per period, so a re-grant never adds to another's."""
    return f"plan-{plan_id}-period-{period}"


class DunningDays(Contract):
    """The last day (counted from the failed renewal) of each stage; termination comes the day after."""

    retry_until_day: int = 3
    second_attempt_until_day: int = 7
    suspension_until_day: int = 14


class SubscriptionState(Contract):
    """What a run hands to the next (continue-as-new) besides what the database holds."""

    period: int = 0
    reminders_sent: list[int] = Field(default_factory=list)
    attempts: int = 0  # charges of the next period refused so far (each retry has its own key)


class SubscriptionInput(Contract):
    org_id: str
    company_id: str
    line_id: str = ""  # the owner: a line, or a pool (`pool_id`, the line id left empty)
    iccid: str | None = None
    msisdn_hash: str | None = None
    state: SubscriptionState | None = None  # None: the first run opens the subscription
    pool_id: str | None = None

    @property
    def owner_id(self) -> str:
        return pool_owner_id(self.pool_id) if self.pool_id else self.line_id


class SubscriptionResult(Contract):
    status: SubscriptionStatus
    period: int
    reason: str = ""


class StartLineSubscription(Contract):
    """The line an activation has just made active."""

    org_id: str
    line_id: str


class LineSubscriptionStarted(Contract):
    workflow_id: str | None = None  # None: the line's plan does not renew line by line


class LoadSubscription(Contract):
    org_id: str
    line_id: str
    workflow_id: str
    today: date
    pool_id: str | None = None  # a pool's subscription (line_id empty)


class SubscriptionTerms(Contract):
    """The subscription, its plan and line as the database holds them now."""

    subscription_id: str
    org_id: str
    company_id: str
    line_id: str
    line_status: str
    ocs_account: str | None = None
    plan_id: str
    plan_name: str
    plan_type: str
    next_plan_id: str | None = None
    price_minor: int
    currency: str = "EUR"
    data_bytes: int = 0
    anchor_on: date
    validity_days: int
    period: int
    auto_renew_mode: AutoRenewMode
    payment_method: PaymentMethod
    status: SubscriptionStatus
    dunning_stage: DunningStage | None = None
    dunning: DunningDays = Field(default_factory=DunningDays)
    pool_id: str | None = None  # a pool's subscription: line_id is empty, ocs_account is the pool's


class QuotePool(Contract):
    subscription_id: str


class PoolQuote(Contract):
    """A pool's renewal as its members stand now: the charge and the grant (seed 000 static / dynamic)."""

    members: int
    amount_minor: int
    data_bytes: int


def changed_by(workflow_id: str, operation: str) -> bool:
    """Whether a line operation's workflow id (`line-op/{org}/{line}/{operation}`) is `operation` or one of its
    follow-ups (`{operation}-attempt-2-undone`, say), never another key that merely starts alike."""
    last = workflow_id.rsplit("/", 1)[-1]
    return last == operation or last.startswith(f"{operation}-")


class PoolMembersQuery(Contract):
    """The member lines of a pool's subscription in one of `statuses` (all members when empty). With
    `changed_by_operation` (the end of a line operation's workflow id, e.g. `suspend-subscription-{key}`),
    only the members whose latest completed line change is that operation or a follow-up (`changed_by`)."""

    subscription_id: str
    statuses: list[str] = Field(default_factory=list)
    changed_by_operation: str = ""


class PoolMember(Contract):
    line_id: str
    company_id: str
    status: str


class PoolMembers(Contract):
    members: list[PoolMember] = Field(default_factory=list)


class PlanQuote(Contract):
    plan_id: str
    plan_name: str
    price_minor: int
    currency: str
    prorated: bool
    data_bytes: int


class QuotePlan(Contract):
    subscription_id: str
    plan_id: str


class RenewalCharge(Contract):
    subscription_id: str
    period: int
    idempotency_key: str
    amount_minor: int
    currency: str
    method: str  # card | wallet | account
    description: str


class RenewalPaid(Contract):
    method: str
    payment_reference: str


class RenewalRefund(Contract):
    subscription_id: str
    charge_key: str
    idempotency_key: str
    method: str
    payment_reference: str
    amount_minor: int
    currency: str


class RecordRenewal(Contract):
    """A period paid: the subscription moves to it, the line's expiry with it, and the transaction is written
    (reference: the period's first charge key)."""

    subscription_id: str
    period: int
    plan_id: str
    next_renewal_on: date
    transaction_reference: str
    description: str
    amount_minor: int
    currency: str
    method: str
    payment_reference: str


class SubscriptionChange(Contract):
    """A change of the subscription's row; a field left `None` is kept (`clear_*` empties it)."""

    subscription_id: str
    status: SubscriptionStatus | None = None
    dunning_stage: DunningStage | None = None
    clear_dunning: bool = False
    dunning_since: date | None = None
    auto_renew_mode: str | None = None
    plan_id: str | None = None
    next_plan_id: str | None = None
    clear_next_plan: bool = False
    failure: str | None = None
    ended: bool = False


class SubscriptionNotice(Contract):
    """A mail to the payer (outbox) with `reference` as its unique key, and the same notice as a webhook."""

    subscription_id: str
    reference: str
    kind: str  # reminder | dunning | renewed | expired | recovered | cancelled
    subject: str
    body: str
    data: dict[str, object] = Field(default_factory=dict)


class RenewOutcome(Contract):
    """The answer of `renew_now`: paid (the period it paid) or refused with the reason."""

    renewed: bool
    period: int
    reason: str = ""


# --- the daily reconciler (`renewal-reconciler`) -----------------------------------------------------


REPORTED_IDS = 100


class ReconcileProgress(Contract):
    """Where a reconciler pass is, carried across continue-as-new: the next page (`kind`, `after`) and the
    totals so far, with the first `REPORTED_IDS` workflow ids started and ended."""

    kind: str = "lines"
    after: str = ""
    started: list[str] = Field(default_factory=list)
    started_count: int = 0
    ended: list[str] = Field(default_factory=list)
    ended_count: int = 0
    running: int = 0
    runs: int = 1


class ReconcileScan(Contract):
    """`pages_per_run`: pages one run of the reconciler reads before it continues as new (its history stays
    short whatever the number of lines); `progress`: where the previous run stopped."""

    task_queue: str = "simflow"
    batch_size: int = 500
    pages_per_run: int = 100
    progress: ReconcileProgress | None = None


class ReconcileBatch(Contract):
    """One page of the reconciler: `kind` `lines` (renewing lines without a running workflow: started),
    `pools` (the same for pools) or `ended` (subscriptions of terminated lines: told to end), the rows whose id
    comes after `after` (keyset), at most `batch_size`."""

    task_queue: str = "simflow"
    batch_size: int = 500
    kind: str = "lines"
    after: str = ""


class ReconcileBatchResult(Contract):
    started: list[str] = Field(default_factory=list)
    running: int = 0
    ended: list[str] = Field(default_factory=list)
    next_after: str | None = None  # the last id of a full page: there may be more


class ReconcileOrphans(Contract):
    orphans: list[str] = Field(default_factory=list)


class ReconcileResult(Contract):
    """`started`: workflows started for subscriptions (or renewing lines) that had none; `ended`: workflows
    told that their line is terminated; `orphans`: running subscription workflows whose line is gone.
    Paged runs list the first `REPORTED_IDS` of `started` and `ended`, and count them all; `runs`: the runs
    the pass took (continue-as-new)."""

    started: list[str] = Field(default_factory=list)
    running: int = 0
    ended: list[str] = Field(default_factory=list)
    orphans: list[str] = Field(default_factory=list)
    started_count: int = 0
    ended_count: int = 0
    runs: int = 1
