"""Webhook endpoints of an organisation (seed 000): registered only after the `echo` exchange succeeds,
behind the SSRF guard; the signing secret is shown once; deliveries and their attempts are listed.

The echo is the one outgoing call the API makes itself: a bounded probe (`webhook_timeout_s`) whose
answer the registration needs, with no effect on our state — the same category as `/healthz`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep, StateDep
from api.guard import audit_note
from api.schemas import NEXT_PAGE_LINK, Request, UtcDatetime, page_cursor, set_next_link
from domain.authz import Action, Principal, TenantChain, authorize, scope_org_id
from domain.errors import NotFound, PermissionDenied, ValidationFailed
from domain.models import Organisation, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from domain.pagination import CreatedKeyset
from domain.security import SecretBox
from domain.services.webhooks import claim_redelivery
from domain.webhooks import (
    ALL_EVENTS,
    ECHO,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    EVENT_TYPES,
    echo_answer_ok,
    echo_payload,
    new_echo_data,
    new_signing_secret,
    signature_headers,
)
from infra.settings import Settings
from infra.temporal import workflow_ui_url
from integrations.errors import IntegrationError
from integrations.webhooks import TargetRejected, WebhookSender
from starters.webhooks import start_redelivery

router = APIRouter(prefix="/api/v1/webhook-endpoints", tags=["Webhooks"])
events_router = APIRouter(prefix="/api/v1/webhook-events", tags=["Webhooks"])


class EndpointCreate(Request):
    org_id: str | None = Field(default=None, max_length=32, description="Obligatoire pour la plateforme")
    url: str = Field(min_length=8, max_length=2000, description="URL https du gestionnaire de webhooks")
    events: list[Annotated[str, Field(json_schema_extra={"enum": [*EVENT_TYPES, ALL_EVENTS]})]] = Field(
        min_length=1, max_length=len(EVENT_TYPES) + 1, description="Types ou « * »"
    )

    @field_validator("events")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if v != ALL_EVENTS and v not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"événements inconnus : {', '.join(unknown[:5])}")
        return [ALL_EVENTS] if ALL_EVENTS in values else sorted(set(values))


class SecretRotation(Request):
    overlap_hours: int = Field(default=24, ge=0, le=168)


class EndpointOut(BaseModel):
    id: str
    org_id: str
    url: str
    events: list[str]
    enabled: bool
    validated_at: UtcDatetime | None
    created_at: UtcDatetime
    created_by: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="Secret de signature, affiché une seule fois")


class AttemptOut(BaseModel):
    attempt: int
    at: UtcDatetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    delivered_at: UtcDatetime | None
    created_at: UtcDatetime
    workflow_id: str | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    log: list[AttemptOut]


class EventCatalogue(BaseModel):
    events: list[str]


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secrets_key.get_secret_value())


def _sender(settings: Settings) -> WebhookSender:
    return WebhookSender(settings.webhook_timeout_s, settings.webhook_allowed_hosts)


async def echo_validation(settings: Settings, url: str, secret: str) -> None:
    """The seed's validation: POST `{"type": "echo", "echo_data": …}` (signed), expect the same back."""
    sender = _sender(settings)
    echo_data = new_echo_data()
    body = json.dumps(echo_payload(echo_data), separators=(",", ":")).encode()
    headers = signature_headers(body, [secret], int(time.time()))
    headers[EVENT_TYPE_HEADER] = ECHO
    headers[EVENT_ID_HEADER] = f"echo_{echo_data[:16]}"
    try:
        response = await sender.post(url, body, headers)
    except TargetRejected as exc:
        raise ValidationFailed("url", exc.message) from exc
    except IntegrationError as exc:
        raise ValidationFailed("url", f"l'endpoint ne répond pas ({exc.code})") from exc
    if not 200 <= response.status_code < 300:
        raise ValidationFailed("url", f"réponse HTTP {response.status_code} à la requête « echo »")
    try:
        answer = response.json()
    except ValueError as exc:
        raise ValidationFailed("url", "réponse « echo » illisible (JSON attendu)") from exc
    if not echo_answer_ok(answer, echo_data):
        raise ValidationFailed("url", "la réponse ne renvoie pas le même « echo_data »")


