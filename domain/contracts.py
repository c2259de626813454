"""Workflow and activity inputs and results (pydantic, frozen). New fields always get defaults so that
running histories still decode."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.enums import (
    DeploymentStatus,
    ExternalSystem,
    MajStatus,
    PaymentMethod,
    TopUpPaymentStatus,
    TopUpStatus,
)
from domain.security_contracts import AuditRecordInput


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- CFAST customer (company) -------------------------------------------------------------------


class CfastCustomerInput(Contract):
    org_id: str
    company_id: str
    customer_name: str
    customer_reference: str
    siret: str | None = None
    vat_number: str | None = None
    billing_site_id: str
    billing_site_label: str
    billing_address: str | None = None
    parc_id: str
    parc_label: str
    parc_type: str = "mobile"


class CfastCustomerResult(Contract):
    customer_id: str
    billing_point_id: str
    site_id: str


class EnsureCfastCustomer(Contract):
    idempotency_key: str
    customer_name: str
    customer_reference: str
    siret: str | None = None
    vat_number: str | None = None


class EnsureCfastBillingPoint(Contract):
    idempotency_key: str
    customer_id: str
    label: str
    address: str | None = None
    known_billing_point_id: str | None = None


class EnsureCfastSite(Contract):
    idempotency_key: str
    billing_point_id: str
    label: str
    parc_type: str = "mobile"
    known_site_id: str | None = None


class ExternalCallResult(Contract):
    """What an activity sent and received: the raw material of an update (MAJ) record."""

    object_id: str
    fetched_existing: bool = False
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)


class UpdateRecordInput(Contract):
    reference: str
    org_id: str
    company_id: str | None = None
    deployment_id: str | None = None
    line_id: str | None = None
    workflow_id: str | None = None
    system: ExternalSystem
    operation: str
    status: MajStatus
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)
    ids_obtained: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class SaveCfastIds(Contract):
    company_id: str
    billing_site_id: str
    parc_id: str
    customer_id: str
    billing_point_id: str
    site_id: str
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


class MarkCfastFailed(Contract):
    company_id: str
    reason: str
    org_id: str = ""  # the tenant the workflow runs for: the activity refuses ids outside it


# --- SNAIC asynchronous orders ----------------------------------------------------------------

SNAIC_ORDER_SIGNAL = "snaic_order_update"


class SnaicOrderUpdate(Contract):
    """A SNAIC order result, pushed by the callback route (or found by polling) into the workflow that
    placed the order. The order's `reference` is `{workflow_id}:{step}`."""

    order_id: str
    line_id: str
    status: str  # completed | rejected
    reason: str | None = None
    reference: str | None = None


def snaic_reference(workflow_id: str, step: str) -> str:
    return f"{workflow_id}:{step}"


def workflow_id_of_snaic_reference(reference: str) -> str:
    return reference.rsplit(":", 1)[0]


# --- Top-up / recharge DATA --------------------------------------------------------------------


class TopUpInput(Contract):
    topup_id: str
    org_id: str
    company_id: str
    line_id: str
    deployment_id: str
    msisdn: str
    iccid: str | None = None
    payment_method: PaymentMethod  # one of TOPUP_PAYMENT_METHODS
    amount_minor: int
    currency: str = "EUR"
    quantity: int
    unit_price_minor: int
    data_bytes: int
    article_code: str
    article_label: str
    snaic_callback_sla_s: int = 900
    # How long a charge whose outcome is unknown is retried under its key before the refund settles it.
    charge_window_s: int = 600


class TopUpReceipt(Contract):
    """What the caller gets synchronously (update-with-start) once the payment step is decided."""

    recharge_id: str
    workflow_id: str
    status: TopUpStatus
    payment_status: TopUpPaymentStatus
    amount_minor: int
    currency: str
    payment_reference: str | None = None
    failure_reason: str | None = None


class TopUpResolution(Contract):
    """A staff decision on a top-up that needs attention."""

    action: str  # retry_refund | refunded_manually | mark_completed
    note: str
    actor: str


class ResolvePayer(Contract):
    topup_id: str


class CardPayer(Contract):
    """The Stripe customer and saved card that pay a top-up, fixed once before the first charge attempt so
    that every retry (and the refund's search for the charge) uses the same ones."""

    customer_id: str
    payment_method_id: str


