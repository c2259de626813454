"""Opening an integrator onboarding (the organisation and its `onboardings` row, before the workflow starts) and
keeping the dossier uploads. Services take the session and never commit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import OnboardingStatus
from domain.errors import AlreadyExists, IllegalTransition, NotFound, ValidationFailed
from domain.models import InvoiceCounter, Onboarding, OnboardingDocument, Organisation
from domain.onboarding_contracts import (
    DOSSIER_FILE_ITEMS,
    DOSSIER_ITEMS,
    STAGES,
    OnboardingInput,
    onboarding_workflow_id,
)

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_VALUE_CHARS = 320


@dataclass(frozen=True)
class OnboardingTerms:
    name: str
    slug: str
    contact_email: str
    contact_name: str
    deposit_minor: int
    balance_minor: int
    currency: str
    reminder_after_s: int
    max_reminders: int
    platform_sla_s: int
    sim_batch_size: int


async def open_onboarding(
    session: AsyncSession, terms: OnboardingTerms, created_by: str
) -> tuple[Organisation, Onboarding]:
    """The organisation (its platform is created later by the workflow) and its onboarding, one per org."""
    if (await session.execute(select(Organisation.id).where(Organisation.slug == terms.slug))).first():
        raise AlreadyExists("slug", "identifiant d'organisation déjà utilisé")
    org = Organisation(name=terms.name, slug=terms.slug, contact_email=terms.contact_email)
    session.add(org)
    await session.flush()
    session.add(InvoiceCounter(org_id=org.id, last_number=0))
    onboarding = Onboarding(
        org_id=org.id,
        workflow_id=onboarding_workflow_id(org.id),
        contact_email=terms.contact_email,
        contact_name=terms.contact_name,
        status=OnboardingStatus.IN_PROGRESS,
        stage=STAGES[0],
        history=[],
        payments={},
        dossier={},
        currency=terms.currency,
        deposit_minor=terms.deposit_minor,
        balance_minor=terms.balance_minor,
        reminder_after_s=terms.reminder_after_s,
        max_reminders=terms.max_reminders,
        platform_sla_s=terms.platform_sla_s,
        sim_batch_size=terms.sim_batch_size,
        created_by=created_by,
        needs_attention=False,
    )
    session.add(onboarding)
    await session.flush()
    return org, onboarding


def workflow_input(onboarding: Onboarding, org: Organisation, staff_email: str) -> OnboardingInput:
    return OnboardingInput(
        onboarding_id=onboarding.id,
        org_id=org.id,
        org_slug=org.slug,
        org_name=org.name,
        contact_email=onboarding.contact_email,
        contact_name=onboarding.contact_name,
        deposit_minor=onboarding.deposit_minor,
        balance_minor=onboarding.balance_minor,
        currency=onboarding.currency,
        reminder_after_s=onboarding.reminder_after_s,
        max_reminders=onboarding.max_reminders,
        platform_sla_s=onboarding.platform_sla_s,
        staff_email=staff_email,
        sim_batch_size=onboarding.sim_batch_size,
    )


def accepts_documents(onboarding: Onboarding) -> bool:
    """The dossier takes uploads until it is submitted (the workflow refuses them after, and once closed)."""
    return onboarding.status == OnboardingStatus.IN_PROGRESS and STAGES.index(onboarding.stage) <= STAGES.index(
        "dossier_submitted"
    )


async def store_document(
    session: AsyncSession,
    onboarding: Onboarding,
    *,
    item: str,
    filename: str,
    content_type: str,
    content: bytes,
    uploaded_by: str,
) -> OnboardingDocument:
    """Keeps an upload as sent (the workflow's check says whether it is valid): a file for the file items,
    a value (UTF-8 text) for the others. Refused, and nothing kept, once the dossier takes no more uploads."""
    if not accepts_documents(onboarding):
        raise IllegalTransition("stage", "le dossier technique est déjà remis : plus d'envoi possible")
    if item not in DOSSIER_ITEMS:
        raise ValidationFailed("item", f"élément inconnu ; attendus : {', '.join(DOSSIER_ITEMS)}")
    if not content:
        raise ValidationFailed("file" if item in DOSSIER_FILE_ITEMS else "value", "contenu vide")
    if len(content) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed("file", "fichier trop volumineux (5 Mio au plus)")
    if item not in DOSSIER_FILE_ITEMS:
        try:
            text = content.decode()
        except UnicodeDecodeError as exc:
            raise ValidationFailed("value", "texte UTF-8 attendu") from exc
        if len(text) > MAX_VALUE_CHARS:
            raise ValidationFailed("value", f"{MAX_VALUE_CHARS} caractères au plus")
    document = OnboardingDocument(
        onboarding_id=onboarding.id,
        item=item,
        filename=filename[:255],
        content_type=content_type[:100],
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        uploaded_by=uploaded_by,
    )
    session.add(document)
    await session.flush()
    return document


async def get_onboarding(session: AsyncSession, onboarding_id: str) -> Onboarding:
    onboarding = await session.get(Onboarding, onboarding_id)
    if onboarding is None:
        raise NotFound("onboarding_id", "intégration introuvable")
    return onboarding
