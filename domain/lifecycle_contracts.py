"""Inputs and results of the SIM lifecycle workflows and activities (activation, suspend / resume / plan
change, deprovisioning, bulk operations). Frozen pydantic models; new fields always get defaults so that
running histories still decode."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import Field

from domain.contracts import Contract
from domain.enums import BulkItemStatus, DeploymentStatus

# --- workflows -------------------------------------------------------------------------------------


def plan_balance_id(plan_id: str) -> str:
    """The OCS balance of a line's plan (the activation grants it, the usage reading measures it)."""
    return f"plan-{plan_id}"


class SimActivationInput(Contract):
    org_id: str
    company_id: str
    line_id: str
    iccid: str
    plan_id: str
    end_user_id: str | None = None
    msisdn: str | None = None  # a chosen number of the organisation's ranges
    port_in_msisdn: str | None = None
    port_in_rio: str | None = None
    requested_by: str = "system"
    snaic_sla_s: int = 900
    snaic_poll_s: int = 30
    bulk_id: str | None = None


class SimActivationResult(Contract):
    line_id: str
    iccid: str
    msisdn: str
    status: str
    snaic_line_id: str | None = None
    ocs_account: str | None = None
    cfast_service_id: str | None = None
    subscription_workflow_id: str | None = None  # on a plan that renews line by line


class LineOperationInput(Contract):
    """Suspend, resume or change the plan of an active line (`line-{op}/{org}/{line}/{request}`)."""

    org_id: str
    company_id: str
    line_id: str
    operation: str  # suspend | resume | change_plan
    plan_id: str | None = None
    requested_by: str = "system"
    snaic_sla_s: int = 900
    snaic_poll_s: int = 30
    bulk_id: str | None = None


class LineOperationResult(Contract):
    line_id: str
    operation: str
    status: str
    detail: str = ""


class DeprovisioningInput(Contract):
    org_id: str
    company_id: str
    line_id: str
    grace_days: int = 0
    requested_by: str = "system"
    reason: str = ""
    quarantine_days: int = 90
    snaic_sla_s: int = 900
    snaic_poll_s: int = 30
    bulk_id: str | None = None
    request_id: str = ""  # unique per termination request: keys of this attempt (the id may run again)


class DeprovisioningResult(Contract):
    line_id: str
    status: str  # terminated | cancelled
    terminated_at: datetime | None = None
    quarantine_until: datetime | None = None


class CancelTermination(Contract):
    requested_by: str = "system"
    reason: str = ""


class DeprovisioningState(Contract):
    status: str
    grace_until: datetime | None = None
    step: str = ""
    attention: str | None = None
    attention_since: datetime | None = None  # when the step failed for good (the portal's needs-attention age)


class ResolveAttention(Contract):
    """Staff tell a workflow in `needs_attention` to try its failed step again."""

    requested_by: str = "system"
    note: str = ""


class ResolveCompensation(Contract):
    """Staff answer a line workflow whose compensation failed for good: `retry` the failed compensations,
    or `resolved_manually` (undone by hand in the external systems)."""

    action: str = "retry"
    requested_by: str = "system"
    note: str = ""


class AttentionState(Contract):
    """Why a line workflow waits for staff, and since when (`attention` None while it does not)."""

    status: str
    attention: str | None = None
    since: datetime | None = None


class BulkItemInput(Contract):
    iccid: str
    params: dict[str, Any] = Field(default_factory=dict)


class BulkOperationInput(Contract):
    bulk_id: str
    org_id: str
    company_id: str | None = None
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    items: list[BulkItemInput] = Field(default_factory=list)
    requested_by: str = "system"
    max_concurrency: int = 50
    page_size: int = 500
    snaic_sla_s: int = 900
    snaic_poll_s: int = 30
    # carried over continue-as-new
    offset: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: bool = False


class BulkProgress(Contract):
    bulk_id: str
    kind: str
    total: int
    done: int
    succeeded: int
    failed: int
    skipped: int
    running: int
    status: str
    cancelled: bool = False


