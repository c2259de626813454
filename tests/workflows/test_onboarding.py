"""The integrator onboarding on the time-skipping server, weeks compressed: the real activities on the test
database (SQLite, or PostgreSQL with SIMFLOW_TEST_BACKEND=postgres), card payments through the Stripe fault
proxy and localstripe. The dossier checks and the FTP folders are stand-ins (`FakeDossier`, `FakeFolders`) for
`domain.onboarding_dossier` and `integrations.ftp`, delivered separately.

Record the replay histories with `SIMFLOW_RECORD_HISTORIES=1` (tests/replay/histories/OnboardingWorkflow__*)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.onboarding import DATA_RECHARGE_CODE, RETURNED_TAG, OnboardingActivities, OnboardingSettings
from domain.enums import SimStatus
from domain.models import (
    CatalogueArticle,
    Notification,
    Onboarding,
    Organisation,
    Plan,
    SecurityMessage,
    SimCard,
    StaffUser,
)
from domain.onboarding_contracts import (
    DOSSIER_ITEMS,
    CancelRequest,
    CardPaymentRequest,
    CatalogueArticleRow,
    CatalogueImport,
    CataloguePlanRow,
    DossierEntry,
    DossierItemSubmission,
    DossierItemVerdict,
    DossierReview,
    OnboardingProgress,
    PlatformStep,
    StepCompletion,
    TransferRecord,
)
from domain.onboarding_dossier import template_xlsx
from domain.services.onboardings import OnboardingTerms, open_onboarding, store_document, workflow_input
from domain.services.topups import data_recharge_article
from infra.db import create_engine, create_sessionmaker
from integrations.stripe_gateway import StripeGateway
from tests.e2e.lifecycle_support import keep_history
from workflows.onboarding import OnboardingWorkflow
from workflows.onboarding import workflow_id as onboarding_workflow_id

GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"
DAY = 24 * 3600
REMINDER_AFTER_S = 3 * DAY
SLA_S = 14 * DAY
STAFF_EMAIL = "onboarding-staff@test.simflow"


def dossier_values(onboarding_id: str) -> dict[str, str]:
    """The value items of an onboarding's dossier (the technical email signs in: one per onboarding)."""
    return {
        "accounting_email": "facturation@integrateur.test",
        "technical_email": f"technique-{onboarding_id[:12]}@integrateur.test",
        "technical_contact": "Camille Technique",
        "sepa_ics": "FR12ZZZ123456",
        "brand_name": "Integrateur Mobile",
    }


class FakeDossier:
    """Stands in for `domain.onboarding_dossier`: content starting with `INVALID` is refused with a message."""

    def check_item(self, item: str, filename: str, content: bytes) -> tuple[bool, list[str]]:
        if content.startswith(b"INVALID"):
            return False, [f"{item} : format refusé ({filename or 'valeur'})"]
        return True, []

    def catalogue(self, content: bytes, filename: str) -> CatalogueImport:
        return CatalogueImport(
            plans=[
                CataloguePlanRow(name="Forfait 20 Go sans mobile 12 mois", price_minor=1999, data_allowance_bytes=20),
                CataloguePlanRow(name="Forfait 100 Go avec mobile 24 mois", price_minor=3499),
            ],
            articles=[
                CatalogueArticleRow(
                    code="OPT-INTL", label="Option international", kind="periodic_option", sale_price_minor=500
                )
            ],
        )


@dataclass
class FakeFolders:
    calls: list[str] = field(default_factory=list)

    async def ensure(self, org_slug: str) -> list[str]:
        self.calls.append(org_slug)
        return [f"{org_slug}/{name}" for name in ("AccountStatus", "RatedCDRs", "BilledCDRs", "Cartes SIM")]


@dataclass
class World:
    env: WorkflowEnvironment
    sessionmaker: async_sessionmaker[AsyncSession]
    gateway: StripeGateway
    folders: FakeFolders
    task_queue: str


