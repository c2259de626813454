"""Activities of the integrator onboarding (`workflows.onboarding`): the `onboardings` row, its mails, the
dossier checks, the deposit and balance card payments (the platform's own Stripe account), the platform
creation steps and their rollback.

Each platform step is idempotent by the onboarding (its business key): the organisation's settings are
overwritten with the same values, catalogue rows are upserted by name or code, the staff invitation is
written once per email, the SIM batch once per onboarding. The dossier checks and the FTP folders come from
`domain.onboarding_dossier` and `integrations.ftp`, resolved when first used (see `ModuleDossierChecks`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stdnum import luhn
from temporalio import activity

from activities._errors import external_call, translates_errors
from domain.enums import ArticleKind, DossierItemStatus, PlanType, SimStatus, SimType, StaffRole, SubscriptionKind
from domain.errors import DomainError, ErrorCode
from domain.models import (
    CatalogueArticle,
    Notification,
    Onboarding,
    OnboardingDocument,
    Organisation,
    Plan,
    SecurityMessage,
    SimCard,
    SimChange,
    StaffUser,
)
from domain.money import GB
from domain.onboarding_contracts import (
    CardCharge,
    CardRefund,
    CatalogueArticleRow,
    CatalogueImport,
    CataloguePlanRow,
    DossierItemCheck,
    DossierItemVerdict,
    MoneyOutcome,
    OnboardingMail,
    OnboardingSnapshot,
    PlatformStep,
    PlatformStepResult,
    Rollback,
)
from domain.onboarding_dossier import parse_sales_tables, validate_item
from domain.security import hash_password
from domain.services.accounts import AccountKeys, create_reset_token, reset_link
from integrations.ftp import FtpClient
from integrations.stripe_gateway import StripeGateway
from workflows import activity_names as names

# The one-off option the top-up sells (seed 003: "Recharge DATA 1Go", 0.50 €), added when the tables have none.
# Its carrier is the generic SIMs' (the top-up picks the article of the line's SIM carrier, and its deployment
# names it as the collecting operator), its category the seed's.
DATA_RECHARGE_CODE = "RECHARGE-DATA-1GO"
DATA_RECHARGE_PRICE_MINOR = 50
DATA_RECHARGE_CATEGORY = "Voix & Data"
GENERIC_SIM_CARRIER = "Orange"
RETURNED_TAG = "returned_to_stock"


class DossierChecks(Protocol):
    def check_item(self, item: str, filename: str, content: bytes) -> tuple[bool, list[str]]: ...

    def catalogue(self, content: bytes, filename: str) -> CatalogueImport: ...


class DropFolders(Protocol):
    async def ensure(self, org_slug: str) -> list[str]: ...


# The onboarding's item names that the dossier's checks spell differently.
_DOSSIER_ITEM_NAMES = {"technical_contact": "contact_name"}


class ModuleDossierChecks:
    """The technical dossier's checks (`domain.onboarding_dossier`), under the onboarding's item names."""

    def check_item(self, item: str, filename: str, content: bytes) -> tuple[bool, list[str]]:
        result = validate_item(_DOSSIER_ITEM_NAMES.get(item, item), filename, content)
        return result.valid, list(result.errors)

    def catalogue(self, content: bytes, filename: str) -> CatalogueImport:
        tables = parse_sales_tables(content, filename)
        return CatalogueImport(
            plans=[
                CataloguePlanRow(
                    name=plan.name,
                    plan_type=plan.plan_type.value,
                    subscription_kind=plan.subscription_kind.value if plan.subscription_kind else None,
                    price_minor=plan.price_minor,
                    currency=plan.currency,
                    data_allowance_bytes=plan.data_allowance_bytes,
                    validity_days=plan.validity_days,
                    carrier=plan.carrier,
                )
                for plan in tables.plan_specs()
            ],
            articles=[
                CatalogueArticleRow(
                    code=article.code,
                    label=article.label,
                    kind=article.kind.value,
                    sale_price_minor=article.sale_price_minor,
                    currency=article.currency,
                )
                for article in tables.article_specs()
            ],
        )


class FtpDropFolders:
    """The organisation's file-drop folders on the operator FTP."""

    def __init__(self, client: FtpClient) -> None:
        self._client = client

    async def ensure(self, org_slug: str) -> list[str]:
        folders = await self._client.ensure_drop_folders(org_slug)
        return list(folders.paths)


