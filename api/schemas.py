"""HTTP request and response schemas. Requests forbid extra fields (no mass assignment)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Path, Query
from fastapi import Response as HttpResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError
from starlette.convertors import Convertor, register_url_convertor

from domain.enums import (
    TOPUP_PAYMENT_METHODS,
    ArticleKind,
    AutoRenewMode,
    CfastSyncStatus,
    PaymentMethod,
    PlanType,
    SimStatus,
    SimType,
    SubscriptionKind,
)
from domain.identifiers import normalize_siret, normalize_vat

# --- identifiers as the OpenAPI documents them ---
# Each pattern accepts every form the validator of domain/identifiers.py accepts (separators included), so
# data outside it is always refused; check digits (Luhn, VAT key) cannot be patterns: `format` names the
# rule, and data of the right shape with a wrong key is answered 422 naming the field. The validators
# enforce them (the schema states them): their reasons name what is wrong in French, key included.

SIRET_PATTERN = r"^[0-9](?:[ .]?[0-9]){13}$"
SIRET = Field(
    description="SIRET : 14 chiffres, clé de Luhn (espaces ou points admis)",
    json_schema_extra={
        "format": "siret",
        "pattern": SIRET_PATTERN,
        "minLength": 14,
        "maxLength": 27,
        "examples": ["73282932000074"],
    },
)
VAT_PATTERN = r"^(?:[A-Za-z]{2}[ .-]?)?[0-9A-Za-z](?:[ .-]?[0-9A-Za-z+*]){1,13}$"
VAT = Field(
    description="Numéro de TVA intracommunautaire, préfixe pays (FR si absent), clé de contrôle vérifiée",
    json_schema_extra={
        "format": "vat",
        "pattern": VAT_PATTERN,
        "minLength": 2,
        "maxLength": 30,
        "examples": ["FR44732829320"],
    },
)
ICCID_PATTERN = r"^[0-9](?:[ .-]?[0-9]){18,19}[Ff]?$"
ICCID_DESCRIPTION = "ICCID : 19 ou 20 chiffres dont la clé de Luhn (espaces ou tirets admis)"
ICCID_SCHEMA: dict[str, Any] = {"format": "iccid", "examples": ["8933150319001234562"]}
ICCID = Field(
    description=ICCID_DESCRIPTION,
    json_schema_extra={**ICCID_SCHEMA, "pattern": ICCID_PATTERN, "minLength": 19, "maxLength": 40},
)
MSISDN_PATTERN = r"^(?:\+|00)?[0-9](?:[ .-]?[0-9]){5,16}$"
MSISDN_SCHEMA: dict[str, Any] = {"format": "msisdn", "examples": ["+33612345678", "06 12 34 56 78"]}
RIO_PATTERN = r"^[0-9A-Za-z]{2}[ .-]?[EPep][ .-]?[0-9A-Za-z]{6}[ .-]?[0-9A-Za-z+]{3}$"
# Pagination cursors are issued by the API (`next_cursor`, `domain.pagination`): a position (digits) in
# base64url. The pattern is exactly the base64url of 1 to `max_digits` digits: each group of 3 digits gives
# 4 characters, a last group of 1 or 2 digits gives 2 characters and `==` or 3 characters and `=`.
_DIGITS_3 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
_DIGITS_1_OR_2 = "(?:[MN][AQgw]|O[AQ])==|(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]="


def page_cursor(max_digits: int) -> Any:
    pattern = f"^(?:{_DIGITS_3}){{0,{max_digits // 3 - 1}}}(?:{_DIGITS_3}|{_DIGITS_1_OR_2})$"
    return Query(
        max_length=4 * -(-max_digits // 3),
        description="`next_cursor` de la page précédente (opaque)",
        json_schema_extra={"pattern": pattern},
    )


# Lists answered as a bare array (their contract): the next page's cursor is in a `Link` header (RFC 8288).
NEXT_PAGE_LINK: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Link": {
                "description": 'Page suivante, quand il y en a une : `</api/v1/...?cursor=...>; rel="next"`',
                "schema": {"type": "string"},
            }
        }
    }
}


def set_next_link(response: HttpResponse, path: str, next_cursor: str | None, **params: object) -> None:
    if next_cursor is not None:
        query = urlencode({k: v for k, v in {**params, "cursor": next_cursor}.items() if v is not None})
        response.headers["Link"] = f'<{path}?{query}>; rel="next"'


ROW_ID_PATTERN = r"^[0-9a-f]{32}$"


def row_id_query(description: str) -> Any:
    """A filter on an object's id (32 lowercase hexadecimal digits)."""
    return Query(min_length=32, max_length=32, pattern=ROW_ID_PATTERN, description=description)


# The identifier filters state their pattern; `normalize_iccid` / `normalize_msisdn` enforce it with their reasons.
def iccid_query() -> Any:
    return Query(
        max_length=40, description=ICCID_DESCRIPTION, json_schema_extra={**ICCID_SCHEMA, "pattern": ICCID_PATTERN}
    )


def msisdn_query(description: str) -> Any:
    return Query(
        min_length=6,
        max_length=30,
        description=description,
        json_schema_extra={**MSISDN_SCHEMA, "pattern": MSISDN_PATTERN},
    )


def text_query(description: str, max_length: int) -> Any:
    """A free-text filter: non-blank, NUL-free."""
    return Query(min_length=1, max_length=max_length, pattern=r"^[^\x00]*\S[^\x00]*$", description=description)