@pytest_asyncio.fixture
async def world(time_skipping_env: WorkflowEnvironment, database_url: str, stripe_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    folders = FakeFolders()
    task_queue = f"onboarding-{uuid.uuid4().hex[:8]}"
    async with StripeGateway("sk_test_simflow", stripe_url, 10.0) as gateway:
        activities = OnboardingActivities(
            sessionmaker,
            gateway,
            OnboardingSettings(
                staff_email=STAFF_EMAIL,
                public_base_url="http://simflow.test",
                secrets_key="k" * 43,
                invitation_ttl_s=7 * DAY,
            ),
            dossier=FakeDossier(),
            drop_folders=folders,
        )
        methods = [
            getattr(activities, name)
            for name in dir(activities)
            if hasattr(getattr(activities, name), "__temporal_activity_definition")
        ]
        async with Worker(
            time_skipping_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow], activities=methods
        ):
            yield World(time_skipping_env, sessionmaker, gateway, folders, task_queue)
    await engine.dispose()


async def start(world: World, *, sim_batch_size: int = 3) -> tuple[WorkflowHandle[Any, Any], str, str]:
    slug = f"integ-{uuid.uuid4().hex[:8]}"
    async with world.sessionmaker.begin() as session:
        org, onboarding = await open_onboarding(
            session,
            OnboardingTerms(
                name=f"Intégrateur {slug}",
                slug=slug,
                contact_email=f"contact@{slug}.test",
                contact_name="Dominique Contrat",
                deposit_minor=250_000,
                balance_minor=250_000,
                currency="EUR",
                reminder_after_s=REMINDER_AFTER_S,
                max_reminders=2,
                platform_sla_s=SLA_S,
                sim_batch_size=sim_batch_size,
            ),
            "admin@test.simflow",
        )
        data = workflow_input(onboarding, org, STAFF_EMAIL)
    handle = await world.env.client.start_workflow(
        OnboardingWorkflow.run, data, id=onboarding_workflow_id(org.id), task_queue=world.task_queue
    )
    return handle, org.id, onboarding.id


async def progress(handle: WorkflowHandle[Any, Any]) -> OnboardingProgress:
    result: OnboardingProgress = await handle.query(OnboardingWorkflow.progress)
    return result


async def until(handle: WorkflowHandle[Any, Any], check: Callable[[OnboardingProgress], bool]) -> OnboardingProgress:
    for _ in range(200):
        current = await progress(handle)
        if check(current):
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition never met: {await progress(handle)}")


async def row(world: World, onboarding_id: str) -> Onboarding:
    async with world.sessionmaker() as session:
        found = await session.get(Onboarding, onboarding_id)
        assert found is not None
        return found


async def step(handle: WorkflowHandle[Any, Any], stage: str, actor: str = "staff@test") -> OnboardingProgress:
    result: OnboardingProgress = await handle.execute_update(
        OnboardingWorkflow.complete_step, StepCompletion(stage=stage, actor=actor)
    )
    return result


async def pay(handle: WorkflowHandle[Any, Any], kind: str, card: str) -> OnboardingProgress:
    result: OnboardingProgress = await handle.execute_update(
        OnboardingWorkflow.pay_by_card, CardPaymentRequest(kind=kind, card=card, actor="contact")
    )
    return result


async def submit(
    world: World, handle: WorkflowHandle[Any, Any], onboarding_id: str, item: str, content: bytes, filename: str = ""
) -> DossierItemVerdict:
    async with world.sessionmaker.begin() as session:
        onboarding = await session.get(Onboarding, onboarding_id)
        assert onboarding is not None
        document = await store_document(
            session, onboarding, item=item, filename=filename, content_type="", content=content, uploaded_by="contact"
        )
    verdict: DossierItemVerdict = await handle.execute_update(
        OnboardingWorkflow.submit_dossier_item,
        DossierItemSubmission(item=item, document_id=document.id, actor="contact"),
    )
    return verdict


async def submit_dossier(world: World, handle: WorkflowHandle[Any, Any], onboarding_id: str) -> None:
    values = dossier_values(onboarding_id)
    for item in DOSSIER_ITEMS:
        content = values[item].encode() if item in values else f"{item} file".encode()
        verdict = await submit(world, handle, onboarding_id, item, content, "" if item in values else f"{item}.bin")
        assert verdict.valid, verdict


async def to_platform_ready(world: World, handle: WorkflowHandle[Any, Any], onboarding_id: str) -> None:
    await step(handle, "contracts_sent")
    await step(handle, "admin_documents_received")
    await pay(handle, "deposit", GOOD_CARD)
    await submit_dossier(world, handle, onboarding_id)
    await handle.execute_update(OnboardingWorkflow.review_dossier, DossierReview(approved=True, actor="staff@test"))
    await until(handle, lambda p: "onboarding.stock_generic_sims" in p.platform_steps)


