"""OCS (CGRateS) side effects: accounts of the SIM lifecycle (created, disabled, enabled, removed, read),
the plan allowance, and one balance per top-up, credited once, removed exactly. Each is idempotent by
check-and-skip (`credit_data_once`, upserts, removals that tolerate "already gone")."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from activities._errors import external_call, translates_errors
from domain.contracts import ExternalCallResult, OcsCreditRequest, OcsRemoveRequest
from domain.lifecycle_contracts import OcsAccountRequest, OcsGrant, OcsUsage
from integrations.ocs import DATA, OcsPort
from workflows import activity_names as names

# SPEC §8: on equal expiry the plan allowance is consumed before top-ups (higher weight first).
TOPUP_BALANCE_WEIGHT = 10.0


@translates_errors
class OcsActivities:
    def __init__(self, client: OcsPort) -> None:
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
    async def remove_balance(self, data: OcsRemoveRequest) -> ExternalCallResult:
        """Removes exactly that balance; one already gone (or an account gone) is a success."""
        async with external_call():
            await self._client.remove_balance(data.account, DATA, data.balance_id, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.balance_id,
            sent={"method": "APIerSv1.RemoveBalances", "Account": data.account, "ID": data.balance_id},
        )

    @activity.defn(name=names.PROV_OCS_REMOVE_BALANCE)
    async def remove_balance_under_old_name(self, data: OcsGrant) -> ExternalCallResult:
        """`remove_balance` under its name of before the saga kit, for runs started then (docs/decisions.md)."""
        return await self.remove_balance(
            OcsRemoveRequest(account=data.account, balance_id=data.balance_id, request_id=data.request_id)
        )

    # --- accounts of the SIM lifecycle ----------------------------------------------------------

    @activity.defn(name=names.PROV_OCS_CREATE_ACCOUNT)
    async def ocs_create_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        async with external_call():
            await self._client.set_account(
                data.account, disabled=False, allow_negative=False, request_id=data.request_id
            )
        return ExternalCallResult(
            object_id=data.account,
            sent={"method": "APIerSv2.SetAccount", "Account": data.account, "Disabled": False, "AllowNegative": False},
            answer={"result": "OK"},
        )

    @activity.defn(name=names.PROV_OCS_GRANT_PLAN)
    async def ocs_grant_plan(self, data: OcsGrant) -> ExternalCallResult:
        sent = {
            "method": "APIerSv1.SetBalance",
            "Account": data.account,
            "BalanceType": DATA,
            "ID": data.balance_id,
            "Value": data.value_bytes,
            "ExpiryTime": data.expiry.isoformat() if data.expiry else None,
            "Weight": data.weight,
        }
        if data.value_bytes <= 0:
            return ExternalCallResult(object_id=data.balance_id, sent=sent, answer={"skipped": "no data allowance"})
        async with external_call():
            credit = await self._client.credit_data_once(
                data.account, data.balance_id, data.value_bytes, data.expiry, data.weight, request_id=data.request_id
            )
        return ExternalCallResult(
            object_id=data.balance_id,
            fetched_existing=not credit.created,
            sent=sent,
            answer={"created": credit.created, "value": credit.balance.value},
        )

    @activity.defn(name=names.PROV_OCS_REMOVE_ACCOUNT)
    async def ocs_remove_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        """Removing an account already gone is a success."""
        async with external_call():
            await self._client.remove_account(data.account, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.account, sent={"method": "APIerSv1.RemoveAccount", "Account": data.account}
        )

    @activity.defn(name=names.PROV_OCS_DISABLE_ACCOUNT)
    async def ocs_disable_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        async with external_call():
            await self._client.disable_account(data.account, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.account, sent={"method": "APIerSv2.SetAccount", "Account": data.account, "Disabled": True}
        )

    @activity.defn(name=names.PROV_OCS_ENABLE_ACCOUNT)
    async def ocs_enable_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        async with external_call():
            await self._client.enable_account(data.account, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.account, sent={"method": "APIerSv2.SetAccount", "Account": data.account, "Disabled": False}
        )

    @activity.defn(name=names.PROV_OCS_READ_USAGE)
    async def ocs_read_usage(self, data: OcsAccountRequest) -> OcsUsage:
        async with external_call():
            account = await self._client.get_account(data.account, request_id=data.request_id)
        if account is None:
            return OcsUsage(exists=False)
        plan = account.balance(data.balance_id, DATA) if data.balance_id else None
        return OcsUsage(
            exists=True,
            disabled=account.disabled,
            data_remaining_bytes=int(account.total(DATA, datetime.now(UTC))),
            plan_balance_bytes=int(plan.value) if plan is not None else None,
            plan_expires_at=plan.expires_at if plan is not None else None,
        )
