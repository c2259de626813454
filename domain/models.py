"""SQLAlchemy 2 models of the whole domain (SPEC §1–2). Money is integer minor units + ISO currency.

Every tenant-owned row carries `org_id` (and `company_id` where it belongs to a company), so the
tenant chain of any object is one row read away.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from domain.enums import (
    ApiKeyScope,
    ArticleKind,
    AutoRenewMode,
    BulkItemStatus,
    BulkOperationKind,
    BulkOperationStatus,
    CfastSyncStatus,
    DeploymentKind,
    DeploymentStatus,
    DunningStage,
    ExternalSystem,
    InvoiceStatus,
    LineStatus,
    MajStatus,
    ParcType,
    PaymentMethod,
    PhoneNumberStatus,
    PlanType,
    PoolKind,
    SimStatus,
    SimType,
    StaffRole,
    SubscriptionKind,
    SubscriptionStatus,
    WalletOwnerType,
    WebhookDeliveryStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def enum_column(enum_cls: type[StrEnum]) -> SAEnum:
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


def id_column() -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id)


def org_fk() -> Mapped[str]:
    return mapped_column(String(32), ForeignKey("organisations.id"), index=True)


def company_fk(nullable: bool = False) -> Mapped[Any]:
    return mapped_column(String(32), ForeignKey("companies.id"), index=True, nullable=nullable)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxDelivery:
    """Delivery state of an outbox row, written by the outbox relay (`activities.outbox`): a relay claims the
    row (`claim_token` until `claimed_until`), sends it, then sets `sent_at`; a permanent refusal sets
    `failed_at`. `attempts` counts the claims, `last_error` keeps the last failure."""

    sent_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column()


class MailAttachment:
    """One attachment of an outbox mail, resolved when the mail is sent (`domain.services.outbox`):
    e.g. `attachment_kind='invoice'`, `attachment_ref=<invoice id>`."""

    attachment_kind: Mapped[str | None] = mapped_column(String(32))
    attachment_ref: Mapped[str | None] = mapped_column(String(64))


# --- Tenancy -------------------------------------------------------------------------------------


class Organisation(Timestamped, Base):
    __tablename__ = "organisations"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    siret: Mapped[str | None] = mapped_column(String(14))
    vat_number: Mapped[str | None] = mapped_column(String(20))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    brand_name: Mapped[str | None] = mapped_column(String(200))
    invoice_footer: Mapped[str | None] = mapped_column(Text)
    stripe_account_ref: Mapped[str | None] = mapped_column(String(100))
    # Invoice header and footer banner (seed 002): legal name, address, customer service; PNG/JPEG images.
    legal_name: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(Text)
    customer_service_phone: Mapped[str | None] = mapped_column(String(60))
    customer_service_email: Mapped[str | None] = mapped_column(String(320))
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    footer_banner: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # 0013 onboarding (seed 002 "Renseignements complémentaires"); `disabled_at` set by a cancelled onboarding.
    accounting_email: Mapped[str | None] = mapped_column(String(320))
    technical_email: Mapped[str | None] = mapped_column(String(320))
    technical_contact_name: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None] = mapped_column()
    # SEPA creditor identifier (seed 002 §7, `FRkkZZZnnnnnn`): on invoices, for payment by transfer or mandate.
    sepa_ics: Mapped[str | None] = mapped_column(String(13))


class Company(Timestamped, Base):
    __tablename__ = "companies"
    __table_args__ = (UniqueConstraint("org_id", "siret"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    name: Mapped[str] = mapped_column(String(200))
    siret: Mapped[str | None] = mapped_column(String(14))
    vat_number: Mapped[str | None] = mapped_column(String(20))
    is_virtual: Mapped[bool] = mapped_column(Boolean, default=False)
    billing_email: Mapped[str | None] = mapped_column(String(320))
    address: Mapped[str | None] = mapped_column(Text)
    customer_reference: Mapped[str] = mapped_column(String(64), unique=True)
    cfast_customer_id: Mapped[str | None] = mapped_column(String(64))
    cfast_status: Mapped[CfastSyncStatus] = mapped_column(enum_column(CfastSyncStatus), default=CfastSyncStatus.PENDING)
    cfast_workflow_id: Mapped[str | None] = mapped_column(String(200))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(100))
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(100))

    billing_sites: Mapped[list[BillingSite]] = relationship(back_populates="company", lazy="raise")


class BillingSite(Timestamped, Base):
    """CFAST level 5000 (billing point)."""

    __tablename__ = "billing_sites"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    label: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(Text)
    cfast_billing_point_id: Mapped[str | None] = mapped_column(String(64))

    company: Mapped[Company] = relationship(back_populates="billing_sites", lazy="raise")


class Parc(Timestamped, Base):
    """CFAST level 9000 (service site), grouping lines by type."""

    __tablename__ = "parcs"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    billing_site_id: Mapped[str] = mapped_column(String(32), ForeignKey("billing_sites.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    parc_type: Mapped[ParcType] = mapped_column(enum_column(ParcType), default=ParcType.MOBILE)
    cfast_site_id: Mapped[str | None] = mapped_column(String(64))


class EndUser(Timestamped, Base):
    __tablename__ = "end_users"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(100))
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # account security (0003): lockout, forced change, 2FA replay guard, token revocation
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column()
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    tokens_valid_after: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()


class SavedPaymentMethod(Timestamped, Base):
    """A card saved through a confirmed SetupIntent, on the Stripe customer of a company or of an end user
    (`end_user_id` NULL: the company's). Kept here for listing and the tenancy guard; the default card is
    the owner's `stripe_payment_method_id` (what the top-up charges), never a second flag."""

    __tablename__ = "payment_methods"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    end_user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("end_users.id"), index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(100))
    stripe_payment_method_id: Mapped[str] = mapped_column(String(100), unique=True)
    brand: Mapped[str | None] = mapped_column(String(32))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)


