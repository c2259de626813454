"""Integrator onboarding (`onboarding/{org}`, seed 002): its stages, dossier items, and the inputs and results
of the workflow, its Updates and its activities. Frozen pydantic models; new fields always get defaults so that
running histories still decode."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from domain.contracts import Contract
from domain.enums import OnboardingStatus, PaymentMethod

# The ten stages of seed 002, in order; the workflow waits in each one until it is completed.
STAGES = (
    "contracts_sent",
    "admin_documents_received",
    "deposit_paid",
    "dossier_submitted",
    "dossier_validated",
    "platform_created",
    "sims_shipped",
    "training_booked",
    "balance_paid",
    "go_live",
)
STAGE_LABELS_FR = {
    "contracts_sent": "Contrats et bon de commande envoyés",
    "admin_documents_received": "Pièces administratives reçues",
    "deposit_paid": "Acompte de 50 % réglé",
    "dossier_submitted": "Dossier technique remis",
    "dossier_validated": "Dossier technique validé",
    "platform_created": "Plateforme créée et paramétrée",
    "sims_shipped": "Cartes SIM génériques expédiées",
    "training_booked": "Rendez-vous de formation pris",
    "balance_paid": "Solde réglé",
    "go_live": "GO intégrateur",
}
# Stages a person completes with `complete_step` (the others: payments, dossier uploads, dossier review).
MANUAL_STAGES = (
    "contracts_sent",
    "admin_documents_received",
    "platform_created",
    "sims_shipped",
    "training_booked",
    "go_live",
)
# Who is reminded when a stage waits: the integrator's contact, else the platform staff.
INTEGRATOR_STAGES = ("admin_documents_received", "deposit_paid", "dossier_submitted", "training_booked", "balance_paid")
PAYMENT_STAGES = {"deposit": "deposit_paid", "balance": "balance_paid"}

# The technical dossier (seed 002 B): files, then values.
DOSSIER_FILE_ITEMS = ("sales_tables", "logo", "footer_banner", "arcep_form")
DOSSIER_VALUE_ITEMS = ("accounting_email", "technical_email", "technical_contact", "sepa_ics", "brand_name")
DOSSIER_ITEMS = DOSSIER_FILE_ITEMS + DOSSIER_VALUE_ITEMS
DOSSIER_LABELS_FR = {
    "sales_tables": "Tables de ventes (CSV ou XLSX)",
    "logo": "Logo 95 × 95 (jpg/png)",
    "footer_banner": "Bandeau de bas de facture 760 × 95 (jpg/png)",
    "arcep_form": "Formulaire ARCEP",
    "accounting_email": "Adresse mail de la comptabilité",
    "technical_email": "Adresse mail technique",
    "technical_contact": "Nom du contact technique",
    "sepa_ics": "ICS (norme SEPA)",
    "brand_name": "Nom de la marque mobile",
}


def onboarding_workflow_id(org_id: str) -> str:
    return f"onboarding/{org_id}"


class OnboardingInput(Contract):
    onboarding_id: str
    org_id: str
    org_slug: str
    org_name: str
    contact_email: str
    contact_name: str
    deposit_minor: int
    balance_minor: int
    currency: str = "EUR"
    reminder_after_s: int = 3 * 24 * 3600
    max_reminders: int = 3
    platform_sla_s: int = 14 * 24 * 3600
    staff_email: str = ""
    sim_batch_size: int = 10


class HistoryEntry(Contract):
    stage: str
    event: str  # completed | reopened | reminder | sla_breached | payment_failed | cancelled | rollback
    at: str  # ISO 8601, UTC
    by: str
    note: str = ""


class PaymentState(Contract):
    method: PaymentMethod  # card | transfer
    reference: str
    amount_minor: int
    refund_reference: str | None = None


class DossierEntry(Contract):
    status: str  # a DossierItemStatus; typed str so that recorded histories decode unchanged
    filename: str = ""
    document_id: str = ""
    errors: list[str] = Field(default_factory=list)
    at: str = ""


class OnboardingProgress(Contract):
    onboarding_id: str
    org_id: str
    workflow_id: str
    status: OnboardingStatus
    stage: str
    stage_since: str
    needs_attention: bool = False
    attention_reason: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    payments: dict[str, PaymentState] = Field(default_factory=dict)
    dossier: dict[str, DossierEntry] = Field(default_factory=dict)
    missing_items: list[str] = Field(default_factory=list)
    platform_steps: list[str] = Field(default_factory=list)
    last_payment_error: str | None = None


# --- Updates -----------------------------------------------------------------------------------------


class StepCompletion(Contract):
    stage: str
    actor: str
    note: str = ""


class TransferRecord(Contract):
    """A bank transfer received, recorded by staff."""

    kind: str  # deposit | balance
    amount_minor: int
    reference: str
    actor: str


class CardPaymentRequest(Contract):
    kind: str  # deposit | balance
    card: str  # a PaymentMethod id (pm_…) from Stripe.js, or a test card number
    actor: str


class DossierItemSubmission(Contract):
    item: str
    document_id: str
    actor: str


class DossierReview(Contract):
    approved: bool
    rejected_items: list[str] = Field(default_factory=list)
    note: str = ""
    actor: str


class CancelRequest(Contract):
    reason: str
    actor: str


# --- Activities --------------------------------------------------------------------------------------


class OnboardingSnapshot(Contract):
    """What the activities write to the `onboardings` row."""

    progress: OnboardingProgress


class OnboardingMail(Contract):
    reference: str  # unique in the outbox: `{workflow_id}:reminder:{stage}:{n}`…
    org_id: str
    to_staff: bool
    recipient: str = ""
    subject: str
    body: str


class DossierItemCheck(Contract):
    onboarding_id: str
    item: str
    document_id: str


class DossierItemVerdict(Contract):
    item: str
    valid: bool
    filename: str = ""
    errors: list[str] = Field(default_factory=list)


class PlatformStep(Contract):
    """One step of the platform creation, idempotent by the onboarding (business key)."""

    onboarding_id: str
    org_id: str
    org_slug: str = ""
    dossier: dict[str, DossierEntry] = Field(default_factory=dict)
    sim_batch_size: int = 0


class PlatformStepResult(Contract):
    step: str
    created: bool  # False: found done already
    details: dict[str, Any] = Field(default_factory=dict)


class CardCharge(Contract):
    onboarding_id: str
    idempotency_key: str  # `{workflow_id}:{kind}:{attempt}`
    kind: str
    card: str
    amount_minor: int
    currency: str
    email: str
    name: str


class CardRefund(Contract):
    onboarding_id: str
    idempotency_key: str  # `{workflow_id}:{kind}:refund`
    payment_reference: str
    amount_minor: int


class MoneyOutcome(Contract):
    reference: str
    answer: dict[str, Any] = Field(default_factory=dict)


class Rollback(Contract):
    onboarding_id: str
    org_id: str
    reason: str


# --- The catalogue imported from the sales tables ------------------------------------------------------


class CataloguePlanRow(Contract):
    name: str
    plan_type: str = "subscription"  # PlanType value
    subscription_kind: str | None = "monthly"
    price_minor: int
    currency: str = "EUR"
    data_allowance_bytes: int = 0
    validity_days: int = 30
    carrier: str = "Orange"


class CatalogueArticleRow(Contract):
    code: str
    label: str
    kind: str  # ArticleKind value
    sale_price_minor: int
    purchase_price_minor: int = 0
    currency: str = "EUR"
    data_bytes: int = 0
    category: str = "Mobile"
    carrier: str | None = None


class CatalogueImport(Contract):
    plans: list[CataloguePlanRow] = Field(default_factory=list)
    articles: list[CatalogueArticleRow] = Field(default_factory=list)
