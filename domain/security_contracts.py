"""Inputs and results of the workflows and activities of the security issue: audit rows written by
workflows, outgoing webhook events and deliveries. Frozen; new fields always have defaults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True)


class AuditRecordInput(_Contract):
    """An audit row from a workflow (money movements: charge, refund, wallet debit…). `reference` makes
    the write idempotent across activity retries; derive it from the workflow id and the step."""

    reference: str
    action: str
    result: str = "ok"
    actor: str = "system"
    actor_kind: str = "workflow"
    org_id: str | None = None
    company_id: str | None = None
    end_user_id: str | None = None
    target: str | None = None
    workflow_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class EmitEventInput(_Contract):
    """Publishes an event of the seed 000 catalogue to the organisation's webhook endpoints. `event_id`
    must be stable across retries (derive it from the workflow id and step)."""

    org_id: str
    event_type: str
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str


class EmitEventResult(_Contract):
    workflow_ids: list[str] = Field(default_factory=list)


class WebhookDeliveryInput(_Contract):
    delivery_id: str
    org_id: str
    endpoint_id: str
    event_id: str
    retry_initial_s: float = 30.0
    # A redelivery numbers its attempts after those already logged (the log is unique per number) and
    # sends again even if an earlier run delivered.
    attempt_offset: int = 0


class WebhookAttemptResult(_Contract):
    status_code: int
    duration_ms: int = 0


class WebhookDeliveryFinished(_Contract):
    delivery_id: str
    org_id: str
    delivered: bool
    error: str | None = None


class WebhookDeliveryResult(_Contract):
    delivery_id: str
    delivered: bool
    status_code: int | None = None
    error: str | None = None