class BulkItemResult(Contract):
    iccid: str
    status: BulkItemStatus
    detail: str = ""
    workflow_id: str | None = None
    line_id: str | None = None


class BulkResultsRecord(Contract):
    bulk_id: str
    results: list[BulkItemResult]


class BulkFinish(Contract):
    bulk_id: str
    status: str
    succeeded: int
    failed: int
    skipped: int


class BulkEdit(Contract):
    """A database-only bulk change (note, tags, rules, company, import details, SMS, usage) of some SIMs."""

    bulk_id: str
    org_id: str
    company_id: str | None = None
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    items: list[BulkItemInput]
    requested_by: str = "system"


class BulkTargets(Contract):
    """What a bulk item needs to start its child workflow: the SIM's line, its company."""

    bulk_id: str
    org_id: str
    kind: str
    iccids: list[str]


class BulkTarget(Contract):
    iccid: str
    line_id: str | None = None
    company_id: str | None = None
    problem: str | None = None  # set when the item cannot run (skipped with this reason)


class BulkTargetList(Contract):
    targets: list[BulkTarget]


# --- inventory activities (database) ----------------------------------------------------------------


class ReserveSim(Contract):
    org_id: str
    company_id: str
    line_id: str
    iccid: str
    plan_id: str
    end_user_id: str | None = None
    reservation_key: str
    actor: str


class ReservedSim(Contract):
    sim_id: str
    iccid: str
    carrier: str
    is_esim: bool = False
    deployment_id: str | None = None


class ReleaseSim(Contract):
    iccid: str
    line_id: str
    reservation_key: str
    actor: str
    reason: str = ""
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class AllocateMsisdn(Contract):
    org_id: str
    line_id: str
    reservation_key: str
    msisdn: str | None = None
    port_in_msisdn: str | None = None
    port_in_rio: str | None = None


class AllocatedMsisdn(Contract):
    msisdn: str
    msisdn_hash: str = ""  # its `MsisdnHash` search attribute (empty in results recorded before it)
    ported_in: bool = False
    port_in_rio: str | None = None


class ReleaseMsisdn(Contract):
    reservation_key: str


class LoadActivation(Contract):
    line_id: str
    company_id: str
    plan_id: str
    end_user_id: str | None = None
    org_id: str  # the tenant the workflow runs for: ids outside it are refused


class ActivationContext(Contract):
    plan_name: str
    offer_code: str
    price_minor: int
    purchase_price_minor: int
    data_allowance_bytes: int
    validity_days: int
    company_name: str
    customer_reference: str
    siret: str | None = None
    vat_number: str | None = None
    cfast_customer_id: str | None = None
    billing_site_id: str
    billing_site_label: str
    billing_address: str | None = None
    cfast_billing_point_id: str | None = None
    parc_id: str
    parc_label: str
    parc_type: str = "mobile"
    cfast_site_id: str | None = None
    user_last_name: str
    user_first_name: str | None = None


class FinalizeActivation(Contract):
    line_id: str
    iccid: str
    reservation_key: str
    company_id: str
    plan_id: str
    end_user_id: str | None = None
    billing_site_id: str
    parc_id: str
    next_renewal_on: date | None = None
    actor: str
    workflow_id: str
    snaic_line_id: str | None = None
    ocs_account: str | None = None
    cfast_service_id: str | None = None
    cfast_service_label: str | None = None
    deployment_id: str | None = None
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class OpenDeployment(Contract):
    org_id: str
    company_id: str
    line_id: str
    kind: str
    workflow_id: str
    created_by: str


class CloseDeployment(Contract):
    deployment_id: str
    status: DeploymentStatus


