"""Top-up intents: price from the catalogue, the deployment (seed 003), idempotency by business key."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.authz import Action, Principal, PrincipalKind, TenantChain, authorize
from domain.contracts import TopUpInput
from domain.enums import (
    TOPUP_PAYMENT_METHODS,
    TOPUP_TERMINAL_STATUSES,
    ArticleKind,
    DeploymentKind,
    PaymentMethod,
    TopUpSource,
)
from domain.errors import IdempotencyMismatch, IllegalTransition, NotFound, ValidationFailed
from domain.models import CatalogueArticle, Deployment, DeploymentItem, Line, SimCard, TopUp
from domain.money import GB
from domain.services.lines import topup_refusal

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_DATA_GB = 100


@dataclass(frozen=True)
class TopUpRequest:
    line_id: str
    data_gb: int
    payment_method: PaymentMethod
    idempotency_key: str
    source: TopUpSource
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


@dataclass(frozen=True)
class SubmittedTopUp:
    """The top-up intent a request wrote (`created`) or found under its key, and the workflow's input."""

    topup: TopUp
    created: bool
    workflow_input: TopUpInput
    msisdn: str
    iccid: str | None

    @property
    def settled(self) -> bool:
        """Found already settled: the same key answers the recorded outcome, nothing is started."""
        return not self.created and self.topup.status in TOPUP_TERMINAL_STATUSES


async def submit_topup(
    session: AsyncSession,
    request: TopUpRequest,
    *,
    principal: Principal | None,
    sla_s: int,
    charge_window_s: int,
) -> SubmittedTopUp:
    """The one top-up submission of the API, the portals and the auto top-up rule. Reads the line once (from
    the session's identity map when the request's guard has looked it up already) and its SIM, checks
    `principal` may write it (None: the rule, acting for the organisation), validates the request, then
    writes the intent and its deployment, or finds the one written under the same key (a different body
    under that key is refused). Commits before returning, so the workflow finds the intent and no
    connection is held while the caller waits on Temporal."""
    line = await session.get(Line, request.line_id)  # the guard's lookup of the path's line, when there is one
    if line is None:
        raise NotFound(None, "ligne introuvable")
    if principal is not None:
        authorize(principal, Action.WRITE, TenantChain(line.org_id, line.company_id, line.end_user_id), "ligne")
    check_request(request)
    if (
        principal is not None
        and principal.kind is PrincipalKind.END_USER
        and request.payment_method is PaymentMethod.ACCOUNT
    ):
        # Seed 000: an end user pays with the organisation's card processor or the wallet; the company's
        # account is billed by its own staff's choice.
        raise ValidationFailed("payment_method", "un utilisateur final paie par carte ou par portefeuille")
    sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    org_id, msisdn, iccid = line.org_id, line.msisdn, sim.iccid if sim else None
    topup = await find_topup_by_key(session, org_id, request.idempotency_key)
    created = topup is None
    if topup is None:
        refusal = topup_refusal(line)
        if refusal is not None:
            raise IllegalTransition("line_id", refusal)
        article = await data_recharge_article(session, line.org_id, sim.carrier if sim else None)
        try:
            async with session.begin_nested():
                topup = await _write_intent(session, line, article, request)
        except IntegrityError:
            # A concurrent request with the same key won the insert: answer with its top-up.
            topup = await find_topup_by_key(session, org_id, request.idempotency_key)
            if topup is None:
                raise
            created = False
    if not created:
        topup = _same_request(topup, request)
        found = await session.get(CatalogueArticle, topup.article_id)
        assert found is not None
        article = found
    data = topup_input(topup, msisdn, article, iccid, sla_s, charge_window_s=charge_window_s)
    await session.commit()
    return SubmittedTopUp(topup=topup, created=created, workflow_input=data, msisdn=msisdn, iccid=iccid)


async def _write_intent(session: AsyncSession, line: Line, article: CatalogueArticle, request: TopUpRequest) -> TopUp:
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
    await session.flush()
    return topup


def _same_request(existing: TopUp, request: TopUpRequest) -> TopUp:
    if existing.request_fingerprint != request.fingerprint():
        raise IdempotencyMismatch("Idempotency-Key", "clé déjà utilisée pour une autre demande de recharge")
    return existing


def topup_input(
    topup: TopUp,
    msisdn: str,
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
        msisdn=msisdn,
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
