"""Outgoing webhook side effects: one signed HTTP attempt per activity attempt, the final outcome, and
event publication for workflows. Plus the audit row a workflow writes for a money movement.

Publishing an event starts delivery workflows, which only the starters layer does: the worker hands the
activities `starters.webhooks.emit_event` as their `EventPublisher`, so no activity imports upward."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities._errors import to_application_error, translates_errors
from activities.records import write_audit_row
from domain.authz import TenantChain
from domain.enums import WebhookDeliveryStatus
from domain.errors import DomainError, ErrorCode, NotFound, ValidationFailed
from domain.models import WebhookDelivery, WebhookEndpoint
from domain.security import SecretBox
from domain.security_contracts import (
    AuditRecordInput,
    EmitEventInput,
    EmitEventResult,
    WebhookAttemptResult,
    WebhookDeliveryFinished,
    WebhookDeliveryInput,
)
from domain.services.tenancy import ensure_in_tenant
from domain.services.webhooks import log_attempt, signing_secrets
from domain.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, signature_headers
from infra.settings import Settings
from integrations.errors import IntegrationError
from integrations.webhooks import WebhookSender
from workflows import activity_names as names


class EventPublisher(Protocol):
    """Records an event's deliveries and starts their workflows; returns the delivery workflow ids."""

    async def __call__(
        self,
        client: Client,
        settings: Settings,
        org_id: str,
        event_type: str,
        data: dict[str, Any],
        *,
        event_id: str | None = None,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> list[str]: ...


@translates_errors
class WebhookActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        box: SecretBox,
        settings: Settings,
        publish: EventPublisher,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._sender = sender
        self._box = box
        self._settings = settings
        self._publish = publish

    @activity.defn(name=names.WEBHOOK_DELIVER)
    async def deliver(self, data: WebhookDeliveryInput) -> WebhookAttemptResult:
        attempt = data.attempt_offset + activity.info().attempt
        async with self._sessionmaker() as session:
            try:  # the delivery must belong to the organisation the workflow runs for
                delivery: WebhookDelivery = await ensure_in_tenant(
                    session, "delivery_id", data.delivery_id, TenantChain(data.org_id)
                )
            except NotFound as exc:
                raise NotFound(exc.field, exc.reason, code=ErrorCode.WEBHOOK_ENDPOINT_GONE) from exc
            if delivery.status is WebhookDeliveryStatus.DELIVERED and delivery.attempts > data.attempt_offset:
                return WebhookAttemptResult(status_code=delivery.last_status_code or 200)
            endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
            if endpoint is None or not endpoint.enabled or endpoint.org_id != data.org_id:
                raise NotFound("endpoint_id", "endpoint deleted or disabled", code=ErrorCode.WEBHOOK_ENDPOINT_GONE)
            url = endpoint.url
            body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
            headers = signature_headers(body, signing_secrets(endpoint, self._box), int(time.time()))
            headers[EVENT_ID_HEADER] = delivery.event_id
            headers[EVENT_TYPE_HEADER] = delivery.event_type

        status_code: int | None = None
        error: str | None = None
        duration_ms = 0
        failure: ApplicationError | None = None
        try:
            response = await self._sender.post(url, body, headers)
            status_code, duration_ms = response.status_code, response.duration_ms
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
                failure = ApplicationError(error, type=ErrorCode.WEBHOOK_HTTP_STATUS)  # retried by the policy
        except IntegrationError as exc:
            error = exc.message if exc.kind == "target_rejected" else f"{exc.code}: {exc.message}"
            failure = to_application_error(exc)

        async with self._sessionmaker.begin() as session:
            current = await session.get(WebhookDelivery, data.delivery_id)
            if current is not None:
                await log_attempt(session, current, attempt, status_code, error, duration_ms)
        if failure is not None:
            raise failure
        assert status_code is not None
        return WebhookAttemptResult(status_code=status_code, duration_ms=duration_ms)

    @activity.defn(name=names.WEBHOOK_FINISH)
    async def finish(self, data: WebhookDeliveryFinished) -> None:
        async with self._sessionmaker.begin() as session:
            delivery = await session.get(WebhookDelivery, data.delivery_id)
            if delivery is None or delivery.org_id != data.org_id:
                return
            if not data.delivered and delivery.status is not WebhookDeliveryStatus.DELIVERED:
                delivery.status = WebhookDeliveryStatus.FAILED
                delivery.last_error = (data.error or "")[:1000] or delivery.last_error

    @activity.defn(name=names.WEBHOOKS_EMIT)
    async def emit(self, data: EmitEventInput) -> EmitEventResult:
        try:
            ids = await self._publish(
                activity.client(),
                self._settings,
                data.org_id,
                data.event_type,
                data.data,
                event_id=data.event_id,
                sessionmaker=self._sessionmaker,
            )
        except ValidationFailed as exc:
            raise DomainError(exc.field, exc.reason, code=ErrorCode.WEBHOOK_UNKNOWN_EVENT) from exc
        return EmitEventResult(workflow_ids=ids)


@translates_errors
class AuditActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name=names.AUDIT_RECORD)
    async def record(self, data: AuditRecordInput) -> None:
        """Appends an audit row once per `reference` (a retried activity writes nothing more)."""
        async with self._sessionmaker.begin() as session:
            await write_audit_row(session, data)
