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


class PaymentMethod(StrEnum):
    CARD = "card"
    WALLET = "wallet"
    ACCOUNT = "account"
    SEPA = "sepa"
    MANUAL = "manual"


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
TOPUP_TERMINAL_STATUSES = ("completed", "refunded", "failed", "needs_attention")
