"""Integrator onboarding (seed 002): the platform opens it, then people move it through its ten stages.

Every write is an Update of the workflow `onboarding/{org}`, whose validator refuses a wrong stage or an
invalid input (409, nothing written); the answer is the progress once the change is recorded. Platform staff
do everything; the integrator's own staff (organisation area) upload the dossier, pay by card and book the
training. Reads come from the `onboardings` row the workflow keeps up to date.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, EmailStr, Field
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api.deps import PrincipalDep, SessionDep, StateDep
from api.guard import audit_note
from api.schemas import Request, UtcDatetime
from domain.authz import Action, Principal, TenantChain, authorize, require_role
from domain.enums import DossierItemStatus, StaffRole
from domain.errors import IllegalTransition, ValidationFailed
from domain.models import Onboarding
from domain.onboarding_contracts import (
    DOSSIER_FILE_ITEMS,
    DOSSIER_ITEMS,
    CancelRequest,
    CardPaymentRequest,
    DossierItemSubmission,
    DossierItemVerdict,
    DossierReview,
    OnboardingProgress,
    StepCompletion,
    TransferRecord,
)
from domain.services.onboardings import (
    MAX_DOCUMENT_BYTES,
    OnboardingTerms,
    get_onboarding,
    open_onboarding,
    store_document,
    workflow_input,
)
from starters.onboardings import start_onboarding
from workflows.onboarding import OnboardingWorkflow

router = APIRouter(prefix="/api/v1/onboardings", tags=["Intégrations"])

DAY_S = 24 * 3600


class OnboardingCreate(Request):
    name: str = Field(min_length=1, max_length=200, description="Raison sociale de l'intégrateur")
    slug: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    contact_email: EmailStr
    contact_name: str = Field(min_length=1, max_length=200)
    deposit_minor: int = Field(gt=0, le=100_000_000, description="Acompte de 50 %, en centimes")
    balance_minor: int = Field(ge=0, le=100_000_000, description="Solde, en centimes")
    currency: Literal["EUR"] = "EUR"
    reminder_after_days: int | None = Field(default=None, ge=1, le=60)
    max_reminders: int | None = Field(default=None, ge=0, le=20)
    platform_sla_days: int | None = Field(default=None, ge=1, le=120)
    sim_batch_size: int | None = Field(default=None, ge=0, le=1000)


class StepIn(Request):
    stage: Literal[
        "contracts_sent", "admin_documents_received", "platform_created", "sims_shipped", "training_booked", "go_live"
    ]
    note: str = Field(default="", max_length=1000)


class TransferIn(Request):
    kind: Literal["deposit", "balance"]
    amount_minor: int = Field(gt=0, le=100_000_000)
    reference: str = Field(min_length=1, max_length=100)


class CardPaymentIn(Request):
    kind: Literal["deposit", "balance"]
    card: str = Field(min_length=1, max_length=100, description="PaymentMethod (pm_…) créé par Stripe.js")


class ReviewIn(Request):
    approved: bool
    rejected_items: list[str] = Field(default_factory=list, max_length=len(DOSSIER_ITEMS))
    note: str = Field(default="", max_length=1000)


class CancelIn(Request):
    reason: str = Field(min_length=1, max_length=1000)


class OnboardingOut(BaseModel):
    id: str
    org_id: str
    workflow_id: str
    status: str
    stage: str
    stage_since: UtcDatetime
    needs_attention: bool
    attention_reason: str | None
    contact_email: str
    contact_name: str
    currency: str
    deposit_minor: int
    balance_minor: int
    history: list[dict[str, Any]]
    payments: dict[str, Any]
    dossier: dict[str, Any]
    missing_items: list[str]
    created_at: UtcDatetime
    updated_at: UtcDatetime


def _out(onboarding: Onboarding) -> OnboardingOut:
    missing = [
        item for item in DOSSIER_ITEMS if (onboarding.dossier.get(item) or {}).get("status") != DossierItemStatus.VALID
    ]
    return OnboardingOut.model_validate({**_columns(onboarding), "missing_items": missing})


def _columns(onboarding: Onboarding) -> dict[str, Any]:
    return {name: getattr(onboarding, name) for name in OnboardingOut.model_fields if name != "missing_items"}


async def _load(session: SessionDep, principal: Principal, onboarding_id: str, action: Action) -> Onboarding:
    onboarding = await get_onboarding(session, onboarding_id)
    authorize(principal, action, TenantChain(onboarding.org_id), "intégration")
    return onboarding


async def _update(state: StateDep, onboarding: Onboarding, update: Any, arg: Any) -> Any:
    """Runs an Update; a refusal by its validator (wrong stage, invalid input) is a 409 naming the reason."""
    client = await state.temporal()
    handle = client.get_workflow_handle_for(OnboardingWorkflow.run, onboarding.workflow_id)
    try:
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(err)
        raise IllegalTransition("stage", reason) from err
    except RPCError as err:
        raise IllegalTransition("stage", "cette intégration n'est plus en cours") from err


@router.post("", status_code=201, response_model=OnboardingOut)
async def create_onboarding(
    body: OnboardingCreate, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    settings = state.settings
    terms = OnboardingTerms(
        name=body.name,
        slug=body.slug,
        contact_email=str(body.contact_email).lower(),
        contact_name=body.contact_name,
        deposit_minor=body.deposit_minor,
        balance_minor=body.balance_minor,
        currency=body.currency,
        reminder_after_s=body.reminder_after_days * DAY_S
        if body.reminder_after_days
        else settings.onboarding_reminder_after_s,
        max_reminders=body.max_reminders if body.max_reminders is not None else settings.onboarding_max_reminders,
        platform_sla_s=body.platform_sla_days * DAY_S if body.platform_sla_days else settings.onboarding_platform_sla_s,
        sim_batch_size=body.sim_batch_size if body.sim_batch_size is not None else settings.onboarding_sim_batch_size,
    )
    org, onboarding = await open_onboarding(session, terms, principal.label)
    data = workflow_input(onboarding, org, settings.onboarding_staff_email)
    await session.commit()  # the workflow's activities write to this row
    await start_onboarding(await state.temporal(), settings, data)
    audit_note(action="onboarding.created", target=f"onboarding:{onboarding.id}", org_id=org.id)
    return _out(onboarding)


@router.get("/{onboarding_id}", response_model=OnboardingOut)
async def read_onboarding(onboarding_id: str, principal: PrincipalDep, session: SessionDep) -> OnboardingOut:
    return _out(await _load(session, principal, onboarding_id, Action.READ))


async def _progress(session: SessionDep, onboarding: Onboarding) -> OnboardingOut:
    await session.refresh(onboarding)
    return _out(onboarding)


@router.post("/{onboarding_id}/steps", response_model=OnboardingOut)
async def complete_step(
    onboarding_id: str, body: StepIn, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    """Staff complete their steps; the integrator books its training."""
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    if body.stage != "training_booked":
        require_role(principal, StaffRole.PLATFORM_ADMIN)
    step = StepCompletion(stage=body.stage, actor=principal.label, note=body.note)
    await _update(state, onboarding, OnboardingWorkflow.complete_step, step)
    return await _progress(session, onboarding)


@router.post("/{onboarding_id}/transfers", response_model=OnboardingOut)
async def record_transfer(
    onboarding_id: str, body: TransferIn, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    """A bank transfer received (deposit or balance), recorded by platform staff."""
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    transfer = TransferRecord(
        kind=body.kind, amount_minor=body.amount_minor, reference=body.reference, actor=principal.label
    )
    await _update(state, onboarding, OnboardingWorkflow.record_transfer, transfer)
    return await _progress(session, onboarding)


@router.post("/{onboarding_id}/card-payments", response_model=OnboardingOut)
async def pay_by_card(
    onboarding_id: str, body: CardPaymentIn, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    """Pays the deposit or the balance by card; a declined card leaves the stage as it was
    (`history` gets a `payment_failed` entry) and another card may be tried."""
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    payment = CardPaymentRequest(kind=body.kind, card=body.card, actor=principal.label)
    progress: OnboardingProgress = await _update(state, onboarding, OnboardingWorkflow.pay_by_card, payment)
    if progress.last_payment_error and body.kind not in progress.payments:
        raise ValidationFailed("card", f"paiement refusé : {progress.last_payment_error}")
    return await _progress(session, onboarding)


@router.post("/{onboarding_id}/documents", response_model=DossierItemVerdict)
async def submit_document(
    onboarding_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    item: Annotated[str, Form()],
    file: Annotated[UploadFile | None, File()] = None,
    value: Annotated[str | None, Form(max_length=320)] = None,
) -> DossierItemVerdict:
    """One dossier item: a file (sales tables, logo, footer banner, ARCEP form) or a value (emails, contact,
    ICS, brand name). An invalid item answers 422 with its errors; a valid earlier upload of it is kept."""
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    if item in DOSSIER_FILE_ITEMS:
        if file is None:
            raise ValidationFailed("file", "fichier obligatoire pour cet élément")
        content = await file.read(MAX_DOCUMENT_BYTES + 1)
        filename, content_type = file.filename or "", file.content_type or ""
    else:
        if value is None:
            raise ValidationFailed("value", "valeur obligatoire pour cet élément")
        content, filename, content_type = value.strip().encode(), "", "text/plain"
    document = await store_document(
        session,
        onboarding,
        item=item,
        filename=filename,
        content_type=content_type,
        content=content,
        uploaded_by=principal.label,
    )
    await session.commit()  # the workflow's check reads it
    submission = DossierItemSubmission(item=item, document_id=document.id, actor=principal.label)
    verdict: DossierItemVerdict = await _update(state, onboarding, OnboardingWorkflow.submit_dossier_item, submission)
    if not verdict.valid:
        raise ValidationFailed(item, " ; ".join(verdict.errors) or "élément refusé")
    return verdict


@router.post("/{onboarding_id}/dossier-review", response_model=OnboardingOut)
async def review_dossier(
    onboarding_id: str, body: ReviewIn, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    """Staff validate the technical dossier, or refuse some items (back to the dossier stage)."""
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    review = DossierReview(
        approved=body.approved, rejected_items=body.rejected_items, note=body.note, actor=principal.label
    )
    await _update(state, onboarding, OnboardingWorkflow.review_dossier, review)
    return await _progress(session, onboarding)


@router.post("/{onboarding_id}/platform-retry", response_model=OnboardingOut)
async def retry_platform(
    onboarding_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    """Runs again the platform creation step that failed (the onboarding needs attention)."""
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    await _update(state, onboarding, OnboardingWorkflow.retry_platform, principal.label)
    return await _progress(session, onboarding)


@router.post("/{onboarding_id}/cancellation", response_model=OnboardingOut)
async def cancel_onboarding(
    onboarding_id: str, body: CancelIn, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> OnboardingOut:
    """Cancels and rolls back (organisation disabled, refunds per policy, SIM cards back to stock)."""
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    onboarding = await _load(session, principal, onboarding_id, Action.WRITE)
    await _update(
        state, onboarding, OnboardingWorkflow.cancel, CancelRequest(reason=body.reason, actor=principal.label)
    )
    audit_note(action="onboarding.cancelled", target=f"onboarding:{onboarding.id}", reason=body.reason)
    return await _progress(session, onboarding)