async def mails(world: World, org_id: str) -> list[Notification]:
    async with world.sessionmaker() as session:
        query = select(Notification).where(Notification.org_id == org_id).order_by(Notification.id)
        return list((await session.execute(query)).scalars())


async def refused(call: Any, code: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await call
    assert getattr(failure.value.cause, "type", None) == code, failure.value.cause


# --- the whole journey ------------------------------------------------------------------------------


@pytest.mark.timeout(400)
async def test_whole_journey_with_reminders_an_sla_breach_and_a_declined_deposit(world: World) -> None:
    handle, org_id, onboarding_id = await start(world)
    await until(handle, lambda p: p.stage == "contracts_sent")

    # Three days without the contracts: staff are reminded; a wrong-stage payment changes nothing.
    await world.env.sleep(timedelta(seconds=REMINDER_AFTER_S + 3600))
    reminded = await until(handle, lambda p: any(e.event == "reminder" for e in p.history))
    await refused(pay(handle, "deposit", GOOD_CARD), "onboarding.wrong_stage")
    assert await progress(handle) == reminded
    assert [m.recipient for m in await mails(world, org_id)] == [STAFF_EMAIL]

    await step(handle, "contracts_sent")
    await step(handle, "admin_documents_received")
    # The deposit waits on the integrator: its contact is reminded.
    await world.env.sleep(timedelta(seconds=REMINDER_AFTER_S + 3600))
    await until(handle, lambda p: sum(e.event == "reminder" for e in p.history) == 2)
    contact = (await row(world, onboarding_id)).contact_email
    assert (await mails(world, org_id))[-1].recipient == contact

    # A declined card leaves the stage where it was; the retry with another card pays.
    declined = await pay(handle, "deposit", DECLINING_CARD)
    assert declined.stage == "deposit_paid" and declined.last_payment_error
    assert "deposit" not in declined.payments
    paid = await pay(handle, "deposit", GOOD_CARD)
    assert paid.stage == "dossier_submitted" and paid.last_payment_error is None
    intent = await world.gateway.retrieve_payment_intent(paid.payments["deposit"].reference)
    assert (intent.status, intent.amount_minor) == ("succeeded", 250_000)
    assert [e.event for e in paid.history if e.stage == "deposit_paid"] == ["reminder", "payment_failed", "completed"]

    # An invalid logo is reported and the item stays missing; the rest of the dossier completes it.
    verdict = await submit(world, handle, onboarding_id, "logo", b"INVALID png", "logo.png")
    assert not verdict.valid and "logo" in verdict.errors[0]
    await submit_dossier(world, handle, onboarding_id)
    assert (await progress(handle)).stage == "dossier_validated"

    # Staff refuse the logo: back to the dossier; a new logo brings it back for review.
    rejected: OnboardingProgress = await handle.execute_update(
        OnboardingWorkflow.review_dossier,
        DossierReview(approved=False, rejected_items=["logo"], note="logo flou", actor="staff@test"),
    )
    assert rejected.stage == "dossier_submitted" and rejected.missing_items == ["logo"]
    await submit(world, handle, onboarding_id, "logo", b"logo v2", "logo.png")
    await handle.execute_update(OnboardingWorkflow.review_dossier, DossierReview(approved=True, actor="staff@test"))
    ready = await until(
        handle, lambda p: len(p.platform_steps) == 6 and any(e.event == "platform_ready" for e in p.history)
    )
    assert ready.stage == "platform_created"

    values = dossier_values(onboarding_id)
    async with world.sessionmaker() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None
        assert (org.brand_name, org.sepa_ics, org.technical_email) == (
            values["brand_name"],
            values["sepa_ics"],
            values["technical_email"],
        )
        await session.refresh(org, ["logo", "footer_banner"])
        assert org.logo == b"logo v2" and org.footer_banner == b"footer_banner file"
        plans = {p.name for p in (await session.execute(select(Plan).where(Plan.org_id == org_id))).scalars()}
        assert plans == {"Forfait 20 Go sans mobile 12 mois", "Forfait 100 Go avec mobile 24 mois"}
        codes = {
            a.code
            for a in (
                await session.execute(select(CatalogueArticle).where(CatalogueArticle.org_id == org_id))
            ).scalars()
        }
        assert codes == {"OPT-INTL", DATA_RECHARGE_CODE}
        staff = (await session.execute(select(StaffUser).where(StaffUser.org_id == org_id))).scalars().all()
        assert [(s.email, s.active) for s in staff] == [(values["technical_email"], True)]
        invitation = (
            await session.execute(select(SecurityMessage).where(SecurityMessage.recipient == values["technical_email"]))
        ).scalar_one()
        assert "/portal/password/reset#token=" in invitation.body
        sims = (await session.execute(select(SimCard).where(SimCard.org_id == org_id))).scalars().all()
        assert len(sims) == 3 and {s.status for s in sims} == {SimStatus.BLANK}
    assert world.folders.calls == [await session_org_slug(world, org_id)]

    # Two weeks after the dossier's validation the platform is not confirmed: staff are alerted.
    await world.env.sleep(timedelta(seconds=SLA_S + 3600))
    breached = await until(handle, lambda p: p.needs_attention)
    assert "dépassé" in (breached.attention_reason or "")
    assert any(m.subject.startswith("SLA dépassé") and m.recipient == STAFF_EMAIL for m in await mails(world, org_id))
    assert (await row(world, onboarding_id)).needs_attention

    await step(handle, "platform_created")
    await step(handle, "sims_shipped")
    await step(handle, "training_booked")
    await refused(
        handle.execute_update(
            OnboardingWorkflow.record_transfer,
            TransferRecord(kind="balance", amount_minor=1, reference="VIR-1", actor="staff@test"),
        ),
        "onboarding.amount",
    )
    await handle.execute_update(
        OnboardingWorkflow.record_transfer,
        TransferRecord(kind="balance", amount_minor=250_000, reference="VIR-2026-42", actor="staff@test"),
    )
    await step(handle, "go_live")
    done: OnboardingProgress = await handle.result()
    assert done.status == "completed"
    # The refused logo reopened the dossier: it was submitted twice, validated once.
    assert [e.stage for e in done.history if e.event == "completed"] == [
        "contracts_sent",
        "admin_documents_received",
        "deposit_paid",
        "dossier_submitted",
        "dossier_submitted",
        "dossier_validated",
        "platform_created",
        "sims_shipped",
        "training_booked",
        "balance_paid",
        "go_live",
    ]
    stored = await row(world, onboarding_id)
    assert (stored.status, stored.payments["balance"]["reference"]) == ("completed", "VIR-2026-42")
    await keep_history(handle, "OnboardingWorkflow", "whole_journey")


async def session_org_slug(world: World, org_id: str) -> str:
    async with world.sessionmaker() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None
        return org.slug


# --- validators -------------------------------------------------------------------------------------


async def test_validators_refuse_wrong_stages_and_invalid_input_without_touching_history(world: World) -> None:
    handle, _org_id, onboarding_id = await start(world)
    before = await until(handle, lambda p: p.stage == "contracts_sent")
    await refused(step(handle, "sims_shipped"), "onboarding.wrong_stage")
    await refused(step(handle, "deposit_paid"), "onboarding.not_manual")
    await refused(step(handle, "platform_created"), "onboarding.wrong_stage")
    await refused(pay(handle, "tip", GOOD_CARD), "onboarding.payment_kind")
    await refused(
        handle.execute_update(OnboardingWorkflow.review_dossier, DossierReview(approved=True, actor="staff@test")),
        "onboarding.wrong_stage",
    )
    await refused(
        handle.execute_update(
            OnboardingWorkflow.submit_dossier_item, DossierItemSubmission(item="kbis", document_id="x", actor="c")
        ),
        "onboarding.unknown_item",
    )
    await refused(
        handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason=" ", actor="staff@test")),
        "onboarding.reason_required",
    )
    assert await progress(handle) == before
    assert (await row(world, onboarding_id)).history == []
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="fin du test", actor="staff@test"))


