"""Network and billing side effects of the SIM lifecycle: SNAIC lines (create, suspend, resume, change
offer, terminate), OCS accounts and plan balances, CFAST service lines.

One external effect per activity, each idempotent: SNAIC and CFAST get the step's idempotency key, the
OCS goes through check-and-skip (`credit_data_once`, upserts, removals that tolerate "already gone").
Compensations look the object up first, so they are safe to run twice or when the step never ran.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import external_call
from domain.contracts import ExternalCallResult, SnaicOrderUpdate
from domain.lifecycle_contracts import (
    CfastChangeSubscription,
    CfastEnsureService,
    CfastServiceRef,
    OcsAccountRequest,
    OcsGrant,
    OcsUsage,
    SnaicCancelLine,
    SnaicCreateLine,
    SnaicLineOrder,
    SnaicLineState,
    SnaicOrderPlaced,
    SnaicOrderQuery,
)
from integrations.cfast import CfastClient, CfastService
from integrations.errors import ConflictError, NotFoundError
from integrations.ocs import DATA, OcsPort
from integrations.snaic import PortIn, SnaicClient, SnaicOrderAck
from workflows import activity_names as names

LIVE_SNAIC_STATUSES = ("pending", "active", "suspended")


def _placed(ack: SnaicOrderAck, sent: dict[str, object]) -> SnaicOrderPlaced:
    return SnaicOrderPlaced(
        order_id=ack.order_id, line_id=ack.line_id, status=ack.status, sent=dict(sent), answer=ack.model_dump()
    )


def _service_answer(service: CfastService) -> dict[str, object]:
    return {
        "serviceId": service.service_id,
        "serviceLabel": service.service_label,
        "siteId": service.site_id,
        "status": service.status,
        "articleCode": service.article_code,
        "startDate": service.start_date.isoformat(),
        "terminationDate": service.termination_date.isoformat() if service.termination_date else None,
    }


class ProvisioningActivities:
    def __init__(self, snaic: SnaicClient, ocs: OcsPort, cfast: CfastClient) -> None:
        self._snaic = snaic
        self._ocs = ocs
        self._cfast = cfast

    # --- SNAIC -------------------------------------------------------------------------------------

    @activity.defn(name=names.PROV_SNAIC_CREATE_LINE)
    async def snaic_create_line(self, data: SnaicCreateLine) -> SnaicOrderPlaced:
        port_in = PortIn(msisdn=data.msisdn, rio=data.port_in_rio) if data.port_in_rio else None
        sent: dict[str, object] = {"iccid": data.iccid, "offer_code": data.offer_code, "reference": data.reference}
        if port_in is not None:
            sent["port_in"] = {"msisdn": data.msisdn, "rio": "***"}
        else:
            sent["msisdn"] = data.msisdn
        async with external_call():
            ack = await self._snaic.create_line(
                iccid=data.iccid,
                offer_code=data.offer_code,
                idempotency_key=data.idempotency_key,
                msisdn=None if port_in is not None else data.msisdn,
                port_in=port_in,
                reference=data.reference,
            )
        return _placed(ack, sent)

    @activity.defn(name=names.PROV_SNAIC_GET_ORDER)
    async def snaic_get_order(self, data: SnaicOrderQuery) -> SnaicOrderUpdate:
        async with external_call():
            order = await self._snaic.get_order(data.order_id)
        return SnaicOrderUpdate(
            order_id=order.order_id,
            line_id=order.line_id,
            status=order.status,
            reason=order.reason,
            reference=order.reference,
        )

    @activity.defn(name=names.PROV_SNAIC_GET_LINE)
    async def snaic_get_line(self, data: SnaicLineOrder) -> SnaicLineState:
        async with external_call():
            line = await self._snaic.get_line(data.line_id)
        return SnaicLineState(line_id=line.line_id, status=line.status, offer_code=line.offer_code)

    async def _our_line_ids(self, data: SnaicCancelLine) -> list[str]:
        if data.known_line_id:
            return [data.known_line_id]
        ours: list[str] = []
        for line in await self._snaic.list_lines(iccid=data.iccid):
            if line.status not in LIVE_SNAIC_STATUSES:
                continue
            for offer in line.offers:
                order = await self._snaic.find_order(offer.order_id)
                if order is not None and order.reference == data.create_reference:
                    ours.append(line.line_id)
                    break
        return ours

    @activity.defn(name=names.PROV_SNAIC_CANCEL_LINE)
    async def snaic_cancel_line(self, data: SnaicCancelLine) -> SnaicOrderPlaced:
        """Terminates the line our create order made, if it exists and is not already gone."""
        async with external_call():
            for line_id in await self._our_line_ids(data):
                try:
                    line = await self._snaic.get_line(line_id)
                except NotFoundError:
                    continue
                if line.status == "rejected":
                    continue
                ack = await self._snaic.terminate_line(
                    line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
                return _placed(ack, {"line_id": line_id, "reference": data.reference})
        return SnaicOrderPlaced(order_id="", line_id=data.known_line_id or "", status="nothing_to_do")

    async def _line_order(self, op: str, data: SnaicLineOrder) -> SnaicOrderPlaced:
        sent: dict[str, object] = {"line_id": data.line_id, "reference": data.reference}
        async with external_call():
            if op == "suspend":
                ack = await self._snaic.suspend_line(
                    data.line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
            elif op == "resume":
                ack = await self._snaic.resume_line(
                    data.line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
            elif op == "terminate":
                ack = await self._snaic.terminate_line(
                    data.line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
            else:
                if not data.offer_code:
                    raise ApplicationError("offer_code is required", type="snaic.validation", non_retryable=True)
                sent["offer_code"] = data.offer_code
                ack = await self._snaic.change_offer(
                    data.line_id, data.offer_code, idempotency_key=data.idempotency_key, reference=data.reference
                )
        return _placed(ack, sent)

    @activity.defn(name=names.PROV_SNAIC_SUSPEND)
    async def snaic_suspend_line(self, data: SnaicLineOrder) -> SnaicOrderPlaced:
        return await self._line_order("suspend", data)

    @activity.defn(name=names.PROV_SNAIC_RESUME)
    async def snaic_resume_line(self, data: SnaicLineOrder) -> SnaicOrderPlaced:
        return await self._line_order("resume", data)

    @activity.defn(name=names.PROV_SNAIC_TERMINATE)
    async def snaic_terminate_line(self, data: SnaicLineOrder) -> SnaicOrderPlaced:
        """Terminating a line already terminated (or being terminated) returns that termination order."""
        return await self._line_order("terminate", data)

    @activity.defn(name=names.PROV_SNAIC_CHANGE_OFFER)
    async def snaic_change_offer(self, data: SnaicLineOrder) -> SnaicOrderPlaced:
        return await self._line_order("change_offer", data)

    # --- OCS ---------------------------------------------------------------------------------------

    @activity.defn(name=names.PROV_OCS_CREATE_ACCOUNT)
    async def ocs_create_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        async with external_call():
            await self._ocs.set_account(data.account, disabled=False, allow_negative=False, request_id=data.request_id)
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
            credit = await self._ocs.credit_data_once(
                data.account, data.balance_id, data.value_bytes, data.expiry, data.weight, request_id=data.request_id
            )
        return ExternalCallResult(
            object_id=data.balance_id,
            fetched_existing=not credit.created,
            sent=sent,
            answer={"created": credit.created, "value": credit.balance.value},
        )

    @activity.defn(name=names.PROV_OCS_REMOVE_BALANCE)
    async def ocs_remove_balance(self, data: OcsGrant) -> ExternalCallResult:
        """Removes exactly that balance; one already gone (or an account gone) is a success."""
        async with external_call():
            await self._ocs.remove_balance(data.account, DATA, data.balance_id, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.balance_id,
            sent={"method": "APIerSv1.RemoveBalances", "Account": data.account, "ID": data.balance_id},
        )

    @activity.defn(name=names.PROV_OCS_REMOVE_ACCOUNT)
    async def ocs_remove_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        """Removing an account already gone is a success."""
        async with external_call():
            await self._ocs.remove_account(data.account, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.account, sent={"method": "APIerSv1.RemoveAccount", "Account": data.account}
        )

    @activity.defn(name=names.PROV_OCS_DISABLE_ACCOUNT)
    async def ocs_disable_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        async with external_call():
            await self._ocs.disable_account(data.account, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.account, sent={"method": "APIerSv2.SetAccount", "Account": data.account, "Disabled": True}
        )

    @activity.defn(name=names.PROV_OCS_ENABLE_ACCOUNT)
    async def ocs_enable_account(self, data: OcsAccountRequest) -> ExternalCallResult:
        async with external_call():
            await self._ocs.enable_account(data.account, request_id=data.request_id)
        return ExternalCallResult(
            object_id=data.account, sent={"method": "APIerSv2.SetAccount", "Account": data.account, "Disabled": False}
        )

    @activity.defn(name=names.PROV_OCS_READ_USAGE)
    async def ocs_read_usage(self, data: OcsAccountRequest) -> OcsUsage:
        async with external_call():
            account = await self._ocs.get_account(data.account, request_id=data.request_id)
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

    # --- CFAST -------------------------------------------------------------------------------------

    @activity.defn(name=names.PROV_CFAST_ENSURE_SERVICE)
    async def cfast_ensure_service(self, data: CfastEnsureService) -> ExternalCallResult:
        """Looks the service line up by its label (the MSISDN) first: an active one on our site is
        reused (ids fetched on the fly, seed 003), one on another site is a refusal."""
        sent = data.model_dump(mode="json", exclude={"idempotency_key"})
        async with external_call():
            existing = await self._cfast.find_service_by_label(data.service_label)
            if existing is None or existing.status != "active":
                try:
                    created = await self._cfast.create_service(
                        data.site_id,
                        service_label=data.service_label,
                        last_name=data.last_name,
                        first_name=data.first_name,
                        article_code=data.article_code,
                        article_label=data.article_label,
                        article_periodic_price=data.article_periodic_price,
                        periodic_buy_price=data.periodic_buy_price,
                        start_date=data.start_date,
                        idempotency_key=data.idempotency_key,
                    )
                except ConflictError:
                    existing = await self._cfast.find_service_by_label(data.service_label)
                    if existing is None:
                        raise
                else:
                    return ExternalCallResult(object_id=created.service_id, sent=sent, answer=_service_answer(created))
        if existing.site_id != data.site_id:
            raise ApplicationError(
                f"CFAST service line {data.service_label} is active on another site ({existing.site_id})",
                type="cfast.service_label_in_use",
                non_retryable=True,
            )
        return ExternalCallResult(
            object_id=existing.service_id, fetched_existing=True, sent=sent, answer=_service_answer(existing)
        )

    async def _find_ours(self, data: CfastServiceRef) -> CfastService | None:
        if data.service_id:
            try:
                return await self._cfast.get_service(data.service_id)
            except NotFoundError:
                return None
        found = await self._cfast.find_service_by_label(data.service_label)
        if found is None:
            return None
        matches = (
            (data.site_id is None or found.site_id == data.site_id)
            and (data.article_code is None or found.article_code == data.article_code)
            and (data.start_date is None or found.start_date == data.start_date)
        )
        return found if matches else None

    @activity.defn(name=names.PROV_CFAST_TERMINATE_SERVICE)
    async def cfast_terminate_service(self, data: CfastServiceRef) -> ExternalCallResult:
        """Terminates the service line (with its date); one already terminated, or never created, is left
        as it is."""
        termination_date = data.termination_date or datetime.now(UTC).date()
        sent = {
            "serviceId": data.service_id,
            "serviceLabel": data.service_label,
            "terminationDate": str(termination_date),
        }
        async with external_call():
            service = await self._find_ours(data)
            if service is None:
                return ExternalCallResult(object_id="", sent=sent, answer={"skipped": "no such service"})
            if service.status == "terminated":
                return ExternalCallResult(
                    object_id=service.service_id, fetched_existing=True, sent=sent, answer=_service_answer(service)
                )
            terminated = await self._cfast.terminate_service(
                service.service_id, termination_date=termination_date, idempotency_key=data.idempotency_key
            )
        return ExternalCallResult(object_id=terminated.service_id, sent=sent, answer=_service_answer(terminated))

    @activity.defn(name=names.PROV_CFAST_CHANGE_SUBSCRIPTION)
    async def cfast_change_subscription(self, data: CfastChangeSubscription) -> ExternalCallResult:
        sent = data.model_dump(mode="json", exclude={"idempotency_key"})
        async with external_call():
            current = await self._cfast.get_service(data.service_id)
            if current.article_code == data.article_code:  # already on that subscription: nothing to change
                return ExternalCallResult(
                    object_id=current.service_id, fetched_existing=True, sent=sent, answer=_service_answer(current)
                )
            service = await self._cfast.change_subscription(
                data.service_id,
                article_code=data.article_code,
                article_label=data.article_label,
                article_periodic_price=data.article_periodic_price,
                periodic_buy_price=data.periodic_buy_price,
                start_date=data.start_date,
                idempotency_key=data.idempotency_key,
            )
        return ExternalCallResult(object_id=service.service_id, sent=sent, answer=_service_answer(service))
