"""Publishing events to organisations' webhook endpoints.

`emit_event` records one delivery per subscribed, validated endpoint (idempotent per event id) and starts
one `WebhookDeliveryWorkflow` per delivery. Workflows publish through the `webhooks.emit` activity
(`workflows.activity_names.WEBHOOKS_EMIT`, input `EmitEventInput`), to which the worker hands this function,
with an event id derived from their workflow id, so a retried activity publishes once.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.enums import BusinessStatus
from domain.errors import ValidationFailed
from domain.models import WebhookDelivery
from domain.security_contracts import WebhookDeliveryInput
from domain.services.webhooks import record_deliveries
from domain.webhooks import EVENT_TYPES
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from workflows._search import initial_attributes
from workflows.webhook_delivery import WebhookDeliveryWorkflow, workflow_id


async def emit_event(
    client: Client,
    settings: Settings,
    org_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> list[str]:
    """Publishes `event_type` (seed 000 catalogue) for `org_id`; returns the delivery workflow ids.
    Pass a stable `event_id` when the call may be repeated."""
    if event_type not in EVENT_TYPES:
        raise ValidationFailed("event_type", f"événement inconnu : {event_type}")
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    engine = None
    if sessionmaker is None:
        engine = create_engine(settings.database_url)
        sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker.begin() as session:
            deliveries = await record_deliveries(session, org_id, event_id, event_type, data)
            planned = [(d.id, d.endpoint_id) for d in deliveries]
    finally:
        if engine is not None:
            await engine.dispose()
    ids: list[str] = []
    for delivery_id, endpoint_id in planned:
        wf_id = workflow_id(org_id, event_id, endpoint_id)
        try:
            await client.start_workflow(
                WebhookDeliveryWorkflow.run,
                WebhookDeliveryInput(
                    delivery_id=delivery_id,
                    org_id=org_id,
                    endpoint_id=endpoint_id,
                    event_id=event_id,
                    retry_initial_s=settings.webhook_retry_initial_s,
                ),
                id=wf_id,
                task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=initial_attributes(org_id=org_id, status=BusinessStatus.DELIVERING),
                static_summary=f"Webhook {event_type} → endpoint {endpoint_id}",
            )
        except WorkflowAlreadyStartedError:
            pass  # already delivered (or given up): the same event is not sent twice
        ids.append(wf_id)
    return ids


async def start_redelivery(client: Client, settings: Settings, delivery: WebhookDelivery, number: int) -> str:
    """Starts the delivery workflow again for a delivery claimed by `claim_redelivery`, under the
    redelivery's own id; its attempts are numbered after those already logged."""
    assert delivery.workflow_id is not None
    await client.start_workflow(
        WebhookDeliveryWorkflow.run,
        WebhookDeliveryInput(
            delivery_id=delivery.id,
            org_id=delivery.org_id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            retry_initial_s=settings.webhook_retry_initial_s,
            attempt_offset=delivery.attempts or 0,
        ),
        id=delivery.workflow_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_attributes(org_id=delivery.org_id, status=BusinessStatus.DELIVERING),
        static_summary=f"Webhook {delivery.event_type} → endpoint {delivery.endpoint_id} (renvoi n° {number})",
    )
    return delivery.workflow_id