def msisdn_field(description: str, *, default: Any = ...) -> Any:
    return Field(
        default,
        description=description,
        json_schema_extra={**MSISDN_SCHEMA, "pattern": MSISDN_PATTERN, "minLength": 6, "maxLength": 30},
    )


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Fichier CSV (UTF-8 avec BOM, séparateur ;)",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}
SVG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "QR code (SVG)", "content": {"image/svg+xml": {"schema": {"type": "string"}}}}
}

IccidPath = Annotated[
    str, Path(max_length=40, pattern=ICCID_PATTERN, description=ICCID_DESCRIPTION, json_schema_extra=ICCID_SCHEMA)
]
Slug = Annotated[
    str,
    Field(
        min_length=2,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Identifiant court : minuscules, chiffres et tirets",
    ),
]


def segment_except(*static: str) -> Convertor[str]:
    """A path segment other than the static names its sibling routes use: `GET /sims/export` is then no
    `GET /sims/{iccid}` but a method `/sims/export` does not serve (405 with `Allow: POST`)."""

    class Segment(Convertor[str]):
        regex = f"(?!(?:{'|'.join(map(re.escape, static))})(?:/|$))[^/]+"

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    return Segment()


# Path templates `/api/v1/sims/{iccid:iccid}` and `/api/v1/bulk-operations/{bulk_id:bulk_id}`.
register_url_convertor("iccid", segment_except("export", "import", "imports"))
register_url_convertor("bulk_id", segment_except("import-details"))


def _blank_is_not_text(schema: dict[str, Any]) -> None:
    """Requests strip surrounding whitespace before checking lengths: a required text documents that it
    needs non-blank characters (one, or two apart for a minimum of 2), so blank data is not schema-valid."""
    for prop in schema.get("properties", {}).values():
        for option in prop.get("anyOf", [prop]):
            if option.get("type") != "string" or "pattern" in option or "enum" in option or "format" in option:
                continue
            if option.get("minLength", 0) == 1:
                option["pattern"] = r"\S"
            elif option.get("minLength", 0) >= 2:
                option["pattern"] = r"\S[\s\S]*\S"


def _topup_payment_method(value: object) -> PaymentMethod:
    if isinstance(value, str) and value in TOPUP_PAYMENT_METHODS:
        return PaymentMethod(value)
    allowed = " or ".join([", ".join(f"'{m}'" for m in TOPUP_PAYMENT_METHODS[:-1]), f"'{TOPUP_PAYMENT_METHODS[-1]}'"])
    raise PydanticCustomError("literal_error", f"Input should be {allowed}")


# A top-up is paid by card, wallet or on account: the other payment methods are refused at the edge.
TopUpPaymentMethod = Annotated[
    PaymentMethod,
    PlainValidator(_topup_payment_method),
    WithJsonSchema({"type": "string", "enum": [m.value for m in TOPUP_PAYMENT_METHODS]}),
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_blank_is_not_text)

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: object, info: ValidationInfo) -> object:
        # JSON types as documented: no `0` for `false`, no `false` for 0 (pydantic's lax mode takes both).
        annotation = cls.model_fields[info.field_name or ""].annotation
        if annotation in (bool, bool | None) and value is not None and not isinstance(value, bool):
            raise ValueError("booléen attendu (true ou false)")
        if annotation in (int, int | None) and isinstance(value, bool):
            raise ValueError("entier attendu")
        return value

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
    slug: Slug
    siret: Annotated[str, SIRET] | None = None
    vat_number: Annotated[str, VAT] | None = None
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
    siret: Annotated[str, SIRET] | None = None
    vat_number: Annotated[str, VAT] | None = None
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


class CompanyUpdate(Request):
    """The fields sent are changed, the others kept; `null` clears an optional field."""

    # Absent: unchanged (only the fields sent are applied, `model_fields_set`); it cannot be cleared.
    name: str = Field(default="", min_length=2, max_length=200)
    siret: Annotated[str, SIRET] | None = None
    vat_number: Annotated[str, VAT] | None = None
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
    billing_email: str | None = None
    address: str | None = None
    is_virtual: bool
    customer_reference: str
    cfast_customer_id: str | None
    cfast_status: CfastSyncStatus
    cfast_workflow_id: str | None
    created_at: datetime


class CompanyCreated(CompanyOut):
    workflow_id: str
    workflow_url: str


class CompanyPage(BaseModel):
    items: list[CompanyOut]
    next_cursor: str | None


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


class EndUserPage(BaseModel):
    items: list[EndUserOut]
    next_cursor: str | None


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


class PlanUpdate(Request):
    """What may change on a plan that lines already hold: the terms read at each sale (activation,
    recharge, renewal). Its type, kind, company, currency, carrier and supplier offer stay as created."""

    name: str = Field(default="", min_length=1, max_length=200, description="Absent : inchangé")
    price_minor: int = Field(default=0, ge=100, le=100_000_000, description="Prix en centimes, 1,00 minimum")
    purchase_price_minor: int = Field(default=0, ge=0, le=100_000_000, description="Prix d'achat opérateur")
    data_allowance_mb: int = Field(default=0, ge=0, le=10_000_000)
    validity_days: int = Field(default=30, ge=1, le=3660)
    auto_renew_mode: AutoRenewMode = AutoRenewMode.PROMPT
    esim_store: bool = False


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


class PlanPage(BaseModel):
    items: list[PlanOut]
    next_cursor: str | None


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


class ArticlePage(BaseModel):
    items: list[ArticleOut]
    next_cursor: str | None


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
    line_id: str | None = Field(description="La ligne qui porte la carte aujourd'hui (aucune : null)")
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