class StaffUser(Timestamped, Base):
    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint(
            "(role = 'platform_admin' AND org_id IS NULL) OR (role = 'org_staff' AND org_id IS NOT NULL "
            "AND company_id IS NULL) OR (role = 'company_staff' AND company_id IS NOT NULL AND org_id IS NOT NULL)",
            name="role_scope",
        ),
    )

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[StaffRole] = mapped_column(enum_column(StaffRole))
    org_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("organisations.id"), index=True)
    company_id: Mapped[str | None] = company_fk(nullable=True)
    # "*" (every area), "<area>" (read and write) or "<area>:read"; created without a list = administrator
    permissions: Mapped[list[str]] = mapped_column(default=lambda: ["*"])
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # account security (0003): 2FA replay guard, token revocation
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    tokens_valid_after: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()


class ApiKey(Timestamped, Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str | None] = company_fk(nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scope: Mapped[ApiKeyScope] = mapped_column(enum_column(ApiKeyScope))
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    # 0003: the last characters shown in listings, who created it, the key that replaced it on rotation
    last4: Mapped[str] = mapped_column(String(4), default="", server_default="")
    created_by: Mapped[str] = mapped_column(String(320), default="", server_default="")
    replaced_by_id: Mapped[str | None] = mapped_column(String(32))


# --- Offers --------------------------------------------------------------------------------------


class Plan(Timestamped, Base):
    __tablename__ = "plans"
    __table_args__ = (CheckConstraint("price_minor >= 100", name="price_at_least_one"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str | None] = company_fk(nullable=True)  # None = general (all companies)
    name: Mapped[str] = mapped_column(String(200))
    plan_type: Mapped[PlanType] = mapped_column(enum_column(PlanType))
    subscription_kind: Mapped[SubscriptionKind | None] = mapped_column(enum_column(SubscriptionKind))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    prorated: Mapped[bool] = mapped_column(Boolean, default=False)
    data_allowance_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    validity_days: Mapped[int] = mapped_column(Integer, default=30)
    carrier: Mapped[str] = mapped_column(String(50))
    esim_store: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_renew_mode: Mapped[AutoRenewMode] = mapped_column(enum_column(AutoRenewMode), default=AutoRenewMode.PROMPT)
    price_per_mb_by_country: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(default=list)
    # SIM lifecycle: the supplier (SNAIC) offer and its purchase price, billed as CFAST periodicBuyPrice.
    supplier_offer_code: Mapped[str | None] = mapped_column(String(64))
    purchase_price_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class CatalogueArticle(Timestamped, Base):
    __tablename__ = "catalogue_articles"
    __table_args__ = (
        UniqueConstraint("org_id", "code"),
        CheckConstraint("sale_price_minor >= 0 AND purchase_price_minor >= 0", name="prices_not_negative"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ArticleKind] = mapped_column(enum_column(ArticleKind))
    sale_price_minor: Mapped[int] = mapped_column(BigInteger)
    purchase_price_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    data_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    category: Mapped[str] = mapped_column(String(100), default="Mobile")
    carrier: Mapped[str | None] = mapped_column(String(50))
    white_label: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Pool(Timestamped, Base):
    """Lines of one company sharing one allowance, renewed at pool level (seed 000). The plan (subscription
    kind `static_pool` | `dynamic_pool`) holds the price rules: a static pool costs the plan's price and gets
    its data whatever the member count; a dynamic pool, the plan's price and data per active member.
    The allowance lives in the pool's own OCS account (`ocs_account`), the members' charging account."""

    __tablename__ = "pools"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[PoolKind] = mapped_column(enum_column(PoolKind))
    # 0016: None only for a pool created before pools renewed (it has no subscription).
    plan_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("plans.id"))
    ocs_account: Mapped[str | None] = mapped_column(String(64), unique=True)


# --- Inventory and lines -------------------------------------------------------------------------


class SimCard(Timestamped, Base):
    __tablename__ = "sim_cards"
    __table_args__ = (
        Index("ix_sim_cards_org_status", "org_id", "status"),
        Index("ix_sim_cards_first_usage_pending", "first_usage_published_at", "first_usage_at"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    imsi: Mapped[str] = mapped_column(String(15), unique=True)
    puk1: Mapped[str | None] = mapped_column(String(16))
    puk2: Mapped[str | None] = mapped_column(String(16))
    carrier: Mapped[str] = mapped_column(String(50))
    is_esim: Mapped[bool] = mapped_column(Boolean, default=False)
    activation_code: Mapped[str | None] = mapped_column(String(255))
    sim_type: Mapped[SimType] = mapped_column(enum_column(SimType), default=SimType.PREPAID)
    status: Mapped[SimStatus] = mapped_column(enum_column(SimStatus), default=SimStatus.PENDING)
    company_id: Mapped[str | None] = company_fk(nullable=True)
    end_user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("end_users.id"))
    plan_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("plans.id"))
    pool_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("pools.id"))
    tags: Mapped[list[str]] = mapped_column(default=list)
    note: Mapped[str | None] = mapped_column(Text)
    imei: Mapped[str | None] = mapped_column(String(16))
    in_session: Mapped[bool | None] = mapped_column(Boolean)
    remaining_bytes: Mapped[int | None] = mapped_column(BigInteger)
    remaining_days: Mapped[int | None] = mapped_column(Integer)
    month_usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    import_batch: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # SIM lifecycle: the workflow holding the SIM (no double allocation), automation rules applied.
    reserved_by: Mapped[str | None] = mapped_column(String(200), index=True)
    rule_ids: Mapped[list[str]] = mapped_column(default=list)
    # 0005 first usage: when it was seen, and when the `sim_card.first_usage` event went out (outbox).
    first_usage_at: Mapped[datetime | None] = mapped_column()
    first_usage_published_at: Mapped[datetime | None] = mapped_column()


class SimChange(Base):
    """The SIM change journal (seed 000 "Journal"): date, field, old value, new value, actor."""

    __tablename__ = "sim_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sim_id: Mapped[str] = mapped_column(String(32), ForeignKey("sim_cards.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(320))


