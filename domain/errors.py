"""One error catalogue with stable codes (`ErrorCode`, `area.reason`). HTTP status mapping lives in `api/` only.

Every error the product reports carries one of these codes: a `DomainError` (`.code`), an activity's
`ApplicationError` (`type`, translated once in `activities/_errors.py`), a workflow's failure, a problem+json
answer of the API (`code`). `code_of` reads the code of a failure, also from the type strings recorded in
histories before the catalogue (`LEGACY_CODES`), so that a workflow branches on codes only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ErrorCode(StrEnum):
    # --- the caller's request -------------------------------------------------------------------------
    BAD_REQUEST = "request.bad_request"
    VALIDATION_FAILED = "request.validation_failed"
    INVALID_IDENTIFIER = "request.invalid_identifier"
    INVALID_CHARACTERS = "request.invalid_characters"
    IDEMPOTENCY_MISMATCH = "request.idempotency_mismatch"
    PAYLOAD_TOO_LARGE = "request.payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "request.unsupported_media_type"
    RATE_LIMITED = "request.rate_limited"
    ROUTE_NOT_FOUND = "request.route_not_found"
    METHOD_NOT_ALLOWED = "request.method_not_allowed"
    # --- who the caller is ----------------------------------------------------------------------------
    AUTHENTICATION_FAILED = "auth.authentication_failed"
    TOTP_REQUIRED = "auth.totp_required"
    PERMISSION_DENIED = "auth.permission_denied"
    PASSWORD_CHANGE_REQUIRED = "auth.password_change_required"
    # --- any stored object ----------------------------------------------------------------------------
    NOT_FOUND = "resource.not_found"
    ALREADY_EXISTS = "resource.already_exists"
    RESOURCE_BUSY = "resource.busy"
    CONFLICT = "resource.conflict"
    ILLEGAL_TRANSITION = "resource.illegal_transition"
    # --- the service itself ---------------------------------------------------------------------------
    SERVICE_UNAVAILABLE = "service.unavailable"
    INTERNAL_ERROR = "service.internal_error"
    # --- lines ----------------------------------------------------------------------------------------
    LINE_NOT_FOUND = "line.not_found"
    LINE_NOT_RECHARGEABLE = "line.not_rechargeable"
    LINE_NO_OCS_ACCOUNT = "line.no_ocs_account"
    LINE_INCOMPLETE = "line.incomplete"
    LINE_INVALID_STATE = "line.invalid_state"
    LINE_INVALID_OPERATION = "line.invalid_operation"
    LINE_VALIDATION_FAILED = "line.validation_failed"
    LINE_SAME_PLAN = "line.same_plan"
    LINE_TERMINATION_SCHEDULED = "line.termination_scheduled"
    LINE_OPERATION_FAILED = "line.operation_failed"
    LINE_OPERATION_NEEDS_ATTENTION = "line.operation_needs_attention"
    ACTIVATION_FAILED = "activation.failed"
    ACTIVATION_NEEDS_ATTENTION = "activation.needs_attention"
    TERMINATION_NOT_CANCELLABLE = "termination.not_cancellable"
    TERMINATION_NOT_IN_GRACE = "termination.not_in_grace"
    TERMINATION_NOT_NEEDING_ATTENTION = "termination.not_needing_attention"
    TERMINATION_INVALID_GRACE = "termination.invalid_grace"
    BULK_INVALID_KIND = "bulk.invalid_kind"
    SAGA_STEP_FAILED = "saga.step_failed"
    # --- staff resolutions of a workflow waiting for them ---------------------------------------------
    RESOLUTION_NOT_AWAITED = "resolution.not_awaited"
    RESOLUTION_UNKNOWN_ACTION = "resolution.unknown_action"
    RESOLUTION_NOTE_REQUIRED = "resolution.note_required"
    # --- customers ------------------------------------------------------------------------------------
    CUSTOMER_SYNC_FAILED = "company.cfast_sync_failed"
    # --- integrator onboarding -----------------------------------------------------------------------
    ONBOARDING_CLOSED = "onboarding.closed"
    ONBOARDING_WRONG_STAGE = "onboarding.wrong_stage"
    ONBOARDING_NOT_MANUAL = "onboarding.not_manual"
    ONBOARDING_PLATFORM_NOT_READY = "onboarding.platform_not_ready"
    ONBOARDING_AMOUNT = "onboarding.amount"
    ONBOARDING_REFERENCE_REQUIRED = "onboarding.reference_required"
    ONBOARDING_CARD_REQUIRED = "onboarding.card_required"
    ONBOARDING_PAYMENT_KIND = "onboarding.payment_kind"
    ONBOARDING_PAYMENT_IN_PROGRESS = "onboarding.payment_in_progress"
    ONBOARDING_UNKNOWN_ITEM = "onboarding.unknown_item"
    ONBOARDING_DOCUMENT_REQUIRED = "onboarding.document_required"
    ONBOARDING_REJECTED_ITEMS_REQUIRED = "onboarding.rejected_items_required"
    ONBOARDING_NOTE_REQUIRED = "onboarding.note_required"
    ONBOARDING_NOTHING_TO_RETRY = "onboarding.nothing_to_retry"
    ONBOARDING_REASON_REQUIRED = "onboarding.reason_required"
    ONBOARDING_DOCUMENT_NOT_FOUND = "onboarding.document_not_found"
    ONBOARDING_WRONG_ITEM = "onboarding.wrong_item"
    ONBOARDING_DOSSIER_INCOMPLETE = "onboarding.dossier_incomplete"
    ONBOARDING_ORGANISATION_NOT_FOUND = "onboarding.organisation_not_found"
    ONBOARDING_SALES_TABLES = "onboarding.sales_tables"
    ONBOARDING_EMAIL_TAKEN = "onboarding.email_taken"
    # --- subscriptions (renewals) ---------------------------------------------------------------------
    SUBSCRIPTION_NOT_FOUND = "subscription.not_found"
    SUBSCRIPTION_LINE_NOT_FOUND = "subscription.line_not_found"
    SUBSCRIPTION_NOT_RENEWABLE = "subscription.not_renewable"
    SUBSCRIPTION_INVALID_PLAN = "subscription.invalid_plan"
    POOL_INVALID_PLAN = "pool.invalid_plan"
    POOL_INVALID_MEMBER = "pool.invalid_member"
    # --- money ----------------------------------------------------------------------------------------
    TOPUP_NOT_FOUND = "topup.not_found"
    FUNDING_NOT_FOUND = "funding.not_found"
    WALLET_NOT_FOUND = "wallet.not_found"
    WALLET_DISABLED = "wallet.disabled"
    WALLET_CURRENCY_MISMATCH = "wallet.currency_mismatch"
    WALLET_INSUFFICIENT_FUNDS = "wallet.insufficient_funds"
    PAYMENT_NO_SAVED_CARD = "payment.no_saved_card"
    PAYMENT_DECLINED = "payment.declined"
    BILLING_INVALID_PERIOD = "billing.invalid_period"
    BILLING_COMPANY_NOT_FOUND = "billing.company_not_found"
    # --- usage imports --------------------------------------------------------------------------------
    USAGE_IMPORT_NOT_FOUND = "usage.import_not_found"
    USAGE_INVALID_FILE = "usage.invalid_file"
    USAGE_IMPORT_FAILED = "usage.import_failed"
    USAGE_SCAN_FAILED = "usage.scan_failed"
    # --- outgoing webhooks ----------------------------------------------------------------------------
    WEBHOOK_UNKNOWN_EVENT = "webhook.unknown_event"
    WEBHOOK_ENDPOINT_GONE = "webhook.endpoint_gone"
    WEBHOOK_HTTP_STATUS = "webhook.http_status"
    WEBHOOK_TARGET_REJECTED = "webhook.target_rejected"
    EXTERNAL_UNAVAILABLE = "external.unavailable"
    EXTERNAL_REJECTED = "external.rejected"
    # --- external systems: one code per kind of answer (`integrations.errors`), the remote code in details
    OCS_UNAVAILABLE = "ocs.unavailable"
    OCS_REJECTED = "ocs.rejected"
    OCS_NOT_FOUND = "ocs.not_found"
    OCS_CONFLICT = "ocs.conflict"
    SNAIC_UNAVAILABLE = "snaic.unavailable"
    SNAIC_REJECTED = "snaic.rejected"
    SNAIC_NOT_FOUND = "snaic.not_found"
    SNAIC_CONFLICT = "snaic.conflict"
    SNAIC_LINE_UNKNOWN = "snaic.line_unknown"
    SNAIC_OFFER_CODE_REQUIRED = "snaic.offer_code_required"
    SNAIC_INVALID_SIGNATURE = "snaic.invalid_signature"
    CFAST_UNAVAILABLE = "cfast.unavailable"
    CFAST_REJECTED = "cfast.rejected"
    CFAST_NOT_FOUND = "cfast.not_found"
    CFAST_CONFLICT = "cfast.conflict"
    CFAST_SERVICE_UNKNOWN = "cfast.service_unknown"
    CFAST_SERVICE_LABEL_IN_USE = "cfast.service_label_in_use"
    STRIPE_UNAVAILABLE = "stripe.unavailable"
    STRIPE_REJECTED = "stripe.rejected"
    STRIPE_NOT_FOUND = "stripe.not_found"
    STRIPE_CONFLICT = "stripe.conflict"
    STRIPE_INVALID_SIGNATURE = "stripe.invalid_signature"
    STRIPE_INVALID_EVENT = "stripe.invalid_event"
    SMTP_UNAVAILABLE = "smtp.unavailable"
    SMTP_REJECTED = "smtp.rejected"
    SMTP_NOT_FOUND = "smtp.not_found"
    SMTP_CONFLICT = "smtp.conflict"
    SMS_UNAVAILABLE = "sms.unavailable"
    SMS_REJECTED = "sms.rejected"
    SMS_NOT_FOUND = "sms.not_found"
    SMS_CONFLICT = "sms.conflict"
    WEBHOOK_UNAVAILABLE = "webhook.unavailable"
    WEBHOOK_REJECTED = "webhook.rejected"
    WEBHOOK_NOT_FOUND = "webhook.not_found"
    WEBHOOK_CONFLICT = "webhook.conflict"


# The French default message of every code: what a user reads when nothing more precise is known.
MESSAGES: Final[dict[ErrorCode, str]] = {
    ErrorCode.BAD_REQUEST: "requête invalide",
    ErrorCode.VALIDATION_FAILED: "données invalides",
    ErrorCode.INVALID_IDENTIFIER: "identifiant invalide",
    ErrorCode.INVALID_CHARACTERS: "caractère interdit dans la requête",
    ErrorCode.IDEMPOTENCY_MISMATCH: "clé d'idempotence déjà utilisée pour une autre requête",
    ErrorCode.PAYLOAD_TOO_LARGE: "contenu trop volumineux",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "type de contenu non pris en charge",
    ErrorCode.RATE_LIMITED: "trop de tentatives : réessayez plus tard",
    ErrorCode.ROUTE_NOT_FOUND: "adresse inconnue",
    ErrorCode.METHOD_NOT_ALLOWED: "méthode non autorisée ici",
    ErrorCode.AUTHENTICATION_FAILED: "authentification requise ou refusée",
    ErrorCode.TOTP_REQUIRED: "code de double authentification requis",
    ErrorCode.PERMISSION_DENIED: "accès refusé",
    ErrorCode.PASSWORD_CHANGE_REQUIRED: "changez votre mot de passe avant de continuer",
    ErrorCode.NOT_FOUND: "introuvable",
    ErrorCode.ALREADY_EXISTS: "existe déjà",
    ErrorCode.RESOURCE_BUSY: "déjà utilisé par une autre opération",
    ErrorCode.CONFLICT: "conflit avec une modification concurrente : réessayez",
    ErrorCode.ILLEGAL_TRANSITION: "changement d'état impossible depuis l'état actuel",
    ErrorCode.SERVICE_UNAVAILABLE: "service momentanément indisponible : réessayez dans quelques secondes",
    ErrorCode.INTERNAL_ERROR: "erreur interne",
    ErrorCode.LINE_NOT_FOUND: "ligne introuvable",
    ErrorCode.LINE_NOT_RECHARGEABLE: "cette ligne ne peut pas être rechargée",
    ErrorCode.LINE_NO_OCS_ACCOUNT: "la ligne n'a pas de compte OCS",
    ErrorCode.LINE_INCOMPLETE: "la ligne n'est pas entièrement provisionnée",
    ErrorCode.LINE_INVALID_STATE: "opération impossible dans l'état actuel de la ligne",
    ErrorCode.LINE_INVALID_OPERATION: "opération de ligne inconnue",
    ErrorCode.LINE_VALIDATION_FAILED: "demande d'opération de ligne invalide",
    ErrorCode.LINE_SAME_PLAN: "la ligne a déjà ce forfait",
    ErrorCode.LINE_TERMINATION_SCHEDULED: "la résiliation de la ligne est programmée",
    ErrorCode.LINE_OPERATION_FAILED: "l'opération sur la ligne a échoué",
    ErrorCode.LINE_OPERATION_NEEDS_ATTENTION: "l'opération sur la ligne a échoué et demande une intervention",
    ErrorCode.ACTIVATION_FAILED: "l'activation de la SIM a échoué",
    ErrorCode.ACTIVATION_NEEDS_ATTENTION: "l'activation de la SIM a échoué et demande une intervention",
    ErrorCode.TERMINATION_NOT_CANCELLABLE: "cette résiliation ne peut plus être annulée",
    ErrorCode.TERMINATION_NOT_IN_GRACE: "cette résiliation n'est pas en délai de grâce",
    ErrorCode.TERMINATION_NOT_NEEDING_ATTENTION: "cette résiliation n'attend pas d'intervention",
    ErrorCode.TERMINATION_INVALID_GRACE: "délai de grâce invalide",
    ErrorCode.BULK_INVALID_KIND: "opération de masse inconnue",
    ErrorCode.SAGA_STEP_FAILED: "une étape a échoué",
    ErrorCode.RESOLUTION_NOT_AWAITED: "aucune intervention n'est attendue",
    ErrorCode.RESOLUTION_UNKNOWN_ACTION: "action d'intervention inconnue",
    ErrorCode.RESOLUTION_NOTE_REQUIRED: "une note est requise",
    ErrorCode.CUSTOMER_SYNC_FAILED: "la création du client dans CFAST a échoué",
    ErrorCode.ONBOARDING_CLOSED: "l'intégration est terminée ou annulée",
    ErrorCode.ONBOARDING_WRONG_STAGE: "ce n'est pas l'étape en cours de l'intégration",
    ErrorCode.ONBOARDING_NOT_MANUAL: "cette étape ne se valide pas à la main",
    ErrorCode.ONBOARDING_PLATFORM_NOT_READY: "la plateforme n'est pas encore créée",
    ErrorCode.ONBOARDING_AMOUNT: "montant différent de celui attendu",
    ErrorCode.ONBOARDING_REFERENCE_REQUIRED: "une référence de virement est requise",
    ErrorCode.ONBOARDING_CARD_REQUIRED: "une carte est requise",
    ErrorCode.ONBOARDING_PAYMENT_KIND: "ce paiement n'est pas attendu à cette étape",
    ErrorCode.ONBOARDING_PAYMENT_IN_PROGRESS: "un paiement est déjà en cours",
    ErrorCode.ONBOARDING_UNKNOWN_ITEM: "élément du dossier inconnu",
    ErrorCode.ONBOARDING_DOCUMENT_REQUIRED: "un document est requis",
    ErrorCode.ONBOARDING_REJECTED_ITEMS_REQUIRED: "indiquez les éléments refusés",
    ErrorCode.ONBOARDING_NOTE_REQUIRED: "une note est requise",
    ErrorCode.ONBOARDING_NOTHING_TO_RETRY: "aucune étape à relancer",
    ErrorCode.ONBOARDING_REASON_REQUIRED: "un motif est requis",
    ErrorCode.ONBOARDING_DOCUMENT_NOT_FOUND: "document du dossier introuvable",
    ErrorCode.ONBOARDING_WRONG_ITEM: "ce document est un autre élément du dossier",
    ErrorCode.ONBOARDING_DOSSIER_INCOMPLETE: "le dossier technique n'est pas complet et valide",
    ErrorCode.ONBOARDING_ORGANISATION_NOT_FOUND: "organisation introuvable",
    ErrorCode.ONBOARDING_SALES_TABLES: "tables de ventes illisibles",
    ErrorCode.ONBOARDING_EMAIL_TAKEN: "adresse déjà utilisée par un autre compte",
    ErrorCode.SUBSCRIPTION_NOT_FOUND: "abonnement introuvable",
    ErrorCode.SUBSCRIPTION_LINE_NOT_FOUND: "ligne de l'abonnement introuvable",
    ErrorCode.SUBSCRIPTION_NOT_RENEWABLE: "la ligne n'a pas de forfait renouvelable",
    ErrorCode.SUBSCRIPTION_INVALID_PLAN: "forfait non renouvelable ou d'une autre devise",
    ErrorCode.POOL_INVALID_PLAN: "forfait de pool introuvable (pool statique ou dynamique attendu)",
    ErrorCode.POOL_INVALID_MEMBER: "ligne impossible à ajouter au pool ou à en retirer dans son état actuel",
    ErrorCode.TOPUP_NOT_FOUND: "recharge introuvable",
    ErrorCode.FUNDING_NOT_FOUND: "alimentation du portefeuille introuvable",
    ErrorCode.WALLET_NOT_FOUND: "aucun portefeuille actif pour ce client",
    ErrorCode.WALLET_DISABLED: "portefeuille désactivé",
    ErrorCode.WALLET_CURRENCY_MISMATCH: "devise du portefeuille différente",
    ErrorCode.WALLET_INSUFFICIENT_FUNDS: "solde du portefeuille insuffisant",
    ErrorCode.PAYMENT_NO_SAVED_CARD: "aucune carte enregistrée pour ce client",
    ErrorCode.PAYMENT_DECLINED: "paiement refusé",
    ErrorCode.BILLING_INVALID_PERIOD: "période de facturation invalide",
    ErrorCode.BILLING_COMPANY_NOT_FOUND: "client à facturer introuvable",
    ErrorCode.USAGE_IMPORT_NOT_FOUND: "import de consommations introuvable",
    ErrorCode.USAGE_INVALID_FILE: "fichier de consommations invalide",
    ErrorCode.USAGE_IMPORT_FAILED: "l'import de consommations a échoué",
    ErrorCode.USAGE_SCAN_FAILED: "la recherche des premières consommations a échoué",
    ErrorCode.WEBHOOK_UNKNOWN_EVENT: "événement inconnu",
    ErrorCode.WEBHOOK_ENDPOINT_GONE: "destination de webhook supprimée ou désactivée",
    ErrorCode.WEBHOOK_HTTP_STATUS: "la destination du webhook a répondu en erreur",
    ErrorCode.WEBHOOK_TARGET_REJECTED: "adresse de destination du webhook refusée",
    ErrorCode.EXTERNAL_UNAVAILABLE: "système externe momentanément indisponible",
    ErrorCode.EXTERNAL_REJECTED: "demande refusée par un système externe",
    ErrorCode.OCS_UNAVAILABLE: "OCS momentanément indisponible",
    ErrorCode.OCS_REJECTED: "demande refusée par OCS",
    ErrorCode.OCS_NOT_FOUND: "objet inconnu d'OCS",
    ErrorCode.OCS_CONFLICT: "conflit signalé par OCS",
    ErrorCode.SNAIC_UNAVAILABLE: "SNAIC momentanément indisponible",
    ErrorCode.SNAIC_REJECTED: "demande refusée par SNAIC",
    ErrorCode.SNAIC_NOT_FOUND: "objet inconnu de SNAIC",
    ErrorCode.SNAIC_CONFLICT: "conflit signalé par SNAIC",
    ErrorCode.SNAIC_LINE_UNKNOWN: "ligne inconnue de SNAIC",
    ErrorCode.SNAIC_OFFER_CODE_REQUIRED: "code d'offre SNAIC requis",
    ErrorCode.SNAIC_INVALID_SIGNATURE: "signature SNAIC absente ou invalide",
    ErrorCode.CFAST_UNAVAILABLE: "CFAST momentanément indisponible",
    ErrorCode.CFAST_REJECTED: "demande refusée par CFAST",
    ErrorCode.CFAST_NOT_FOUND: "objet inconnu de CFAST",
    ErrorCode.CFAST_CONFLICT: "conflit signalé par CFAST",
    ErrorCode.CFAST_SERVICE_UNKNOWN: "ligne inconnue de CFAST",
    ErrorCode.CFAST_SERVICE_LABEL_IN_USE: "libellé de service CFAST déjà utilisé",
    ErrorCode.STRIPE_UNAVAILABLE: "Stripe momentanément indisponible",
    ErrorCode.STRIPE_REJECTED: "demande refusée par Stripe",
    ErrorCode.STRIPE_NOT_FOUND: "objet inconnu de Stripe",
    ErrorCode.STRIPE_CONFLICT: "clé d'idempotence Stripe réutilisée",
    ErrorCode.STRIPE_INVALID_SIGNATURE: "signature Stripe invalide",
    ErrorCode.STRIPE_INVALID_EVENT: "événement Stripe invalide",
    ErrorCode.SMTP_UNAVAILABLE: "serveur de courriel momentanément indisponible",
    ErrorCode.SMTP_REJECTED: "courriel refusé par le serveur",
    ErrorCode.SMTP_NOT_FOUND: "destinataire inconnu du serveur de courriel",
    ErrorCode.SMTP_CONFLICT: "conflit signalé par le serveur de courriel",
    ErrorCode.SMS_UNAVAILABLE: "passerelle SMS momentanément indisponible",
    ErrorCode.SMS_REJECTED: "SMS refusé par la passerelle",
    ErrorCode.SMS_NOT_FOUND: "destinataire inconnu de la passerelle SMS",
    ErrorCode.SMS_CONFLICT: "conflit signalé par la passerelle SMS",
    ErrorCode.WEBHOOK_UNAVAILABLE: "destination du webhook injoignable",
    ErrorCode.WEBHOOK_REJECTED: "webhook refusé par sa destination",
    ErrorCode.WEBHOOK_NOT_FOUND: "destination du webhook introuvable",
    ErrorCode.WEBHOOK_CONFLICT: "conflit signalé par la destination du webhook",
}


# --- reading the code of a failure ----------------------------------------------------------------------

# Type strings written before the catalogue, still in recorded histories and in running workflows.
LEGACY_CODES: Final[dict[str, ErrorCode]] = {
    # API problem codes and DomainError codes before the `area.reason` style
    "domain_error": ErrorCode.BAD_REQUEST,
    "validation_failed": ErrorCode.VALIDATION_FAILED,
    "invalid_identifier": ErrorCode.INVALID_IDENTIFIER,
    "not_found": ErrorCode.NOT_FOUND,
    "already_exists": ErrorCode.ALREADY_EXISTS,
    "illegal_transition": ErrorCode.ILLEGAL_TRANSITION,
    "permission_denied": ErrorCode.PERMISSION_DENIED,
    "authentication_failed": ErrorCode.AUTHENTICATION_FAILED,
    "idempotency_mismatch": ErrorCode.IDEMPOTENCY_MISMATCH,
    "resource_busy": ErrorCode.RESOURCE_BUSY,
    "rate_limited": ErrorCode.RATE_LIMITED,
    "password_change_required": ErrorCode.PASSWORD_CHANGE_REQUIRED,
    "totp_required": ErrorCode.TOTP_REQUIRED,
    # workflow and activity types in CamelCase
    "NotFound": ErrorCode.NOT_FOUND,
    "NotNeedingAttention": ErrorCode.RESOLUTION_NOT_AWAITED,
    "UnknownResolution": ErrorCode.RESOLUTION_UNKNOWN_ACTION,
    "NoteRequired": ErrorCode.RESOLUTION_NOTE_REQUIRED,
    "ActivationFailed": ErrorCode.ACTIVATION_FAILED,
    "ActivationNeedsAttention": ErrorCode.ACTIVATION_NEEDS_ATTENTION,
    "LineOperationFailed": ErrorCode.LINE_OPERATION_FAILED,
    "LineOperationNeedsAttention": ErrorCode.LINE_OPERATION_NEEDS_ATTENTION,
    "CfastSyncFailed": ErrorCode.CUSTOMER_SYNC_FAILED,
    "StepFailed": ErrorCode.SAGA_STEP_FAILED,
    # exceptions no activity translated (the SDK names them by class)
    "TransientError": ErrorCode.EXTERNAL_UNAVAILABLE,
    "RejectedError": ErrorCode.EXTERNAL_REJECTED,
    "RemoteProtocolError": ErrorCode.EXTERNAL_UNAVAILABLE,
    "APIConnectionError": ErrorCode.STRIPE_UNAVAILABLE,
    "CardError": ErrorCode.STRIPE_REJECTED,
    "PaymentDeclinedError": ErrorCode.STRIPE_REJECTED,
    # `area.reason` types renamed by the catalogue
    "line.validation": ErrorCode.LINE_VALIDATION_FAILED,
    "termination.not_needs_attention": ErrorCode.TERMINATION_NOT_NEEDING_ATTENTION,
    "snaic.validation": ErrorCode.SNAIC_OFFER_CODE_REQUIRED,
    "wallet.currency": ErrorCode.WALLET_CURRENCY_MISMATCH,
    "billing.bad_period": ErrorCode.BILLING_INVALID_PERIOD,
    "billing.company_unknown": ErrorCode.BILLING_COMPANY_NOT_FOUND,
    "inventory.invalid_identifier": ErrorCode.INVALID_IDENTIFIER,
    "stripe.idempotency_error": ErrorCode.STRIPE_CONFLICT,
}

# Remote codes of `{system}.{remote code}` types that were transient (`integrations.errors.TransientError`).
_TRANSIENT_REMOTE_CODES: Final = frozenset(
    {"timeout", "transport", "bad_response", "not_applied", "order_pending", "payment_processing", "api_error"}
    | {"authentication", "rate_limit", "lock_timeout", "unavailable"}
)
_SYSTEMS: Final = ("ocs", "snaic", "cfast", "stripe", "smtp", "sms", "webhook")


def integration_code(system: str, kind: str) -> ErrorCode:
    """`{system}.{kind}` for one of the kinds every system has (unavailable, rejected, not_found, conflict),
    `payment.declined` for a declined payment, `external.{unavailable|rejected}` for another system."""
    if kind == "declined":
        return ErrorCode.PAYMENT_DECLINED
    try:
        return ErrorCode(f"{system}.{kind}")
    except ValueError:
        return ErrorCode.EXTERNAL_UNAVAILABLE if kind == "unavailable" else ErrorCode.EXTERNAL_REJECTED


def _legacy_code(type_: str, non_retryable: bool | None) -> ErrorCode:
    if type_ in LEGACY_CODES:
        return LEGACY_CODES[type_]
    area, _, reason = type_.partition(".")
    if area == "inventory":  # `inventory.{DomainError code}`
        return _legacy_code(reason, non_retryable)
    if area == "outbox" and reason.endswith("_unavailable"):  # `outbox.{system}_unavailable`
        return integration_code(reason.removesuffix("_unavailable"), "unavailable")
    if area in _SYSTEMS and reason:  # `{system}.{remote code}` of an IntegrationError
        # A decline was told from a refusal by the substring (`stripe.card_declined`, `.generic_decline`).
        if area == "stripe" and "declin" in reason:
            return ErrorCode.PAYMENT_DECLINED
        transient = reason in _TRANSIENT_REMOTE_CODES or (reason.isdigit() and reason.startswith("5"))
        if non_retryable is not None:
            transient = not non_retryable
        return integration_code(area, "unavailable" if transient else "rejected")
    return ErrorCode.INTERNAL_ERROR


def code_of(err: BaseException | str | None) -> ErrorCode:
    """The catalogue code of a failure: a type string, an `ApplicationError`, or an error wrapping one
    (`ActivityError`, `ChildWorkflowError`, `WorkflowFailureError`…). Pure, deterministic: usable in
    workflows. An error that carries no type (a timeout, a cancellation) is `service.internal_error`."""
    non_retryable: bool | None = None
    if err is None or isinstance(err, str):
        type_ = err or ""
    else:
        # Temporal's failures are read by their attributes: the domain imports no framework.
        cause: object = err
        found: object = None
        while cause is not None and not isinstance(found := getattr(cause, "type", None), str):
            cause = getattr(cause, "cause", None)
        if not isinstance(found, str):
            return ErrorCode.INTERNAL_ERROR
        type_ = found
        non_retryable = getattr(cause, "non_retryable", None)
    try:
        return ErrorCode(type_)
    except ValueError:
        return _legacy_code(type_, non_retryable)


# --- errors of the domain -------------------------------------------------------------------------------


class DomainError(Exception):
    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, field: str | None, reason: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        if code is not None:
            self.code = code


class ValidationFailed(DomainError):
    code = ErrorCode.VALIDATION_FAILED


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = ErrorCode.ALREADY_EXISTS


class IllegalTransition(DomainError):
    code = ErrorCode.ILLEGAL_TRANSITION


class PermissionDenied(DomainError):
    code = ErrorCode.PERMISSION_DENIED


class AuthenticationFailed(DomainError):
    code = ErrorCode.AUTHENTICATION_FAILED


class IdempotencyMismatch(DomainError):
    code = ErrorCode.IDEMPOTENCY_MISMATCH


class ResourceBusy(AlreadyExists):
    """The object is held by another process (a SIM reserved by another activation, a number in use)."""

    code = ErrorCode.RESOURCE_BUSY


class RateLimited(DomainError):
    """Too many attempts: retry after `retry_after_s` seconds."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, field: str | None, reason: str, retry_after_s: int) -> None:
        super().__init__(field, reason)
        self.retry_after_s = max(1, int(retry_after_s))


class PasswordChangeRequired(PermissionDenied):
    """The account's password was set by an administrator: it must be changed before anything else."""

    code = ErrorCode.PASSWORD_CHANGE_REQUIRED


class TotpRequired(AuthenticationFailed):
    """The password was right and the account has two-factor authentication: a code is needed."""

    code = ErrorCode.TOTP_REQUIRED