@dataclass(frozen=True)
class OnboardingSettings:
    staff_email: str
    public_base_url: str
    secrets_key: str
    invitation_ttl_s: int


def _refused(message: str, code: ErrorCode) -> DomainError:
    return DomainError(None, message, code=code)


@translates_errors
class OnboardingActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: OnboardingSettings,
        drop_folders: DropFolders,
        dossier: DossierChecks | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._gateway = gateway
        self._settings = settings
        self._dossier: DossierChecks = dossier or ModuleDossierChecks()
        self._drop_folders = drop_folders

    # --- the row and the mails -----------------------------------------------------------------------

    @activity.defn(name=names.ONBOARDING_RECORD)
    async def record_progress(self, data: OnboardingSnapshot) -> None:
        progress = data.progress
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(Onboarding)
                .where(Onboarding.id == progress.onboarding_id)
                .values(
                    status=progress.status,
                    stage=progress.stage,
                    stage_since=datetime.fromisoformat(progress.stage_since),
                    needs_attention=progress.needs_attention,
                    attention_reason=progress.attention_reason,
                    history=[entry.model_dump() for entry in progress.history],
                    payments={kind: state.model_dump() for kind, state in progress.payments.items()},
                    dossier={item: entry.model_dump() for item, entry in progress.dossier.items()},
                    updated_at=datetime.now(UTC),
                ),
                execution_options={"synchronize_session": False},
            )

    @activity.defn(name=names.ONBOARDING_MAIL)
    async def queue_mail(self, data: OnboardingMail) -> None:
        async with self._sessionmaker.begin() as session:
            exists = await session.execute(select(Notification.id).where(Notification.reference == data.reference))
            if exists.first() is not None:
                return
            session.add(
                Notification(
                    org_id=data.org_id,
                    reference=data.reference,
                    recipient=self._settings.staff_email if data.to_staff else data.recipient,
                    subject=data.subject[:300],
                    body=data.body,
                )
            )

    # --- the dossier ---------------------------------------------------------------------------------

    async def _document(self, session: AsyncSession, onboarding_id: str, document_id: str) -> OnboardingDocument:
        document = (
            await session.execute(
                select(OnboardingDocument).where(
                    OnboardingDocument.id == document_id, OnboardingDocument.onboarding_id == onboarding_id
                )
            )
        ).scalar_one_or_none()
        if document is None:
            raise _refused(f"document {document_id} introuvable", ErrorCode.ONBOARDING_DOCUMENT_NOT_FOUND)
        await session.refresh(document, ["content"])
        return document

    @activity.defn(name=names.ONBOARDING_CHECK_ITEM)
    async def check_dossier_item(self, data: DossierItemCheck) -> DossierItemVerdict:
        async with self._sessionmaker() as session:
            document = await self._document(session, data.onboarding_id, data.document_id)
        if document.item != data.item:
            raise _refused(
                f"le document {document.id} est un {document.item}, pas un {data.item}", ErrorCode.ONBOARDING_WRONG_ITEM
            )
        valid, errors = self._dossier.check_item(data.item, document.filename, document.content)
        return DossierItemVerdict(item=data.item, valid=valid, filename=document.filename, errors=errors)

    async def _dossier_content(self, session: AsyncSession, data: PlatformStep, item: str) -> OnboardingDocument:
        entry = data.dossier.get(item)
        if entry is None or entry.status != DossierItemStatus.VALID:
            raise _refused(f"élément du dossier non valide : {item}", ErrorCode.ONBOARDING_DOSSIER_INCOMPLETE)
        return await self._document(session, data.onboarding_id, entry.document_id)

    async def _dossier_value(self, session: AsyncSession, data: PlatformStep, item: str) -> str:
        return (await self._dossier_content(session, data, item)).content.decode().strip()

    # --- card payments (the platform's own Stripe account) -------------------------------------------

    @activity.defn(name=names.ONBOARDING_CHARGE_CARD)
    async def charge_card(self, data: CardCharge) -> MoneyOutcome:
        metadata = {"onboarding_id": data.onboarding_id, "kind": data.kind}
        async with external_call():
            customer = await self._gateway.ensure_customer(
                data.email, data.name, {"onboarding_id": data.onboarding_id}, f"{data.idempotency_key}:customer"
            )
            card = await self._gateway.attach_card(customer.customer_id, data.card, f"{data.idempotency_key}:card")
            result = await self._gateway.charge_off_session(
                customer.customer_id,
                card.payment_method_id,
                data.amount_minor,
                data.currency,
                data.idempotency_key,
                metadata,
            )
        return MoneyOutcome(reference=result.payment_intent_id, answer=result.model_dump(mode="json"))

    @activity.defn(name=names.ONBOARDING_REFUND_CARD)
    async def refund_card(self, data: CardRefund) -> MoneyOutcome:
        async with external_call():
            refund = await self._gateway.refund(data.payment_reference, data.amount_minor, data.idempotency_key)
        return MoneyOutcome(reference=refund.refund_id, answer=refund.model_dump(mode="json"))

    # --- platform creation ---------------------------------------------------------------------------

    async def _organisation(self, session: AsyncSession, org_id: str) -> Organisation:
        org = await session.get(Organisation, org_id)
        if org is None:
            raise _refused(f"organisation {org_id} introuvable", ErrorCode.ONBOARDING_ORGANISATION_NOT_FOUND)
        return org

    @activity.defn(name=names.ONBOARDING_CONFIGURE_ORGANISATION)
    async def configure_organisation(self, data: PlatformStep) -> PlatformStepResult:
        async with self._sessionmaker.begin() as session:
            org = await self._organisation(session, data.org_id)
            org.brand_name = await self._dossier_value(session, data, "brand_name")
            org.accounting_email = await self._dossier_value(session, data, "accounting_email")
            org.technical_email = await self._dossier_value(session, data, "technical_email")
            org.technical_contact_name = await self._dossier_value(session, data, "technical_contact")
            org.sepa_ics = await self._dossier_value(session, data, "sepa_ics")
            org.disabled_at = None
            return PlatformStepResult(step="organisation", created=True, details={"brand_name": org.brand_name})

    @activity.defn(name=names.ONBOARDING_IMPORT_CATALOGUE)
    async def import_catalogue(self, data: PlatformStep) -> PlatformStepResult:
        async with self._sessionmaker.begin() as session:
            document = await self._dossier_content(session, data, "sales_tables")
            try:
                catalogue = self._dossier.catalogue(document.content, document.filename)
            except ValueError as exc:
                raise _refused(f"tables de ventes illisibles : {exc}", ErrorCode.ONBOARDING_SALES_TABLES) from exc
            plans = articles = 0
            for row in catalogue.plans:
                plan = (
                    await session.execute(select(Plan).where(Plan.org_id == data.org_id, Plan.name == row.name))
                ).scalar_one_or_none()
                if plan is None:
                    plan = Plan(org_id=data.org_id, name=row.name)
                    session.add(plan)
                    plans += 1
                plan.plan_type = PlanType(row.plan_type)
                plan.subscription_kind = SubscriptionKind(row.subscription_kind) if row.subscription_kind else None
                plan.price_minor = row.price_minor
                plan.currency = row.currency
                plan.data_allowance_bytes = row.data_allowance_bytes
                plan.validity_days = row.validity_days
                plan.carrier = row.carrier
            rows = list(catalogue.articles)
            if not any(r.kind == ArticleKind.ONE_OFF_OPTION.value and r.data_bytes == GB for r in rows):
                rows.append(
                    CatalogueArticleRow(
                        code=DATA_RECHARGE_CODE,
                        label="Recharge DATA 1Go",
                        kind=ArticleKind.ONE_OFF_OPTION.value,
                        sale_price_minor=DATA_RECHARGE_PRICE_MINOR,
                        data_bytes=GB,
                        category=DATA_RECHARGE_CATEGORY,
                        carrier=GENERIC_SIM_CARRIER,
                    )
                )
            for article_row in rows:
                article = (
                    await session.execute(
                        select(CatalogueArticle).where(
                            CatalogueArticle.org_id == data.org_id, CatalogueArticle.code == article_row.code
                        )
                    )
                ).scalar_one_or_none()
                if article is None:
                    article = CatalogueArticle(org_id=data.org_id, code=article_row.code)
                    session.add(article)
                    articles += 1
                article.label = article_row.label
                article.kind = ArticleKind(article_row.kind)
                article.sale_price_minor = article_row.sale_price_minor
                article.purchase_price_minor = article_row.purchase_price_minor
                article.currency = article_row.currency
                article.data_bytes = article_row.data_bytes
                article.category = article_row.category
                article.carrier = article_row.carrier
                article.active = True
            return PlatformStepResult(
                step="catalogue", created=bool(plans or articles), details={"plans": plans, "articles": articles}
            )

    @activity.defn(name=names.ONBOARDING_STORE_BRANDING)
    async def store_branding(self, data: PlatformStep) -> PlatformStepResult:
        async with self._sessionmaker.begin() as session:
            org = await self._organisation(session, data.org_id)
            org.logo = (await self._dossier_content(session, data, "logo")).content
            org.footer_banner = (await self._dossier_content(session, data, "footer_banner")).content
            return PlatformStepResult(step="branding", created=True)

    @activity.defn(name=names.ONBOARDING_INVITE_STAFF)
    async def invite_staff(self, data: PlatformStep) -> PlatformStepResult:
        """The technical contact becomes the organisation's first staff member (every area) and gets a
        first-login link by mail: the password-reset link, valid `invitation_ttl_s`."""
        async with self._sessionmaker.begin() as session:
            email = (await self._dossier_value(session, data, "technical_email")).lower()
            name = await self._dossier_value(session, data, "technical_contact")
            existing = (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one_or_none()
            if existing is not None:
                if existing.org_id != data.org_id:
                    raise _refused(f"{email} est déjà utilisé par un autre compte", ErrorCode.ONBOARDING_EMAIL_TAKEN)
                return PlatformStepResult(step="staff_invitation", created=False, details={"staff_id": existing.id})
            staff = StaffUser(
                email=email,
                full_name=name,
                password_hash=hash_password(secrets.token_urlsafe(32)),  # unusable until the first login sets one
                role=StaffRole.ORG_STAFF,
                org_id=data.org_id,
                permissions=["*"],
            )
            session.add(staff)
            await session.flush()
            keys = AccountKeys.from_secret(self._settings.secrets_key)
            token = await create_reset_token(session, keys, staff, timedelta(seconds=self._settings.invitation_ttl_s))
            days = max(1, self._settings.invitation_ttl_s // 86400)
            session.add(
                SecurityMessage(
                    kind="staff_invitation",
                    recipient=email,
                    subject="Votre accès à la plateforme simflow",
                    body=(
                        f"Bonjour {name},\n\nVotre plateforme est prête. Pour votre première connexion, choisissez "
                        f"votre mot de passe avec ce lien (valable {days} jours, une seule fois) :\n\n"
                        f"{reset_link(self._settings.public_base_url, token)}\n\nVotre identifiant : {email}\n"
                    ),
                )
            )
            return PlatformStepResult(step="staff_invitation", created=True, details={"staff_id": staff.id})

    @activity.defn(name=names.ONBOARDING_DROP_FOLDERS)
    async def ensure_drop_folders(self, data: PlatformStep) -> PlatformStepResult:
        folders = await self._drop_folders.ensure(data.org_slug)
        return PlatformStepResult(step="drop_folders", created=True, details={"folders": folders})

    @activity.defn(name=names.ONBOARDING_STOCK_SIMS)
    async def stock_generic_sims(self, data: PlatformStep) -> PlatformStepResult:
        """`sim_batch_size` generic SIM cards in the organisation's stock (`blank`), batch `onboarding-{id}`;
        ICCIDs and IMSIs derived from the onboarding, so a retry writes the same cards."""
        batch = generic_sim_batch(data.onboarding_id)
        async with self._sessionmaker.begin() as session:
            found = await session.execute(select(SimCard.id).where(SimCard.import_batch == batch).limit(1))
            if found.first() is not None:
                return PlatformStepResult(step="generic_sims", created=False, details={"batch": batch})
            for index in range(data.sim_batch_size):
                iccid, imsi = generic_sim_numbers(data.onboarding_id, index)
                session.add(
                    SimCard(
                        org_id=data.org_id,
                        iccid=iccid,
                        imsi=imsi,
                        carrier=GENERIC_SIM_CARRIER,
                        sim_type=SimType.PREPAID,
                        status=SimStatus.BLANK,
                        import_batch=batch,
                        note="Carte SIM générique (intégration)",
                    )
                )
            return PlatformStepResult(
                step="generic_sims", created=True, details={"batch": batch, "count": data.sim_batch_size}
            )

    # --- rollback ------------------------------------------------------------------------------------

    @activity.defn(name=names.ONBOARDING_DISABLE_ORGANISATION)
    async def disable_organisation(self, data: Rollback) -> None:
        """The organisation is disabled and its staff can no longer sign in."""
        async with self._sessionmaker.begin() as session:
            org = await self._organisation(session, data.org_id)
            if org.disabled_at is None:
                org.disabled_at = datetime.now(UTC)
            await session.execute(
                update(StaffUser).where(StaffUser.org_id == data.org_id).values(active=False),
                execution_options={"synchronize_session": False},
            )

    @activity.defn(name=names.ONBOARDING_RETURN_SIMS)
    async def return_sims_to_stock(self, data: Rollback) -> int:
        """The batch's cards never used go back to stock: `unavailable` to the organisation, tagged, journaled."""
        async with self._sessionmaker.begin() as session:
            sims = (
                await session.execute(
                    select(SimCard).where(
                        SimCard.import_batch == generic_sim_batch(data.onboarding_id),
                        SimCard.status.in_((SimStatus.BLANK, SimStatus.PENDING, SimStatus.READY_FOR_ACTIVATION)),
                    )
                )
            ).scalars()
            returned = 0
            for sim in sims:
                session.add(
                    SimChange(
                        sim_id=sim.id,
                        field="status",
                        old_value=sim.status.value,
                        new_value=SimStatus.UNAVAILABLE.value,
                        actor=f"onboarding:{data.onboarding_id}",
                    )
                )
                sim.status = SimStatus.UNAVAILABLE
                sim.company_id = None
                sim.tags = sorted({*sim.tags, RETURNED_TAG})
                sim.note = f"Remise en stock : intégration annulée ({data.reason})"[:1000]
                returned += 1
            return returned


def generic_sim_batch(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}"


def generic_sim_numbers(onboarding_id: str, index: int) -> tuple[str, str]:
    """A 19-digit ICCID (89 33 99…, Luhn) and a 15-digit IMSI (208 99…) for the `index`-th generic card."""
    seed = int(hashlib.sha256(onboarding_id.encode()).hexdigest(), 16)
    body = f"893399{seed % 10**9:09d}{index:03d}"
    imsi = f"20899{seed % 10**7:07d}{index:03d}"
    return body + luhn.calc_check_digit(body), imsi
