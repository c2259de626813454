"""Workflow and activity inputs and results (pydantic, frozen). New fields always get defaults so that
running histories still decode."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.enums import ExternalSystem, MajStatus


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


class MarkCfastFailed(Contract):
    company_id: str
    reason: str


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