# --- cancellation -----------------------------------------------------------------------------------


async def test_cancel_before_the_platform_refunds_the_card_deposit(world: World) -> None:
    handle, org_id, onboarding_id = await start(world)
    await step(handle, "contracts_sent")
    await step(handle, "admin_documents_received")
    paid = await pay(handle, "deposit", GOOD_CARD)
    cancelled: OnboardingProgress = await handle.execute_update(
        OnboardingWorkflow.cancel, CancelRequest(reason="contrat rompu", actor="staff@test")
    )
    assert cancelled.status == "cancelled"
    refund_reference = cancelled.payments["deposit"].refund_reference
    assert refund_reference
    refunds = await world.gateway._client.v1.refunds.retrieve_async(refund_reference)
    assert (refunds.payment_intent, refunds.amount) == (paid.payments["deposit"].reference, 250_000)
    async with world.sessionmaker() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None and org.disabled_at is not None
    stored = await row(world, onboarding_id)
    assert stored.status == "cancelled" and stored.payments["deposit"]["refund_reference"] == refund_reference
    assert (await handle.result()).status == "cancelled"
    await keep_history(handle, "OnboardingWorkflow", "cancelled_deposit_refunded")


async def test_cancel_after_the_platform_keeps_the_deposit_and_returns_the_sims(world: World) -> None:
    handle, org_id, _onboarding_id = await start(world)
    await to_platform_ready(world, handle, _onboarding_id)
    cancelled: OnboardingProgress = await handle.execute_update(
        OnboardingWorkflow.cancel, CancelRequest(reason="abandon", actor="staff@test")
    )
    assert cancelled.status == "cancelled"
    assert cancelled.payments["deposit"].refund_reference is None
    async with world.sessionmaker() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None and org.disabled_at is not None
        sims = (await session.execute(select(SimCard).where(SimCard.org_id == org_id))).scalars().all()
        assert len(sims) == 3
        assert all(s.status is SimStatus.UNAVAILABLE and RETURNED_TAG in s.tags for s in sims)
        staff = (await session.execute(select(StaffUser).where(StaffUser.org_id == org_id))).scalars().all()
        assert staff and not any(s.active for s in staff)