class Line(Timestamped, Base):
    __tablename__ = "lines"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    sim_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("sim_cards.id"), index=True)
    end_user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("end_users.id"))
    msisdn: Mapped[str] = mapped_column(String(20), index=True)
    billing_site_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("billing_sites.id"))
    parc_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("parcs.id"))
    plan_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("plans.id"))
    status: Mapped[LineStatus] = mapped_column(enum_column(LineStatus), default=LineStatus.UNDER_CONSTRUCTION)
    hide_called_numbers: Mapped[bool] = mapped_column(Boolean, default=True)
    cfast_service_id: Mapped[str | None] = mapped_column(String(64))
    cfast_service_label: Mapped[str | None] = mapped_column(String(64))
    snaic_line_id: Mapped[str | None] = mapped_column(String(64))
    ocs_account: Mapped[str | None] = mapped_column(String(64))
    # 0016: the pool the line belongs to (at most one, of the line's company); its usage draws on the pool's.
    pool_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("pools.id"), index=True)
    next_renewal_on: Mapped[date | None] = mapped_column(Date)
    periodic_options: Mapped[list[str]] = mapped_column(default=list)
    # SIM lifecycle: the workflows that built and end the line, the grace period, why it failed.
    activation_workflow_id: Mapped[str | None] = mapped_column(String(200))
    termination_workflow_id: Mapped[str | None] = mapped_column(String(200))
    termination_scheduled_for: Mapped[datetime | None] = mapped_column()
    terminated_at: Mapped[datetime | None] = mapped_column()
    failure_reason: Mapped[str | None] = mapped_column(Text)