class ChargeRequest(Contract):
    topup_id: str
    idempotency_key: str
    amount_minor: int
    currency: str
    description: str
    payer: CardPayer | None = None  # None: read from the top-up's payer at each attempt (older workflows)


class ChargeOutcome(Contract):
    payment_status: TopUpPaymentStatus  # succeeded | on_account
    payment_reference: str
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)


class RefundRequest(Contract):
    topup_id: str
    idempotency_key: str
    payment_reference: str
    amount_minor: int
    currency: str
    payer: CardPayer | None = None


class RefundOutcome(Contract):
    refund_reference: str
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)


class LineTargets(Contract):
    """External ids of a line, fetched on the fly from SNAIC and CFAST when our records lack them."""

    ocs_account: str
    snaic_line_id: str
    cfast_service_id: str
    data_expires_at_iso: str
    fetched: dict[str, str] = Field(default_factory=dict)


class ResolveLineTargets(Contract):
    line_id: str
    org_id: str  # the tenant the top-up runs for: a line outside it is refused


class OcsCreditRequest(Contract):
    account: str
    balance_id: str
    data_bytes: int
    expires_at_iso: str
    request_id: str
    topup_id: str
    workflow_id: str


class OcsRemoveRequest(Contract):
    account: str
    balance_id: str
    request_id: str


class SnaicOptionRequest(Contract):
    snaic_line_id: str
    option_code: str
    quantity: int
    reference: str
    idempotency_key: str


class SnaicOrderAccepted(Contract):
    order_id: str
    status: str
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)


class SnaicOrderPoll(Contract):
    order_id: str


class SnaicOptionCancel(Contract):
    snaic_line_id: str
    reference: str
    idempotency_key: str


class CfastArticleRequest(Contract):
    cfast_service_id: str
    article_code: str
    label: str
    quantity: int
    unit_price_minor: int
    unit_buy_price_minor: int | None = None
    reference: str
    idempotency_key: str


class CfastArticleCancel(Contract):
    cfast_service_id: str
    reference: str
    idempotency_key: str


class TopUpStatusUpdate(Contract):
    topup_id: str
    status: TopUpStatus | None = None
    payment_status: TopUpPaymentStatus | None = None
    payment_reference: str | None = None
    refund_reference: str | None = None
    failure_reason: str | None = None
    resolution_note: str | None = None
    deployment_status: DeploymentStatus | None = None


class TopUpReceiptRecord(Contract):
    topup_id: str
    workflow_id: str
    reference_prefix: str


class TopUpNotice(Contract):
    topup_id: str
    reference: str
    subject: str
    body: str
    event_type: str


class TopUpStepWrites(Contract):
    """The top-up's own writes of one saga step, applied in one transaction: its status, the MAJ records of
    the external calls, the audit row of a money movement, the receipt, the customer's notification."""

    topup_id: str
    status: TopUpStatusUpdate | None = None
    records: list[UpdateRecordInput] = Field(default_factory=list)
    audits: list[AuditRecordInput] = Field(default_factory=list)
    receipt: TopUpReceiptRecord | None = None
    notices: list[TopUpNotice] = Field(default_factory=list)


STRIPE_EVENT_SIGNAL = "stripe_event"


class StripeEventNotice(Contract):
    """A verified Stripe webhook event about a top-up's payment, routed to its workflow."""

    event_id: str
    type: str
    payment_intent_id: str | None = None
    status: str | None = None


class SettleUnstartedTopUps(Contract):
    """Top-up intents written but whose workflow never started (the API stopped between the two): after
    `older_than_s` they are closed as failed, nothing having been charged."""

    older_than_s: int = 900
    limit: int = 200


class SettledTopUps(Contract):
    topup_ids: list[str] = Field(default_factory=list)


class AutoTopUpScan(Contract):
    """One pass over the lines under an auto top-up rule."""

    limit: int = 500


class AutoTopUpStarted(Contract):
    inputs: list[TopUpInput] = Field(default_factory=list)
    # The `MsisdnHash` search attribute of each top-up's line, by topup_id (empty in results recorded before it).
    msisdn_hashes: dict[str, str] = Field(default_factory=dict)
    checked: int = 0
