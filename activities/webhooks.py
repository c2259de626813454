"""Outgoing webhook side effects: one signed HTTP attempt per activity attempt, the final outcome, and
event publication for workflows. Plus the audit row a workflow writes for a money movement."""

from __future__ import annotations

import json
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from api.events import emit_event
from domain.audit import AuditEntry, bind_context, record, reset_context
from domain.authz import TenantChain
from domain.enums import WebhookDeliveryStatus
from domain.errors import NotFound, ValidationFailed
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
from integrations.webhooks import TargetRejected, WebhookSender
from workflows import activity_names as names


class WebhookActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], sender: WebhookSender, box: SecretBox, settings: Settings
    ) -> None:
        self._sessionmaker = sessionmaker
        self._sender = sender
        self._box = box
        self._settings = settings

    @activity.defn(name=names.WEBHOOK_DELIVER)
    async def deliver(self, data: WebhookDeliveryInput) -> WebhookAttemptResult:
        attempt = activity.info().attempt
        async with self._sessionmaker() as session:
            try:  # the delivery must belong to the organisation the workflow runs for
                delivery: WebhookDelivery = await ensure_in_tenant(
                    session, "delivery_id", data.delivery_id, TenantChain(data.org_id)
                )
            except NotFound as exc:
                raise ApplicationError(str(exc), type="webhook.endpoint_gone", non_retryable=True) from exc
            if delivery.status is WebhookDeliveryStatus.DELIVERED:
                return WebhookAttemptResult(status_code=delivery.last_status_code or 200)
            endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
            if endpoint is None or not endpoint.enabled or endpoint.org_id != data.org_id:
                raise ApplicationError("endpoint deleted or disabled", type="webhook.endpoint_gone", non_retryable=True)
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
                failure = ApplicationError(error, type="webhook.http_status")
        except TargetRejected as exc:
            error = exc.message
            failure = ApplicationError(error, type="webhook.target_rejected", non_retryable=True)
        except IntegrationError as exc:
            error = f"{exc.code}: {exc.message}"
            failure = ApplicationError(error, type=f"webhook.{exc.code}", non_retryable=not exc.retryable)

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
            ids = await emit_event(
                activity.client(),
                self._settings,
                data.org_id,
                data.event_type,
                data.data,
                event_id=data.event_id,
                sessionmaker=self._sessionmaker,
            )
        except ValidationFailed as exc:
            raise ApplicationError(str(exc), type="webhook.unknown_event", non_retryable=True) from exc
        return EmitEventResult(workflow_ids=ids)


class AuditActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name=names.AUDIT_RECORD)
    async def record(self, data: AuditRecordInput) -> None:
        """Appends an audit row once per `reference` (a retried activity writes nothing more)."""
        token = bind_context(workflow_id=data.workflow_id or activity.info().workflow_id)
        try:
            async with self._sessionmaker.begin() as session:
                await record(
                    session,
                    AuditEntry(
                        actor=data.actor,
                        actor_kind=data.actor_kind,
                        action=data.action,
                        result=data.result,
                        org_id=data.org_id,
                        company_id=data.company_id,
                        end_user_id=data.end_user_id,
                        target=data.target,
                        workflow_id=data.workflow_id or activity.info().workflow_id,
                        details=dict(data.details),
                        reference=data.reference,
                    ),
                )
        finally:
            reset_context(token)