# --- Money ---------------------------------------------------------------------------------------


class Wallet(Timestamped, Base):
    __tablename__ = "wallets"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    owner_type: Mapped[WalletOwnerType] = mapped_column(enum_column(WalletOwnerType))
    owner_id: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # may be negative
    currency: Mapped[str] = mapped_column(String(3), default="EUR")

    @property
    def end_user_id(self) -> str | None:
        """The end user of an end user's wallet: part of its tenant chain (`TenantChain.of`)."""
        return self.owner_id if self.owner_type == WalletOwnerType.END_USER else None


class WalletEntry(Base):
    """Append-only ledger: the balance is the sum of entries. `reference` makes each movement idempotent."""

    __tablename__ = "wallet_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wallet_id: Mapped[str] = mapped_column(String(32), ForeignKey("wallets.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # credit > 0, debit < 0
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(String(300), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WalletFunding(Timestamped, Base):
    """A wallet funded by card. The workflow `wallet-funding/{org}/{id}` charges the owner's saved card, then
    writes the ledger credit (reference `{workflow_id}:credit`), or refunds the charge when it cannot."""

    __tablename__ = "wallet_fundings"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    end_user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("end_users.id"))
    wallet_id: Mapped[str] = mapped_column(String(32), ForeignKey("wallets.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(320))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    # pending | charging | charged | succeeded | failed | refunded | needs_attention
    status: Mapped[str] = mapped_column(String(32), default="pending")
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    refund_reference: Mapped[str | None] = mapped_column(String(100))
    ledger_reference: Mapped[str | None] = mapped_column(String(200))
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Transaction(Timestamped, Base):
    """Charges positive, credits negative; only uninvoiced ones can be voided. `retail_minor` is what the
    customer pays, tax included; `tax_minor` the VAT inside it. `billed_by` names who issues the document
    (see `domain.services.billing`); a reversal points at the transaction it reverses."""

    __tablename__ = "transactions"
    __table_args__ = (Index("ix_transactions_billing", "org_id", "company_id", "invoice_id"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    line_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("lines.id"))
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(String(300))
    retail_minor: Mapped[int] = mapped_column(BigInteger)
    wholesale_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    invoice_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("invoices.id"))
    voided: Mapped[bool] = mapped_column(Boolean, default=False)
    tax_rate_bp: Mapped[int] = mapped_column(Integer, default=2000, server_default="2000")
    billed_by: Mapped[str] = mapped_column(String(16), default="run", server_default="run")
    reverses_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("transactions.id"), unique=True)
    voided_at: Mapped[datetime | None] = mapped_column()
    voided_by: Mapped[str | None] = mapped_column(String(320))


class InvoiceCounter(Base):
    """Gapless invoice numbering per organisation: incremented in the transaction that issues the invoice."""

    __tablename__ = "invoice_counters"

    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("organisations.id"), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(Timestamped, Base):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("org_id", "number"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    number: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[InvoiceStatus] = mapped_column(enum_column(InvoiceStatus), default=InvoiceStatus.ISSUED)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "invoice" or "credit_note" (negative amounts, numbered in the same gapless series, refers to the invoice).
    kind: Mapped[str] = mapped_column(String(16), default="invoice", server_default="invoice")
    credited_invoice_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("invoices.id"))
    title: Mapped[str | None] = mapped_column(String(200))
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)  # exclusive
    due_on: Mapped[date | None] = mapped_column(Date)


