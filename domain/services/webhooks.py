"""Webhook endpoints and deliveries in the database: which endpoints get an event, the delivery rows
(one per endpoint and event, idempotent), the per-attempt log, the signing secrets in force."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import WebhookDeliveryStatus
from domain.errors import IllegalTransition
from domain.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, new_id
from domain.security import SecretBox
from domain.webhooks import envelope, subscribed


def delivery_workflow_id(org_id: str, event_id: str, endpoint_id: str) -> str:
    return f"webhook-delivery/{org_id}/{event_id}/{endpoint_id}"


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def endpoints_for(session: AsyncSession, org_id: str, event_type: str) -> list[WebhookEndpoint]:
    rows = await session.execute(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.org_id == org_id,
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.validated_at.is_not(None),
        )
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return [endpoint for endpoint in rows.scalars() if subscribed(endpoint.events, event_type)]


async def record_deliveries(
    session: AsyncSession, org_id: str, event_id: str, event_type: str, data: dict[str, Any]
) -> list[WebhookDelivery]:
    """One pending delivery per subscribed endpoint; a second call with the same event id adds nothing."""
    endpoints = await endpoints_for(session, org_id, event_type)
    payload = envelope(event_id, event_type, org_id, int(time.time()), data)
    for endpoint in endpoints:
        await session.execute(
            _insert(session)(WebhookDelivery)
            .values(
                id=new_id(),
                org_id=org_id,
                endpoint_id=endpoint.id,
                event_id=event_id,
                event_type=event_type,
                payload=payload,
                status=WebhookDeliveryStatus.PENDING,
                attempts=0,
                created_at=datetime.now(UTC),
                workflow_id=delivery_workflow_id(org_id, event_id, endpoint.id),
            )
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        )
    if not endpoints:
        return []
    rows = await session.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.event_id == event_id, WebhookDelivery.endpoint_id.in_([e.id for e in endpoints])
        )
    )
    return list(rows.scalars())


def signing_secrets(endpoint: WebhookEndpoint, box: SecretBox, now: datetime | None = None) -> list[str]:
    """The current secret, then the previous one while its rotation overlap lasts."""
    now = now or datetime.now(UTC)
    secrets_ = [box.open(endpoint.secret_encrypted)]
    expires = endpoint.previous_secret_expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if endpoint.previous_secret_encrypted and expires is not None and expires > now:
        secrets_.append(box.open(endpoint.previous_secret_encrypted))
    return secrets_


async def log_attempt(
    session: AsyncSession,
    delivery: WebhookDelivery,
    attempt: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
) -> None:
    """The attempt's row (unique per attempt number, so a re-run activity does not log twice) and the
    delivery's summary."""
    await session.execute(
        _insert(session)(WebhookDeliveryAttempt)
        .values(
            delivery_id=delivery.id,
            attempt=attempt,
            at=datetime.now(UTC),
            status_code=status_code,
            error=(error or None) and error[:1000],
            duration_ms=duration_ms,
        )
        .on_conflict_do_nothing(index_elements=["delivery_id", "attempt"])
    )
    delivery.attempts = max(delivery.attempts or 0, attempt)
    delivery.last_status_code = status_code
    delivery.last_error = (error or None) and error[:1000]
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = WebhookDeliveryStatus.DELIVERED
        delivery.delivered_at = datetime.now(UTC)


def redelivery_workflow_id(org_id: str, delivery_id: str, number: int) -> str:
    return f"webhook-redelivery/{org_id}/{delivery_id}/{number}"


async def claim_redelivery(session: AsyncSession, delivery: WebhookDelivery, endpoint: WebhookEndpoint) -> int:
    """Numbers the next redelivery of a finished delivery and puts it back to pending; returns the number.
    One conditional UPDATE: of two simultaneous requests only one finds the delivery finished."""
    if not endpoint.enabled:
        raise IllegalTransition("webhook_endpoint_id", "l'endpoint est désactivé : rien ne peut lui être renvoyé")
    number = (delivery.redeliveries or 0) + 1
    claimed = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status != WebhookDeliveryStatus.PENDING,
            WebhookDelivery.redeliveries == number - 1,
        )
        .values(
            status=WebhookDeliveryStatus.PENDING,
            redeliveries=number,
            workflow_id=redelivery_workflow_id(delivery.org_id, delivery.id, number),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise IllegalTransition("delivery_id", "une livraison de cet événement est déjà en cours")
    await session.refresh(delivery)
    return number