class LineSnapshot(Contract):
    """What the line workflows need to know about a line, read at their start."""

    line_id: str
    org_id: str
    company_id: str
    status: str
    msisdn: str
    msisdn_hash: str = ""  # its `MsisdnHash` search attribute (empty in results recorded before it)
    iccid: str | None = None
    plan_id: str | None = None
    snaic_line_id: str | None = None
    ocs_account: str | None = None
    cfast_service_id: str | None = None
    cfast_service_label: str | None = None
    termination_scheduled_for: datetime | None = None
    plan_allowance_bytes: int | None = None


class LoadLine(Contract):
    line_id: str
    org_id: str  # the tenant the workflow runs for: ids outside it are refused


class SetLineStatus(Contract):
    line_id: str
    status: str
    actor: str
    workflow_id: str
    sim_status: str | None = None  # the SIM follows (suspended / active / ready_for_activation)
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class SetLinePlan(Contract):
    line_id: str
    plan_id: str
    actor: str
    workflow_id: str
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class PlanTerms(Contract):
    plan_id: str
    name: str
    offer_code: str
    price_minor: int
    purchase_price_minor: int
    data_allowance_bytes: int
    validity_days: int


class LoadPlan(Contract):
    plan_id: str
    org_id: str
    company_id: str


class ScheduleTermination(Contract):
    line_id: str
    at: datetime
    actor: str
    workflow_id: str
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class CancelScheduledTermination(Contract):
    line_id: str
    actor: str
    workflow_id: str
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class CompleteTermination(Contract):
    line_id: str
    terminated_at: datetime
    quarantine_until: datetime
    actor: str
    workflow_id: str
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class RecordUsage(Contract):
    iccid: str
    org_id: str  # the tenant the workflow runs for: ids outside it are refused
    actor: str
    remaining_bytes: int | None = None
    remaining_days: int | None = None
    used: bool = False


# --- provisioning activities (SNAIC, OCS, CFAST) -----------------------------------------------------


class SnaicCreateLine(Contract):
    iccid: str
    msisdn: str
    offer_code: str
    port_in_rio: str | None = None
    reference: str
    idempotency_key: str


class SnaicOrderPlaced(Contract):
    order_id: str
    line_id: str
    status: str
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)


class SnaicOrderQuery(Contract):
    order_id: str


class SnaicLineOrder(Contract):
    """suspend / resume / terminate / change offer of a SNAIC line."""

    line_id: str
    reference: str
    idempotency_key: str
    offer_code: str | None = None


class SnaicCancelLine(Contract):
    """Compensation of a create_line: terminate the line our order created, if any (found by ICCID and
    the order's reference when the line id never reached us)."""

    iccid: str
    known_line_id: str | None = None
    create_reference: str
    reference: str
    idempotency_key: str


class SnaicLineState(Contract):
    line_id: str
    status: str
    offer_code: str | None = None


class OcsAccountRequest(Contract):
    account: str
    request_id: str
    balance_id: str | None = None  # usage reads: the plan allowance's balance


class OcsGrant(Contract):
    account: str
    balance_id: str
    value_bytes: int
    expiry: datetime | None = None
    weight: float = 20.0
    request_id: str


class OcsUsage(Contract):
    exists: bool
    disabled: bool = False
    data_remaining_bytes: int = 0
    plan_balance_bytes: int | None = None
    plan_expires_at: datetime | None = None


class CfastEnsureService(Contract):
    site_id: str
    service_label: str
    last_name: str
    first_name: str | None = None
    article_code: str
    article_label: str | None = None
    article_periodic_price: int
    periodic_buy_price: int
    start_date: date
    idempotency_key: str


class CfastServiceRef(Contract):
    """A service line to act on: by id, or by label (the MSISDN) when the id never reached us; `site_id`,
    `article_code` and `start_date` make sure a service found by label is the one this workflow created."""

    service_id: str | None = None
    service_label: str
    site_id: str | None = None
    article_code: str | None = None
    start_date: date | None = None
    termination_date: date | None = None
    idempotency_key: str


class CfastChangeSubscription(Contract):
    service_id: str
    article_code: str
    article_label: str | None = None
    article_periodic_price: int
    periodic_buy_price: int
    start_date: date
    idempotency_key: str
