"""One webhook delivery: one event to one endpoint, retried with backoff for 3 days.

Workflow id: `webhook-delivery/{org}/{event_id}/{endpoint_id}`. Each attempt is one activity attempt
(signed afresh, logged in `webhook_delivery_attempts`); a non-2xx answer, a timeout or a connection
failure is retried (30 s, ×2, capped at 6 h) until 3 days have passed; a target that became non-public
or an endpoint that was deleted stops at once. The outcome is recorded on the delivery row.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.enums import BusinessStatus
    from domain.security_contracts import (
        WebhookAttemptResult,
        WebhookDeliveryFinished,
        WebhookDeliveryInput,
        WebhookDeliveryResult,
    )
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS


def workflow_id(org_id: str, event_id: str, endpoint_id: str) -> str:
    return f"webhook-delivery/{org_id}/{event_id}/{endpoint_id}"


@workflow.defn
class WebhookDeliveryWorkflow:
    def __init__(self) -> None:
        self.status = BusinessStatus.DELIVERING

    @workflow.query
    def business_status(self) -> str:
        return self.status

    def _set_status(self, status: BusinessStatus, details: str) -> None:
        self.status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        workflow.set_current_details(details)

    @workflow.run
    async def run(self, data: WebhookDeliveryInput) -> WebhookDeliveryResult:
        retry = dataclasses.replace(
            policies.WEBHOOK_RETRY, initial_interval=timedelta(seconds=max(0.05, data.retry_initial_s))
        )
        self._set_status(BusinessStatus.DELIVERING, f"Événement {data.event_id} vers l'endpoint {data.endpoint_id}")
        try:
            result: WebhookAttemptResult = await workflow.execute_activity(
                names.WEBHOOK_DELIVER,
                data,
                result_type=WebhookAttemptResult,
                start_to_close_timeout=policies.WEBHOOK_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=policies.WEBHOOK_DELIVERY_WINDOW,
                retry_policy=retry,
            )
        except ActivityError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            await workflow.execute_activity(
                names.WEBHOOK_FINISH,
                WebhookDeliveryFinished(
                    delivery_id=data.delivery_id, org_id=data.org_id, delivered=False, error=reason
                ),
                start_to_close_timeout=policies.DATABASE_TIMEOUT,
                retry_policy=policies.DATABASE_RETRY,
            )
            self._set_status(BusinessStatus.FAILED, f"Abandon : {reason}")
            return WebhookDeliveryResult(delivery_id=data.delivery_id, delivered=False, error=reason)
        self._set_status(BusinessStatus.DELIVERED, f"Livré (HTTP {result.status_code})")
        return WebhookDeliveryResult(delivery_id=data.delivery_id, delivered=True, status_code=result.status_code)
