"""Statuses and kinds of the domain (SPEC §2): English identifiers in code, French labels for the portal."""

from __future__ import annotations

from enum import StrEnum


class StaffRole(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ORG_STAFF = "org_staff"
    COMPANY_STAFF = "company_staff"


class ApiKeyScope(StrEnum):
    READ_ONLY = "read_only"
    READ_WRITE = "read_write"


class SimType(StrEnum):
    PREPAID = "prepaid"
    SUBSCRIPTION = "subscription"
    PAYGO = "paygo"


class SimStatus(StrEnum):
    UNAVAILABLE = "unavailable"
    PENDING = "pending"
    BLANK = "blank"
    READY_FOR_ACTIVATION = "ready_for_activation"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    INVALID = "invalid"
    TERMINATED = "terminated"


SIM_STATUS_LABELS_FR: dict[SimStatus, str] = {
    SimStatus.UNAVAILABLE: "Non disponible",
    SimStatus.PENDING: "En attente",
    SimStatus.BLANK: "Vierge",
    SimStatus.READY_FOR_ACTIVATION: "Prête à l'activation",
    SimStatus.ACTIVE: "Active",
    SimStatus.SUSPENDED: "Suspendue",
    SimStatus.INVALID: "Invalide",
    SimStatus.TERMINATED: "Résiliée",
}

SIM_TYPE_LABELS_FR: dict[SimType, str] = {
    SimType.PREPAID: "Prépayé",
    SimType.SUBSCRIPTION: "Abonnement",
    SimType.PAYGO: "PAYGO",
}


class LineStatus(StrEnum):
    UNDER_CONSTRUCTION = "under_construction"
    ACTIVE = "active"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    OBSOLETE = "obsolete"


class PlanType(StrEnum):
    PREPAID = "prepaid"
    SUBSCRIPTION = "subscription"
    PAYGO = "paygo"


class SubscriptionKind(StrEnum):
    STATIC_POOL = "static_pool"
    DYNAMIC_POOL = "dynamic_pool"
    UNLIMITED = "unlimited"
    MONTHLY = "monthly"
    PAY_PER_MB = "pay_per_mb"


class AutoRenewMode(StrEnum):
    PROMPT = "prompt"
    ON = "on"
    OFF = "off"


class ArticleKind(StrEnum):
    PERIODIC_OPTION = "periodic_option"
    ONE_OFF_OPTION = "one_off_option"
    HARDWARE = "hardware"
    ONE_OFF_FEE = "one_off_fee"


class PoolKind(StrEnum):
    STATIC = "static"
    DYNAMIC = "dynamic"


class WalletOwnerType(StrEnum):
    COMPANY = "company"
    END_USER = "end_user"


class ParcType(StrEnum):
    FIXED = "fixed"
    INTERNET = "internet"
    MOBILE = "mobile"
    CYBERSECURITY = "cybersecurity"


class CfastSyncStatus(StrEnum):
    PENDING = "pending"
    SYNCED = "synced"
    FAILED = "failed"


class DeploymentKind(StrEnum):
    CREATE_CUSTOMER = "create_customer"
    CREATE_LINE = "create_line"
    MODIFY_LINE = "modify_line"
    TERMINATE_LINE = "terminate_line"
    ONE_OFF_OPTION = "one_off_option"
    HARDWARE = "hardware"
    FEE = "fee"


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"


class ExternalSystem(StrEnum):
    CFAST = "cfast"
    SNAIC = "snaic"
    OCS = "ocs"
    STRIPE = "stripe"


class MajStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


class SnaicOrderStatus(StrEnum):
    """An order at SNAIC, as its callback or a poll gives it; `timeout` (no answer within the SLA) and
    `nothing_to_do` (a cancellation that found no line of ours) are our own outcomes."""

    PENDING = "pending"
    COMPLETED = "completed"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    NOTHING_TO_DO = "nothing_to_do"


# An order in one of these has its outcome: no callback or poll can change it.
SNAIC_SETTLED_ORDER_STATUSES = (SnaicOrderStatus.COMPLETED, SnaicOrderStatus.REJECTED)


class PaymentStatus(StrEnum):
    """`payments.status`: money received by the provider, recorded by hand (bank transfer), or given back."""

    SUCCEEDED = "succeeded"
    ON_ACCOUNT = "on_account"  # billed by CFAST on the company's account
    MANUAL = "manual"
    REFUNDED = "refunded"


class PaymentMethod(StrEnum):
    CARD = "card"
    WALLET = "wallet"
    ACCOUNT = "account"
    SEPA = "sepa"
    MANUAL = "manual"
    TRANSFER = "transfer"  # a bank transfer (onboarding fees)


# How a top-up is paid: a saved card, the company's wallet, or billed on the CFAST account.
TOPUP_PAYMENT_METHODS = (PaymentMethod.CARD, PaymentMethod.WALLET, PaymentMethod.ACCOUNT)


class TopUpStatus(StrEnum):
    """`top_ups.status` (SPEC §4.3)."""

    PENDING = "pending"
    CHARGED = "charged"
    COMPLETED = "completed"
    REFUNDED = "refunded"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"


class TopUpPaymentStatus(StrEnum):
    """`top_ups.payment_status`: what happened to the money."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    ON_ACCOUNT = "on_account"
    DECLINED = "declined"
    REFUSED = "refused"
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"
    LINE_UNRESOLVED = "line_unresolved"
    NOT_STARTED = "not_started"


class TopUpSource(StrEnum):
    """Who asked for a top-up: the JSON API, the staff portal, the self-care portal, an auto top-up rule."""

    API = "api"
    PORTAL = "portal"
    SELFCARE = "selfcare"
    RULE = "rule"


class FundingStatus(StrEnum):
    """`wallet_fundings.status`."""

    PENDING = "pending"
    CHARGING = "charging"
    CHARGED = "charged"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"
    NEEDS_ATTENTION = "needs_attention"


class FileImportStatus(StrEnum):
    """`account_status_imports.status`: a stored file is applied once."""

    PENDING = "pending"
    COMPLETED = "completed"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# --- SIM lifecycle ---


class PhoneNumberStatus(StrEnum):
    """An MSISDN of the organisation: held by an activation, on a line, resting after termination."""

    RESERVED = "reserved"
    ASSIGNED = "assigned"
    QUARANTINED = "quarantined"
    AVAILABLE = "available"


class BulkOperationKind(StrEnum):
    """Seed 000 "Opérations en masse" (export is a download, not a workflow)."""

    ACTIVATE = "activate"
    SUSPEND = "suspend"
    RESUME = "resume"
    CHANGE_PLAN = "change_plan"
    SEND_SMS = "send_sms"
    EDIT_NOTE = "edit_note"
    REFRESH_USAGE = "refresh_usage"
    SET_RULES = "set_rules"
    ASSIGN_COMPANY = "assign_company"
    UNASSIGN_COMPANY = "unassign_company"
    SET_TAGS = "set_tags"
    CANCEL_SIM = "cancel_sim"
    IMPORT_DETAILS = "import_details"


BULK_KIND_LABELS_FR: dict[BulkOperationKind, str] = {
    BulkOperationKind.ACTIVATE: "Activer",
    BulkOperationKind.SUSPEND: "Suspendre",
    BulkOperationKind.RESUME: "Réactiver",
    BulkOperationKind.CHANGE_PLAN: "Remplacer le forfait",
    BulkOperationKind.SEND_SMS: "Envoyer un SMS",
    BulkOperationKind.EDIT_NOTE: "Modifier la note",
    BulkOperationKind.REFRESH_USAGE: "Actualiser l'utilisation",
    BulkOperationKind.SET_RULES: "Règles",
    BulkOperationKind.ASSIGN_COMPANY: "Attribuer une entreprise",
    BulkOperationKind.UNASSIGN_COMPANY: "Désattribuer une entreprise",
    BulkOperationKind.SET_TAGS: "Étiquettes",
    BulkOperationKind.CANCEL_SIM: "Annuler la SIM",
    BulkOperationKind.IMPORT_DETAILS: "Importer des détails",
}


class BulkOperationStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class BulkItemStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


# A top-up ends in exactly one of these (SPEC §4.3).
TOPUP_TERMINAL_STATUSES = (
    TopUpStatus.COMPLETED,
    TopUpStatus.REFUNDED,
    TopUpStatus.FAILED,
    TopUpStatus.NEEDS_ATTENTION,
)


# Subscriptions (renewals): the state of a renewing service, and the dunning stage of a failed renewal.
class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    DUNNING = "dunning"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    ENDED = "ended"


class OnboardingStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class DossierItemStatus(StrEnum):
    """Where one item of an integrator's technical dossier stands (seed 002 B)."""

    MISSING = "missing"
    VALID = "valid"
    INVALID = "invalid"
    REJECTED = "rejected"


class DunningStage(StrEnum):
    RETRY = "retry"
    SECOND_ATTEMPT = "second_attempt"
    SUSPENSION = "suspension"
    TERMINATION = "termination"


class BusinessStatus(StrEnum):
    """Values of the `BusinessStatus` search attribute, shared by every workflow family: the terminal states,
    and the step (or, for top-ups started under the phase patch, the phase) a running workflow is in."""

    STARTING = "starting"
    PENDING = "pending"
    RUNNING = "running"
    IN_PROGRESS = "in_progress"
    SCHEDULED = "scheduled"
    GRACE_PERIOD = "grace_period"
    # Steps.
    RESOLVING_LINE = "resolving_line"
    CHARGING = "charging"
    CHARGED = "charged"
    CREDITING = "crediting"
    PROVISIONING = "provisioning"
    PROVISIONING_SUPPLIER = "provisioning_supplier"
    BILLING = "billing"
    RECORDING = "recording"
    RESERVING_SIM = "reserving_sim"
    ALLOCATING_NUMBER = "allocating_number"
    SUPPLIER = "supplier"
    CREATING_SUPPLIER_LINE = "creating_supplier_line"
    CREATING_OCS_ACCOUNT = "creating_ocs_account"
    CREATING_BILLING_LINE = "creating_billing_line"
    CREATING_CUSTOMER = "creating_customer"
    CREATING_BILLING_POINT = "creating_billing_point"
    CREATING_SITE = "creating_site"
    TERMINATING = "terminating"
    QUARANTINE = "quarantine"
    DELIVERING = "delivering"
    CANCELLING = "cancelling"
    RETRYING = "retrying"
    COMPENSATING = "compensating"
    # Outcomes.
    ACTIVE = "active"
    SYNCED = "synced"
    DELIVERED = "delivered"
    READY_FOR_ACTIVATION = "ready_for_activation"
    RELEASED = "released"
    TERMINATED = "terminated"
    ENDED = "ended"
    COMPLETED = "completed"
    REFUNDED = "refunded"
    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"
