"""HTTP request and response schemas. Requests forbid extra fields (no mass assignment)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, field_validator

from domain.enums import (
    ArticleKind,
    AutoRenewMode,
    CfastSyncStatus,
    PlanType,
    SimStatus,
    SimType,
    SubscriptionKind,
)
from domain.identifiers import normalize_siret, normalize_vat


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL refuses NUL in text: reject it here, naming the field, rather than fail in the database.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("caractère NUL interdit")
        return value


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_in_utc(cls, value: Any) -> Any:
        """SQLite gives naive datetimes (stored in UTC): answer them with their offset, like PostgreSQL,
        so every `date-time` of the OpenAPI carries one."""
        return _as_utc(value) if isinstance(value, datetime) else value


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str | None = None
    must_change_password: bool = False


# --- organisations ---


class OrganisationCreate(Request):
    name: str = Field(min_length=2, max_length=200)
    slug: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    siret: str | None = None
    vat_number: str | None = None
    contact_email: EmailStr | None = None
    brand_name: str | None = Field(default=None, max_length=200)

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str | None) -> str | None:
        return None if value is None else normalize_siret(value)

    @field_validator("vat_number")
    @classmethod
    def _vat(cls, value: str | None) -> str | None:
        return None if value is None else normalize_vat(value)


class OrganisationOut(Response):
    id: str
    name: str
    slug: str
    siret: str | None
    vat_number: str | None
    contact_email: str | None
    brand_name: str | None
    created_at: datetime


# --- companies ---


class CompanyCreate(Request):
    org_id: str | None = Field(default=None, description="Obligatoire pour le personnel de la plateforme")
    name: str = Field(min_length=2, max_length=200)
    siret: str | None = None
    vat_number: str | None = None
    is_virtual: bool = False
    billing_email: EmailStr | None = None
    address: str | None = Field(default=None, max_length=500)

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str | None) -> str | None:
        return None if value is None else normalize_siret(value)

    @field_validator("vat_number")
    @classmethod
    def _vat(cls, value: str | None) -> str | None:
        return None if value is None else normalize_vat(value)


class CompanyOut(Response):
    id: str
    org_id: str
    name: str
    siret: str | None
    vat_number: str | None
    is_virtual: bool
    customer_reference: str
    cfast_customer_id: str | None
    cfast_status: CfastSyncStatus
    cfast_workflow_id: str | None
    created_at: datetime


class CompanyCreated(CompanyOut):
    workflow_id: str
    workflow_url: str


# --- end users ---


class EndUserCreate(Request):
    company_id: str
    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=200)


class EndUserOut(Response):
    id: str
    org_id: str
    company_id: str
    email: str
    full_name: str
    created_at: datetime


# --- plans and catalogue ---


class PlanCreate(Request):
    org_id: str | None = None
    company_id: str | None = Field(default=None, description="Absent : forfait général (toutes les entreprises)")
    name: str = Field(min_length=1, max_length=200)
    plan_type: PlanType
    subscription_kind: SubscriptionKind | None = None
    price_minor: int = Field(ge=100, le=100_000_000, description="Prix en centimes, 1,00 minimum")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    prorated: bool = False
    data_allowance_mb: int = Field(default=0, ge=0, le=10_000_000)
    validity_days: int = Field(default=30, ge=1, le=3660)
    carrier: str = Field(min_length=1, max_length=50)
    esim_store: bool = False
    auto_renew_mode: AutoRenewMode = AutoRenewMode.PROMPT
    supplier_offer_code: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    purchase_price_minor: int = Field(default=0, ge=0, le=100_000_000, description="Prix d'achat opérateur")


class PlanOut(Response):
    id: str
    org_id: str
    company_id: str | None
    name: str
    plan_type: PlanType
    subscription_kind: SubscriptionKind | None
    price_minor: int
    currency: str
    prorated: bool
    data_allowance_bytes: int
    validity_days: int
    carrier: str
    esim_store: bool
    auto_renew_mode: AutoRenewMode
    supplier_offer_code: str | None = None
    purchase_price_minor: int = 0


class ArticleCreate(Request):
    org_id: str | None = None
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    label: str = Field(min_length=1, max_length=200)
    kind: ArticleKind
    sale_price_minor: int = Field(ge=0, le=100_000_000)
    purchase_price_minor: int = Field(default=0, ge=0, le=100_000_000)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    data_mb: int = Field(default=0, ge=0, le=10_000_000)
    category: str = Field(default="Mobile", max_length=100)
    carrier: str | None = Field(default=None, max_length=50)
    white_label: str | None = Field(default=None, max_length=100)


class ArticleOut(Response):
    id: str
    org_id: str
    code: str
    label: str
    kind: ArticleKind
    sale_price_minor: int
    purchase_price_minor: int
    currency: str
    data_bytes: int
    category: str
    carrier: str | None
    white_label: str | None


# --- SIM cards ---


class SimOut(Response):
    id: str
    org_id: str
    iccid: str
    imsi: str
    carrier: str
    is_esim: bool
    sim_type: SimType
    status: SimStatus
    company_id: str | None
    end_user_id: str | None
    plan_id: str | None
    tags: list[str]
    note: str | None
    in_session: bool | None
    remaining_bytes: int | None
    remaining_days: int | None
    month_usage_bytes: int
    created_at: datetime


class SimChangeOut(Response):
    at: datetime
    field: str
    old_value: str | None
    new_value: str | None
    actor: str


class SimDetail(SimOut):
    journal: list[SimChangeOut]


class SimPage(BaseModel):
    items: list[SimOut]
    next_cursor: str | None


class ImportIssue(BaseModel):
    field: str
    reason: str


class ImportRow(BaseModel):
    row: int
    iccid: str
    accepted: bool
    errors: list[ImportIssue]


class ImportReportOut(BaseModel):
    batch: str
    accepted: int
    rejected: int
    rows: list[ImportRow]


def _as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes (stored in UTC): answer them with their offset, like PostgreSQL."""
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# A datetime answered with its UTC offset whatever the database (RFC 3339 `date-time`).
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