async def test_cancel_after_a_transfer_deposit_asks_staff_to_pay_it_back(world: World) -> None:
    handle, org_id, _onboarding_id = await start(world)
    await step(handle, "contracts_sent")
    await step(handle, "admin_documents_received")
    await handle.execute_update(
        OnboardingWorkflow.record_transfer,
        TransferRecord(kind="deposit", amount_minor=250_000, reference="VIR-ACOMPTE", actor="staff@test"),
    )
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="abandon", actor="staff@test"))
    transfers = [m for m in await mails(world, org_id) if "virements à rembourser" in m.subject]
    assert len(transfers) == 1 and "VIR-ACOMPTE" in transfers[0].body and transfers[0].recipient == STAFF_EMAIL


async def test_the_data_recharge_added_to_the_catalogue_is_the_generic_sims_carrier(database_url: str) -> None:
    """A freshly onboarded organisation recharges its generic SIMs with the article the platform creation added:
    the top-up picks it by the SIM's carrier and names it as the deployment's collecting operator (seed 003)."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    activities = OnboardingActivities(
        sessionmaker,
        StripeGateway("sk_test_simflow", "http://127.0.0.1:9", 1.0),
        OnboardingSettings(STAFF_EMAIL, "http://simflow.test", "k" * 43, DAY),
        drop_folders=FakeFolders(),
    )
    slug = f"integ-{uuid.uuid4().hex[:8]}"
    try:
        async with sessionmaker.begin() as session:
            org, onboarding = await open_onboarding(
                session,
                OnboardingTerms(slug, slug, f"contact@{slug}.test", "Dominique", 1, 1, "EUR", DAY, 1, SLA_S, 1),
                "admin@test.simflow",
            )
            document = await store_document(
                session,
                onboarding,
                item="sales_tables",
                filename="tables.xlsx",
                content_type="application/octet-stream",
                content=template_xlsx(),
                uploaded_by="test",
            )
        dossier = {"sales_tables": DossierEntry(status="valid", document_id=document.id)}
        platform = PlatformStep(onboarding_id=onboarding.id, org_id=org.id, dossier=dossier, sim_batch_size=1)
        await activities.import_catalogue(platform)
        await activities.stock_generic_sims(platform)
        async with sessionmaker() as session:
            sim = (await session.execute(select(SimCard).where(SimCard.org_id == org.id))).scalar_one()
            article = await data_recharge_article(session, org.id, sim.carrier)
        assert (article.code, article.carrier, article.category) == (DATA_RECHARGE_CODE, sim.carrier, "Voix & Data")
    finally:
        await engine.dispose()
