"""Top-up intents: price from the catalogue, the deployment (seed 003), idempotency by business key."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.contracts import TopUpInput
from domain.enums import ArticleKind, DeploymentKind, PaymentMethod
from domain.errors import IdempotencyMismatch, IllegalTransition, NotFound, ValidationFailed
from domain.models import CatalogueArticle, Deployment, DeploymentItem, Line, SimCard, TopUp
from domain.money import GB
from domain.services.lines import topup_refusal

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
TOPUP_PAYMENT_METHODS = (PaymentMethod.CARD, PaymentMethod.WALLET, PaymentMethod.ACCOUNT)
MAX_DATA_GB = 100


@dataclass(frozen=True)
class TopUpRequest:
    line_id: str
    data_gb: int
    payment_method: PaymentMethod
    idempotency_key: str
    source: str
    requested_by: str
    end_user_id: str | None = None

    def fingerprint(self) -> str:
        payload = {"line_id": self.line_id, "data_gb": self.data_gb, "payment_method": self.payment_method.value}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_request(request: TopUpRequest) -> None:
    if not IDEMPOTENCY_KEY.match(request.idempotency_key):
        raise ValidationFailed("Idempotency-Key", "8 à 64 caractères parmi lettres, chiffres, « - » et « _ »")
    if not 1 <= request.data_gb <= MAX_DATA_GB:
        raise ValidationFailed("data_gb", f"entre 1 et {MAX_DATA_GB} Go")
    if request.payment_method not in TOPUP_PAYMENT_METHODS:
        raise ValidationFailed("payment_method", "card, wallet ou account")


async def data_recharge_article(session: AsyncSession, org_id: str, carrier: str | None) -> CatalogueArticle:
    """The organisation's "Recharge DATA 1Go" one-off option (carrier-specific one preferred)."""
    query = select(CatalogueArticle).where(
        CatalogueArticle.org_id == org_id,
        CatalogueArticle.kind == ArticleKind.ONE_OFF_OPTION,
        CatalogueArticle.data_bytes == GB,
        CatalogueArticle.active.is_(True),
    )
    articles = list((await session.execute(query.order_by(CatalogueArticle.code))).scalars())
    if not articles:
        raise NotFound("data_gb", "aucune option ponctuelle « Recharge DATA 1Go » au catalogue")
    return next((a for a in articles if carrier and a.carrier == carrier), articles[0])


def workflow_id_for(org_id: str, topup_id: str) -> str:
    return f"topup/{org_id}/{topup_id}"


async def find_topup_by_key(session: AsyncSession, org_id: str, key: str) -> TopUp | None:
    query = select(TopUp).where(TopUp.org_id == org_id, TopUp.idempotency_key == key)
    return (await session.execute(query)).scalar_one_or_none()


async def create_or_get_topup(
    sessionmaker: async_sessionmaker[AsyncSession], request: TopUpRequest
) -> tuple[TopUp, Line, bool]:
    """Writes the top-up intent and its deployment in their own transaction; a second request with
    the same key gets the first one (a different body under that key is refused)."""
    check_request(request)
    async with sessionmaker() as session:
        line = await session.get(Line, request.line_id)
        if line is None:
            raise NotFound(None, "ligne introuvable")
        existing = await find_topup_by_key(session, line.org_id, request.idempotency_key)
    if existing is not None:
        return _same_request(existing, request), line, False
    refusal = topup_refusal(line)
    if refusal is not None:
        raise IllegalTransition("line_id", refusal)
    try:
        async with sessionmaker.begin() as session:
            sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
            article = await data_recharge_article(session, line.org_id, sim.carrier if sim else None)
            deployment = Deployment(
                org_id=line.org_id,
                company_id=line.company_id,
                kind=DeploymentKind.ONE_OFF_OPTION,
                category=article.category,
                partner=None,
                collecting_operator=article.carrier,
                created_by=request.requested_by,
            )
            session.add(deployment)
            await session.flush()
            topup = TopUp(
                org_id=line.org_id,
                company_id=line.company_id,
                line_id=line.id,
                end_user_id=request.end_user_id or line.end_user_id,
                idempotency_key=request.idempotency_key,
                request_fingerprint=request.fingerprint(),
                source=request.source,
                requested_by=request.requested_by,
                article_id=article.id,
                quantity=request.data_gb,
                unit_price_minor=article.sale_price_minor,
                amount_minor=article.sale_price_minor * request.data_gb,
                currency=article.currency,
                data_bytes=article.data_bytes * request.data_gb,
                payment_method=request.payment_method,
                deployment_id=deployment.id,
                workflow_id="",
            )
            session.add(topup)
            await session.flush()
            topup.workflow_id = workflow_id_for(line.org_id, topup.id)
            deployment.workflow_id = topup.workflow_id
            session.add(
                DeploymentItem(
                    deployment_id=deployment.id,
                    line_id=line.id,
                    article_id=article.id,
                    quantity=request.data_gb,
                    amount_minor=topup.amount_minor,
                    currency=topup.currency,
                )
            )
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer with its top-up.
        async with sessionmaker() as session:
            existing = await find_topup_by_key(session, line.org_id, request.idempotency_key)
        if existing is None:
            raise
        return _same_request(existing, request), line, False
    return topup, line, True


def _same_request(existing: TopUp, request: TopUpRequest) -> TopUp:
    if existing.request_fingerprint != request.fingerprint():
        raise IdempotencyMismatch("Idempotency-Key", "clé déjà utilisée pour une autre demande de recharge")
    return existing


def topup_input(
    topup: TopUp,
    line: Line,
    article: CatalogueArticle,
    iccid: str | None,
    sla_s: int,
    *,
    charge_window_s: int = 600,
) -> TopUpInput:
    return TopUpInput(
        topup_id=topup.id,
        org_id=topup.org_id,
        company_id=topup.company_id,
        line_id=topup.line_id,
        deployment_id=topup.deployment_id or "",
        msisdn=line.msisdn,
        iccid=iccid,
        payment_method=topup.payment_method.value,
        amount_minor=topup.amount_minor,
        currency=topup.currency,
        quantity=topup.quantity,
        unit_price_minor=topup.unit_price_minor,
        data_bytes=topup.data_bytes,
        article_code=article.code,
        article_label=article.label,
        snaic_callback_sla_s=sla_s,
        charge_window_s=charge_window_s,
    )