class Payment(Timestamped, Base):
    __tablename__ = "payments"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    invoice_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("invoices.id"))
    method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    status: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(100), unique=True)


class Refund(Timestamped, Base):
    __tablename__ = "refunds"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    payment_id: Mapped[str] = mapped_column(String(32), ForeignKey("payments.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(32))


# --- Deployments and update (MAJ) records --------------------------------------------------------


class Deployment(Timestamped, Base):
    """A change order on one or more lines (seed 003 "déploiement"), executed by a workflow."""

    __tablename__ = "deployments"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    kind: Mapped[DeploymentKind] = mapped_column(enum_column(DeploymentKind))
    status: Mapped[DeploymentStatus] = mapped_column(enum_column(DeploymentStatus), default=DeploymentStatus.PENDING)
    category: Mapped[str] = mapped_column(String(100), default="Mobile")
    partner: Mapped[str | None] = mapped_column(String(100))
    collecting_operator: Mapped[str | None] = mapped_column(String(100))
    workflow_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeploymentItem(Base):
    __tablename__ = "deployment_items"

    id: Mapped[str] = id_column()
    deployment_id: Mapped[str] = mapped_column(String(32), ForeignKey("deployments.id"), index=True)
    line_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("lines.id"))
    article_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("catalogue_articles.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")


class UpdateRecord(Base):
    """One push to an external system (seed 003 "MAJ"): what was sent, the answer, ids obtained, errors."""

    __tablename__ = "update_records"
    __table_args__ = (UniqueConstraint("reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str | None] = company_fk(nullable=True)
    deployment_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("deployments.id"), index=True)
    line_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("lines.id"), index=True)
    workflow_id: Mapped[str | None] = mapped_column(String(200), index=True)
    reference: Mapped[str] = mapped_column(String(250))
    system: Mapped[ExternalSystem] = mapped_column(enum_column(ExternalSystem))
    operation: Mapped[str] = mapped_column(String(64))
    status: Mapped[MajStatus] = mapped_column(enum_column(MajStatus))
    sent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    answer: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ids_obtained: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Automation, webhooks, audit -----------------------------------------------------------------


class Rule(Timestamped, Base):
    __tablename__ = "rules"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str | None] = company_fk(nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    entity: Mapped[str] = mapped_column(String(32))  # sim_card | pool | wallet
    period: Mapped[str] = mapped_column(String(32))  # billing_cycle | permanent | recharge_cycle
    trigger: Mapped[str] = mapped_column(String(64))
    plan_type: Mapped[str | None] = mapped_column(String(32))
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    action: Mapped[str] = mapped_column(String(32))  # notify | webhook | suspend | activate | auto_top_up
    action_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class WebhookEndpoint(Timestamped, Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    url: Mapped[str] = mapped_column(String(2000))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    validated_at: Mapped[datetime | None] = mapped_column()
    # 0003: secret rotation overlap (deliveries signed with both until it expires), author
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(320), default="", server_default="")


class WebhookDelivery(Timestamped, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    endpoint_id: Mapped[str] = mapped_column(String(32), ForeignKey("webhook_endpoints.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        enum_column(WebhookDeliveryStatus), default=WebhookDeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
    workflow_id: Mapped[str | None] = mapped_column(String(200))  # 0003: the latest delivery workflow
    # 0012: staff-requested redeliveries so far; the n-th runs as `webhook-redelivery/{org}/{id}/{n}`
    redeliveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditLog(Base):
    """Append-only, hash-chained: each row's hash covers its content and the previous row's hash."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))
    org_id: Mapped[str | None] = mapped_column(String(32), index=True)
    company_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # 0003: the rest of the tenant chain, who acted, and an idempotency reference for workflow writes
    end_user_id: Mapped[str | None] = mapped_column(String(32))
    actor_kind: Mapped[str] = mapped_column(String(16), default="system", server_default="system")
    reference: Mapped[str | None] = mapped_column(String(250), unique=True)


# --- Top-ups -------------------------------------------------------------------------------------


class TopUp(Timestamped, Base):
    """A data recharge of one line. The workflow `topup/{org}/{id}` drives it; this row is its ledger view."""

    __tablename__ = "topups"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        CheckConstraint("quantity >= 1 AND amount_minor >= 0", name="positive_amounts"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    line_id: Mapped[str] = mapped_column(String(32), ForeignKey("lines.id"), index=True)
    end_user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("end_users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # api | portal | rule
    requested_by: Mapped[str] = mapped_column(String(320))
    article_id: Mapped[str] = mapped_column(String(32), ForeignKey("catalogue_articles.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    data_bytes: Mapped[int] = mapped_column(BigInteger)
    payment_method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    payment_status: Mapped[str] = mapped_column(String(32), default="pending")
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    refund_reference: Mapped[str | None] = mapped_column(String(100))
    deployment_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("deployments.id"))
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StripeEvent(Base):
    """Stripe webhook inbox: one row per event id, so a redelivered event is processed once."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    payment_intent_id: Mapped[str | None] = mapped_column(String(100), index=True)
    topup_id: Mapped[str | None] = mapped_column(String(32))
    routed: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(OutboxDelivery, MailAttachment, Base):
    """A mail to a customer (top-up receipt, invoice…), sent by the outbox relay (`workflows.outbox_relay`)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "sent_at", "failed_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str | None] = company_fk(nullable=True)
    reference: Mapped[str] = mapped_column(String(250), unique=True)
    recipient: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


# --- SIM lifecycle ---------------------------------------------------------------------------------


class NumberRange(Timestamped, Base):
    """A block of MSISDNs the organisation holds from its operator (E.164, same length at both ends);
    activations without a chosen number take the lowest free one."""

    __tablename__ = "number_ranges"
    __table_args__ = (UniqueConstraint("org_id", "first_msisdn"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    label: Mapped[str] = mapped_column(String(200))
    first_msisdn: Mapped[str] = mapped_column(String(20))
    last_msisdn: Mapped[str] = mapped_column(String(20))
    carrier: Mapped[str | None] = mapped_column(String(50))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class PhoneNumber(Timestamped, Base):
    """One MSISDN known to the platform. The unique `msisdn` makes allocation safe under concurrency:
    two activations can never hold the same number. After termination a number rests in quarantine
    until `quarantine_until` before it can be allocated again."""

    __tablename__ = "phone_numbers"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    range_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("number_ranges.id"))
    status: Mapped[PhoneNumberStatus] = mapped_column(enum_column(PhoneNumberStatus))
    ported_in: Mapped[bool] = mapped_column(Boolean, default=False)
    reservation_key: Mapped[str | None] = mapped_column(String(200), index=True)
    line_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("lines.id"))
    quarantine_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LineChange(Base):
    """The line journal: status and plan changes with the actor and the workflow that made them."""

    __tablename__ = "line_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    line_id: Mapped[str] = mapped_column(String(32), ForeignKey("lines.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(320))
    workflow_id: Mapped[str | None] = mapped_column(String(200))


class SimImport(Timestamped, Base):
    """One import of an operator order file, with its rejected rows for the downloadable error report."""

    __tablename__ = "sim_imports"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    batch: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(320))


class AccountStatusImport(Timestamped, Base):
    """One AccountStatus file of an organisation, applied once (`account-status/{org}/{sha256}`): the file
    itself, the cursor of the rows already applied (moved in the same transaction as each chunk), the
    counts and the reported rows (invalid, unknown ICCID), the first thousand of them."""

    __tablename__ = "account_status_imports"
    __table_args__ = (UniqueConstraint("org_id", "sha256"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255), default="")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | completed
    workflow_id: Mapped[str] = mapped_column(String(200))
    next_row: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    applied: Mapped[int] = mapped_column(Integer, default=0)
    activated: Mapped[int] = mapped_column(Integer, default=0)
    unknown: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(320))
    finished_at: Mapped[datetime | None] = mapped_column()


class BulkOperation(Timestamped, Base):
    """A bulk operation on selected SIMs (seed 000), run by the workflow `bulk/{org}/{id}`."""

    __tablename__ = "bulk_operations"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str | None] = company_fk(nullable=True)
    kind: Mapped[BulkOperationKind] = mapped_column(enum_column(BulkOperationKind))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[BulkOperationStatus] = mapped_column(
        enum_column(BulkOperationStatus), default=BulkOperationStatus.RUNNING
    )
    total: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    created_by: Mapped[str] = mapped_column(String(320))
    finished_at: Mapped[datetime | None] = mapped_column()


class BulkOperationItem(Base):
    """The per-SIM result of a bulk operation: the report staff export as CSV."""

    __tablename__ = "bulk_operation_items"
    __table_args__ = (UniqueConstraint("bulk_id", "iccid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bulk_id: Mapped[str] = mapped_column(String(32), ForeignKey("bulk_operations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    iccid: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[BulkItemStatus] = mapped_column(enum_column(BulkItemStatus), default=BulkItemStatus.PENDING)
    detail: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    line_id: Mapped[str | None] = mapped_column(String(32))
    finished_at: Mapped[datetime | None] = mapped_column()


class SimMessage(OutboxDelivery, Timestamped, Base):
    """An SMS to the end user of a SIM (bulk "Envoyer un SMS"), sent through the SMS gateway by the outbox
    relay; `status` follows it: queued, sent or failed."""

    __tablename__ = "sim_messages"
    __table_args__ = (Index("ix_sim_messages_pending", "sent_at", "failed_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = org_fk()
    sim_id: Mapped[str] = mapped_column(String(32), ForeignKey("sim_cards.id"), index=True)
    reference: Mapped[str] = mapped_column(String(250), unique=True)
    text: Mapped[str] = mapped_column(String(640))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_by: Mapped[str] = mapped_column(String(320))


# --- Security ------------------------------------------------------------------------------------


class AuditChainHead(Base):
    """The single row every audit append updates first: it serialises appenders (row lock on PostgreSQL,
    write lock on SQLite) and remembers the last hash, so a deleted tail is detected too."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appended: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class BackupCode(Base):
    """Single-use 2FA recovery codes, stored as keyed hashes; `used_at` set on use."""

    __tablename__ = "backup_codes"
    __table_args__ = (Index("ix_backup_codes_account", "account_kind", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column()


class PasswordResetToken(Base):
    """A password reset link: only its hash is kept; valid until `expires_at`, once."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[str] = id_column()
    account_kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class RefreshToken(Base):
    """One refresh token (its JWT id). Rotated on every use; presenting a rotated one revokes its family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = id_column()
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    account_kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    replaced_by: Mapped[str | None] = mapped_column(String(32))


class RateLimitHit(Base):
    """One counted request of a rate limit or login throttle (`api.ratelimit`), shared by every API process;
    deleted once its window has passed. Times are seconds since the epoch."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512))
    at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class SecurityMessage(OutboxDelivery, MailAttachment, Base):
    """Outbox of account-security mails (password reset), sent by the outbox relay."""

    __tablename__ = "security_messages"
    __table_args__ = (Index("ix_security_messages_pending", "sent_at", "failed_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDeliveryAttempt(Base):
    """The per-delivery log: one row per HTTP attempt of a webhook delivery."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(32), ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


# --- Integrator onboarding -------------------------------------------------------------------------


class Onboarding(Timestamped, Base):
    """The onboarding of one organisation (seed 002), driven by the workflow `onboarding/{org}`; this row is its
    projection, written by the workflow's activities at every change: stage, stage history, payments, dossier."""

    __tablename__ = "onboardings"
    __table_args__ = (
        CheckConstraint("deposit_minor > 0 AND balance_minor >= 0", name="positive_amounts"),
        CheckConstraint("reminder_after_s > 0 AND platform_sla_s > 0", name="positive_delays"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("organisations.id"), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    contact_email: Mapped[str] = mapped_column(String(320))
    contact_name: Mapped[str] = mapped_column(String(200))
    # in_progress | completed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    stage: Mapped[str] = mapped_column(String(32))
    stage_since: Mapped[datetime] = mapped_column(default=utcnow)
    needs_attention: Mapped[bool] = mapped_column(Boolean, default=False)
    attention_reason: Mapped[str | None] = mapped_column(Text)
    # [{"stage", "event", "at", "by", "note"}], oldest first
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    deposit_minor: Mapped[int] = mapped_column(BigInteger)
    balance_minor: Mapped[int] = mapped_column(BigInteger)
    # {"deposit": {"method", "reference", "amount_minor", "refund_reference"}, "balance": {...}}
    payments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {item: {"status": valid | invalid | rejected, "filename", "document_id", "errors": [...], "at"}}
    dossier: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reminder_after_s: Mapped[int] = mapped_column(Integer)
    max_reminders: Mapped[int] = mapped_column(Integer, default=3)
    platform_sla_s: Mapped[int] = mapped_column(Integer)
    sim_batch_size: Mapped[int] = mapped_column(Integer, default=10)
    created_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OnboardingDocument(Base):
    """One upload of a technical dossier item (a file, or a value such as an email): kept as sent, whether or
    not it validates; the dossier entry of the onboarding points at the last valid one."""

    __tablename__ = "onboarding_documents"

    id: Mapped[str] = id_column()
    onboarding_id: Mapped[str] = mapped_column(String(32), ForeignKey("onboardings.id"), index=True)
    item: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(100), default="")
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(320))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Subscriptions (renewals) --------------------------------------------------------------------


class Subscription(Timestamped, Base):
    """A renewing service and its entity workflow `subscription/{org}/{owner}`: the owner is a line
    (`{owner}` = line id) or a pool (`pool-{pool_id}`), with the same calendar, charge and dunning."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("(line_id IS NULL) <> (pool_id IS NULL)", name="one_owner"),
        CheckConstraint("period >= 0 AND validity_days >= 1", name="period_and_validity"),
        Index("ix_subscriptions_org_status", "org_id", "status"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = org_fk()
    company_id: Mapped[str] = company_fk()
    line_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("lines.id"), unique=True)
    pool_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("pools.id"), unique=True)
    end_user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("end_users.id"))
    plan_id: Mapped[str] = mapped_column(String(32), ForeignKey("plans.id"))
    # The plan applied from the next renewal on (a change on a plan that does not prorate).
    next_plan_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("plans.id"))
    anchor_on: Mapped[date] = mapped_column(Date)
    validity_days: Mapped[int] = mapped_column(Integer)
    period: Mapped[int] = mapped_column(Integer, default=0)  # the last period paid (0: the activation's)
    next_renewal_on: Mapped[date] = mapped_column(Date, index=True)
    auto_renew_mode: Mapped[AutoRenewMode] = mapped_column(enum_column(AutoRenewMode))
    payment_method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    status: Mapped[SubscriptionStatus] = mapped_column(
        enum_column(SubscriptionStatus), default=SubscriptionStatus.ACTIVE
    )
    dunning_stage: Mapped[DunningStage | None] = mapped_column(enum_column(DunningStage))
    dunning_since: Mapped[date | None] = mapped_column(Date)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    last_failure: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DunningPolicy(Timestamped, Base):
    """Per organisation: the last day (after the failed renewal) of each dunning stage; termination follows
    the suspension's last day. No row: the defaults (retry 1–3, second attempt 4–7, suspension 8–14, 15)."""

    __tablename__ = "dunning_policies"
    __table_args__ = (
        CheckConstraint(
            "retry_until_day >= 1 AND second_attempt_until_day > retry_until_day "
            "AND suspension_until_day > second_attempt_until_day",
            name="stages_in_order",
        ),
    )

    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("organisations.id"), primary_key=True)
    retry_until_day: Mapped[int] = mapped_column(Integer, default=3)
    second_attempt_until_day: Mapped[int] = mapped_column(Integer, default=7)
    suspension_until_day: Mapped[int] = mapped_column(Integer, default=14)
