"""HTTP schemas of the SIM lifecycle: activation, lines, termination, line operations, number ranges,
bulk operations. Requests forbid extra fields."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.schemas import ICCID, RIO_PATTERN, Request, Response, msisdn_field
from domain.enums import BulkItemStatus, BulkOperationKind, BulkOperationStatus, LineStatus, PhoneNumberStatus


class PortInIn(Request):
    msisdn: str = msisdn_field("Numéro porté (06/07, national ou E.164)")
    rio: str = Field(
        min_length=12,
        max_length=16,
        json_schema_extra={"pattern": RIO_PATTERN},
        description="Relevé d'identité opérateur (12 caractères) ; sa clé est vérifiée avec le numéro porté",
    )


class ActivationCreate(Request):
    company_id: str = Field(min_length=1, max_length=32)
    end_user_id: str | None = Field(default=None, max_length=32)
    plan_id: str = Field(min_length=1, max_length=32)
    msisdn: str | None = msisdn_field("Numéro choisi dans les plages (exclusif de port_in)", default=None)
    port_in: PortInIn | None = None

    @model_validator(mode="after")
    def _one_number_source(self) -> ActivationCreate:
        if self.msisdn is not None and self.port_in is not None:
            raise ValueError("msisdn et port_in sont exclusifs")
        return self


class ActivationAccepted(BaseModel):
    workflow_id: str
    line_id: str
    status: str
    workflow_url: str


class LineOut(Response):
    id: str
    org_id: str
    company_id: str
    end_user_id: str | None
    sim_id: str | None
    iccid: str | None = None
    msisdn: str | None
    status: LineStatus
    plan_id: str | None
    billing_site_id: str | None
    parc_id: str | None
    hide_called_numbers: bool
    snaic_line_id: str | None
    ocs_account: str | None
    cfast_service_id: str | None
    cfast_service_label: str | None
    next_renewal_on: date | None
    activation_workflow_id: str | None
    termination_workflow_id: str | None
    termination_scheduled_for: datetime | None
    terminated_at: datetime | None
    failure_reason: str | None
    accepts_topup: bool = False
    created_at: datetime

    @field_validator("msisdn", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return value or None


class LinePage(BaseModel):
    items: list[LineOut]
    next_cursor: str | None


class LineChangeOut(Response):
    at: datetime
    field: str
    old_value: str | None
    new_value: str | None
    actor: str
    workflow_id: str | None


class UpdateRecordOut(Response):
    at: datetime
    reference: str
    workflow_id: str | None
    deployment_id: str | None
    system: str
    operation: str
    status: str
    sent: dict[str, Any]
    answer: dict[str, Any]
    ids_obtained: dict[str, Any]
    error: str | None


class TerminationCreate(Request):
    grace_days: int = Field(default=0, ge=0, le=30, description="0 (immédiat) ou 7 à 30 jours")
    reason: str = Field(default="", max_length=500)

    @field_validator("grace_days")
    @classmethod
    def _grace(cls, value: int) -> int:
        if value and not 7 <= value <= 30:
            raise ValueError("délai de grâce : 0 (immédiat) ou de 7 à 30 jours")
        return value


class TerminationAccepted(BaseModel):
    workflow_id: str
    line_id: str
    status: str
    grace_until: datetime | None = None
    workflow_url: str


class TerminationCancelled(BaseModel):
    workflow_id: str
    line_id: str
    status: str


class PlanChangeCreate(Request):
    plan_id: str = Field(min_length=1, max_length=32)


class OperationAccepted(BaseModel):
    workflow_id: str
    line_id: str
    operation: str
    status: str
    workflow_url: str


class NumberRangeCreate(Request):
    org_id: str | None = None
    label: str = Field(min_length=1, max_length=200)
    first_msisdn: str = msisdn_field("Premier numéro de la plage")
    last_msisdn: str = msisdn_field("Dernier numéro : même longueur, après le premier, 1 000 000 de numéros au plus")
    carrier: str | None = Field(default=None, max_length=50)


class NumberRangeOut(Response):
    id: str
    org_id: str
    label: str
    first_msisdn: str
    last_msisdn: str
    carrier: str | None
    active: bool
    size: int = 0
    in_use: int = 0


class PhoneNumberOut(Response):
    id: str
    msisdn: str
    status: PhoneNumberStatus
    range_id: str | None
    line_id: str | None
    ported_in: bool
    quarantine_until: datetime | None


class PhoneNumberPage(BaseModel):
    items: list[PhoneNumberOut]
    next_cursor: str | None


class NumberRangeUsage(NumberRangeOut):
    allocated: int = Field(default=0, description="Numéros attribués à une ligne ou réservés par une activation")
    quarantined: int = Field(default=0, description="Numéros au repos après une résiliation")
    free: int = Field(default=0, description="Numéros que la prochaine activation peut prendre")


class BulkItemIn(Request):
    iccid: Annotated[str, ICCID]
    params: dict[str, Any] = Field(default_factory=dict)


class BulkCreate(Request):
    model_config = ConfigDict(
        json_schema_extra=lambda schema, cls: schema.update(
            anyOf=[
                {"required": ["iccids"], "properties": {"iccids": {"minItems": 1}}},
                {"required": ["items"], "properties": {"items": {"minItems": 1}}},
            ]
        )
    )
    kind: BulkOperationKind
    iccids: list[Annotated[str, ICCID]] = Field(default_factory=list, max_length=10_000)
    items: list[BulkItemIn] = Field(default_factory=list, max_length=10_000)
    params: dict[str, Any] = Field(default_factory=dict)
    org_id: str | None = None
    max_concurrency: int = Field(default=50, ge=1, le=200)

    @model_validator(mode="after")
    def _some_sims(self) -> BulkCreate:
        if not self.iccids and not self.items:
            raise ValueError("au moins une carte SIM (iccids ou items)")
        if len(self.iccids) + len(self.items) > 10_000:
            raise ValueError("10 000 cartes SIM au maximum par opération")
        return self


class BulkOut(Response):
    id: str
    org_id: str
    company_id: str | None
    kind: BulkOperationKind
    status: BulkOperationStatus
    total: int
    succeeded: int
    failed: int
    skipped: int
    workflow_id: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    running: int = 0
    done: int = 0
    workflow_url: str = ""


class BulkItemOut(Response):
    position: int
    iccid: str
    status: BulkItemStatus
    detail: str | None
    workflow_id: str | None
    line_id: str | None
    finished_at: datetime | None
