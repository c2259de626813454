"""OCS (CGRateS) side effects of top-ups: one balance per top-up, credited once, removed exactly."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities._errors import external_call
from domain.contracts import ExternalCallResult, OcsCreditRequest, OcsRemoveRequest
from integrations.ocs import OcsClient
from workflows import activity_names as names

# SPEC §8: on equal expiry the plan allowance is consumed before top-ups (higher weight first).
TOPUP_BALANCE_WEIGHT = 10.0


class OcsActivities:
    def __init__(self, client: OcsClient) -> None:
        self._client = client

    @activity.defn(name=names.OCS_CREDIT_DATA)
    async def credit_data(self, data: OcsCreditRequest) -> ExternalCallResult:
        expiry = datetime.fromisoformat(data.expires_at_iso)
        async with external_call():
            result = await self._client.credit_data_once(
                data.account,
                data.balance_id,
                data.data_bytes,
                expiry,
                TOPUP_BALANCE_WEIGHT,
                extra={"topup_id": data.topup_id, "workflow_id": data.workflow_id},
                request_id=data.request_id,
            )
        return ExternalCallResult(
            object_id=data.balance_id,
            fetched_existing=not result.created,
            sent={
                "Account": data.account,
                "BalanceType": "*data",
                "Value": data.data_bytes,
                "Balance": {"ID": data.balance_id, "ExpiryTime": data.expires_at_iso, "Weight": TOPUP_BALANCE_WEIGHT},
            },
            answer=result.balance.model_dump(mode="json"),
        )

    @activity.defn(name=names.OCS_REMOVE_BALANCE)
    async def remove_balance(self, data: OcsRemoveRequest) -> None:
        async with external_call():
            await self._client.remove_balance(data.account, "*data", data.balance_id, request_id=data.request_id)