def _out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut.model_validate(endpoint, from_attributes=True)


@events_router.get("", response_model=EventCatalogue)
async def event_catalogue(_: PrincipalDep) -> EventCatalogue:
    return EventCatalogue(events=list(EVENT_TYPES))


@router.post("", status_code=201, response_model=EndpointCreated)
async def create_endpoint(
    body: EndpointCreate, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> EndpointCreated:
    org_id = scope_org_id(principal, body.org_id)
    if principal.company_id is not None:
        raise PermissionDenied(None, "les webhooks se configurent au niveau de l'organisation")
    if await session.get(Organisation, org_id) is None:
        raise NotFound("org_id", "organisation introuvable")
    authorize(principal, Action.WRITE, TenantChain(org_id), "organisation")
    secret = new_signing_secret()
    await echo_validation(state.settings, body.url, secret)
    endpoint = WebhookEndpoint(
        org_id=org_id,
        url=body.url,
        secret_encrypted=_box(state.settings).seal(secret),
        events=body.events,
        enabled=True,
        validated_at=datetime.now(UTC),
        created_by=principal.label,
    )
    session.add(endpoint)
    await session.flush()
    audit_note(action="webhook_endpoint.created", target=f"webhook_endpoint:{endpoint.id}", org_id=org_id)
    return EndpointCreated(**_out(endpoint).model_dump(), secret=secret)


ENDPOINTS_KEYSET = CreatedKeyset(WebhookEndpoint.created_at, WebhookEndpoint.id, newest_first=False)


@router.get("", response_model=list[EndpointOut], responses=NEXT_PAGE_LINK)
async def list_endpoints(
    principal: PrincipalDep,
    session: SessionDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
    cursor: Annotated[str | None, page_cursor(ENDPOINTS_KEYSET.max_digits)] = None,
) -> list[EndpointOut]:
    """The organisation's endpoints, oldest first; the `Link` header gives the next page."""
    query = select(WebhookEndpoint)
    if not principal.is_platform_admin:
        if principal.company_id is not None:
            return []
        query = query.where(WebhookEndpoint.org_id == principal.org_id)
    rows = list((await session.execute(ENDPOINTS_KEYSET.apply(query, cursor, limit))).scalars())
    items, next_cursor = ENDPOINTS_KEYSET.page(rows, limit, lambda e: (e.created_at, e.id))
    set_next_link(response, "/api/v1/webhook-endpoints", next_cursor, limit=limit)
    return [_out(e) for e in items]


async def _endpoint(session: SessionDep, principal: Principal, endpoint_id: str, action: Action) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(None, "endpoint de webhook introuvable")
    authorize(principal, action, endpoint, "endpoint de webhook")
    return endpoint


@router.get("/{webhook_endpoint_id}", response_model=EndpointOut)
async def get_endpoint(webhook_endpoint_id: str, principal: PrincipalDep, session: SessionDep) -> EndpointOut:
    return _out(await _endpoint(session, principal, webhook_endpoint_id, Action.READ))


@router.delete("/{webhook_endpoint_id}", status_code=204)
async def delete_endpoint(webhook_endpoint_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """Disables the endpoint (its delivery log is kept); pending retries stop."""
    endpoint = await _endpoint(session, principal, webhook_endpoint_id, Action.WRITE)
    endpoint.enabled = False
    audit_note(action="webhook_endpoint.disabled", target=f"webhook_endpoint:{endpoint.id}")
    return Response(status_code=204)


@router.post("/{webhook_endpoint_id}/validation", response_model=EndpointOut)
async def revalidate_endpoint(
    webhook_endpoint_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> EndpointOut:
    """Repeats the `echo` exchange (the seed allows periodic re-validation)."""
    endpoint = await _endpoint(session, principal, webhook_endpoint_id, Action.WRITE)
    await echo_validation(state.settings, endpoint.url, _box(state.settings).open(endpoint.secret_encrypted))
    endpoint.validated_at = datetime.now(UTC)
    endpoint.enabled = True
    audit_note(action="webhook_endpoint.validated", target=f"webhook_endpoint:{endpoint.id}")
    return _out(endpoint)


@router.post("/{webhook_endpoint_id}/secret-rotation", response_model=EndpointCreated)
async def rotate_secret(
    webhook_endpoint_id: str, body: SecretRotation, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> EndpointCreated:
    """A new signing secret (shown once); deliveries carry a signature with each secret until the
    overlap ends."""
    endpoint = await _endpoint(session, principal, webhook_endpoint_id, Action.WRITE)
    box = _box(state.settings)
    secret = new_signing_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted if body.overlap_hours else None
    endpoint.previous_secret_expires_at = (
        datetime.now(UTC) + timedelta(hours=body.overlap_hours) if body.overlap_hours else None
    )
    endpoint.secret_encrypted = box.seal(secret)
    audit_note(
        action="webhook_endpoint.secret_rotated",
        target=f"webhook_endpoint:{endpoint.id}",
        overlap_hours=body.overlap_hours,
    )
    return EndpointCreated(**_out(endpoint).model_dump(), secret=secret)


@router.get("/{webhook_endpoint_id}/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    webhook_endpoint_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryOut]:
    endpoint = await _endpoint(session, principal, webhook_endpoint_id, Action.READ)
    rows = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return [DeliveryOut.model_validate(d, from_attributes=True) for d in rows.scalars()]


@router.get("/{webhook_endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(
    webhook_endpoint_id: str, delivery_id: str, principal: PrincipalDep, session: SessionDep
) -> DeliveryDetail:
    endpoint = await _endpoint(session, principal, webhook_endpoint_id, Action.READ)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound(None, "livraison de webhook introuvable")
    authorize(principal, Action.READ, delivery, "livraison de webhook")
    attempts = await session.execute(
        select(WebhookDeliveryAttempt)
        .where(WebhookDeliveryAttempt.delivery_id == delivery.id)
        .order_by(WebhookDeliveryAttempt.attempt)
    )
    return DeliveryDetail(
        **DeliveryOut.model_validate(delivery, from_attributes=True).model_dump(),
        payload=delivery.payload,
        log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts.scalars()],
    )


class RedeliveryStarted(DeliveryOut):
    redelivery: int = Field(description="Numéro du renvoi (1 pour le premier)")
    workflow_url: str


@router.post(
    "/{webhook_endpoint_id}/deliveries/{delivery_id}/redeliveries", status_code=202, response_model=RedeliveryStarted
)
async def redeliver(
    webhook_endpoint_id: str, delivery_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> RedeliveryStarted:
    """Sends a finished delivery (delivered or given up) again, through the delivery workflow under a new
    id (`webhook-redelivery/{org}/{delivery_id}/{n}`); its attempts follow the earlier ones in the log. A
    delivery still in progress is refused (409)."""
    endpoint = await _endpoint(session, principal, webhook_endpoint_id, Action.WRITE)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound(None, "livraison de webhook introuvable")
    authorize(principal, Action.WRITE, delivery, "livraison de webhook")
    before = (delivery.status, delivery.workflow_id)
    number = await claim_redelivery(session, delivery, endpoint)
    out = DeliveryOut.model_validate(delivery, from_attributes=True)
    await session.commit()  # the workflow's activity reads the claimed row
    try:
        wf_id = await start_redelivery(await state.temporal(), state.settings, delivery, number)
    except Exception:
        # Not started: the delivery is finished as it was, so it can be sent again later.
        delivery.status, delivery.workflow_id = before
        await session.commit()
        raise
    audit_note(
        action="webhook.redelivered",
        target=f"webhook_delivery:{delivery.id}",
        org_id=delivery.org_id,
        workflow_id=wf_id,
        redelivery=number,
    )
    return RedeliveryStarted(**out.model_dump(), redelivery=number, workflow_url=workflow_ui_url(state.settings, wf_id))
