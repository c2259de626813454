"""SNAIC side effects: lines of the SIM lifecycle (create, suspend, resume, change offer, terminate, cancel
the line a failed activation created), the one-off option of a top-up and its cancellation, and reading an
order's result. One activity per SNAIC call, each idempotent (the step's idempotency key)."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import external_call, translates_errors
from domain.contracts import (
    ExternalCallResult,
    SnaicOptionCancel,
    SnaicOptionRequest,
    SnaicOrderAccepted,
    SnaicOrderPoll,
    SnaicOrderUpdate,
)
from domain.enums import SnaicOrderStatus
from domain.errors import ErrorCode
from domain.lifecycle_contracts import (
    SnaicCancelLine,
    SnaicCreateLine,
    SnaicLineOrder,
    SnaicLineState,
    SnaicOrderPlaced,
    SnaicOrderQuery,
)
from integrations.errors import NotFoundError
from integrations.snaic import PortIn, SnaicClient, SnaicOrderAck
from workflows import activity_names as names

LIVE_SNAIC_STATUSES = ("pending", "active", "suspended")  # integrations.snaic types the line statuses


def _placed(ack: SnaicOrderAck, sent: dict[str, object]) -> SnaicOrderPlaced:
    return SnaicOrderPlaced(
        order_id=ack.order_id, line_id=ack.line_id, status=ack.status, sent=dict(sent), answer=ack.model_dump()
    )


@translates_errors
class SnaicActivities:
    def __init__(self, client: SnaicClient) -> None:
        self._client = client

    @activity.defn(name=names.SNAIC_ADD_ONE_OFF_OPTION)
    async def add_one_off_option(self, data: SnaicOptionRequest) -> SnaicOrderAccepted:
        async with external_call():
            ack = await self._client.add_one_off_option(
                data.snaic_line_id,
                option_code=data.option_code,
                quantity=data.quantity,
                reference=data.reference,
                idempotency_key=data.idempotency_key,
            )
        return SnaicOrderAccepted(
            order_id=ack.order_id,
            status=ack.status,
            sent=data.model_dump(exclude={"idempotency_key"}),
            answer=ack.model_dump(mode="json"),
        )

    @activity.defn(name=names.SNAIC_GET_ORDER)
    async def get_order(self, data: SnaicOrderPoll) -> SnaicOrderUpdate:
        async with external_call():
            order = await self._client.get_order(data.order_id)
        return SnaicOrderUpdate(
            order_id=order.order_id,
            line_id=order.line_id,
            status=order.status,
            reason=order.reason,
            reference=order.reference,
        )

    @activity.defn(name=names.PROV_SNAIC_GET_ORDER)
    async def get_order_under_old_name(self, data: SnaicOrderQuery) -> SnaicOrderUpdate:
        """`get_order` under its name of before the saga kit, for runs started then (docs/decisions.md)."""
        return await self.get_order(SnaicOrderPoll(order_id=data.order_id))

    @activity.defn(name=names.SNAIC_CANCEL_ONE_OFF_OPTION)
    async def cancel_one_off_option(self, data: SnaicOptionCancel) -> ExternalCallResult:
        """Compensation: the option ordered under `reference` gives no data; a no-op when SNAIC has none."""
        async with external_call():
            option = await self._client.cancel_one_off_option(
                data.snaic_line_id, reference=data.reference, idempotency_key=data.idempotency_key
            )
        return ExternalCallResult(
            object_id=option.order_id if option is not None else "",
            sent=data.model_dump(exclude={"idempotency_key"}),
            answer=option.model_dump(mode="json") if option is not None else {"option": None},
        )

    # --- lines of the SIM lifecycle -------------------------------------------------------------

    @activity.defn(name=names.PROV_SNAIC_CREATE_LINE)
    async def snaic_create_line(self, data: SnaicCreateLine) -> SnaicOrderPlaced:
        port_in = PortIn(msisdn=data.msisdn, rio=data.port_in_rio) if data.port_in_rio else None
        sent: dict[str, object] = {"iccid": data.iccid, "offer_code": data.offer_code, "reference": data.reference}
        if port_in is not None:
            sent["port_in"] = {"msisdn": data.msisdn, "rio": "***"}
        else:
            sent["msisdn"] = data.msisdn
        async with external_call():
            ack = await self._client.create_line(
                iccid=data.iccid,
                offer_code=data.offer_code,
                idempotency_key=data.idempotency_key,
                msisdn=None if port_in is not None else data.msisdn,
                port_in=port_in,
                reference=data.reference,
            )
        return _placed(ack, sent)

    @activity.defn(name=names.PROV_SNAIC_GET_LINE)
    async def snaic_get_line(self, data: SnaicLineOrder) -> SnaicLineState:
        async with external_call():
            line = await self._client.get_line(data.line_id)
        return SnaicLineState(line_id=line.line_id, status=line.status, offer_code=line.offer_code)

    async def _our_line_ids(self, data: SnaicCancelLine) -> list[str]:
        if data.known_line_id:
            return [data.known_line_id]
        ours: list[str] = []
        for line in await self._client.list_lines(iccid=data.iccid):
            if line.status not in LIVE_SNAIC_STATUSES:
                continue
            for offer in line.offers:
                order = await self._client.find_order(offer.order_id)
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
                    line = await self._client.get_line(line_id)
                except NotFoundError:
                    continue
                if line.status == "rejected":
                    continue
                ack = await self._client.terminate_line(
                    line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
                return _placed(ack, {"line_id": line_id, "reference": data.reference})
        return SnaicOrderPlaced(order_id="", line_id=data.known_line_id or "", status=SnaicOrderStatus.NOTHING_TO_DO)

    async def _line_order(self, op: str, data: SnaicLineOrder) -> SnaicOrderPlaced:
        sent: dict[str, object] = {"line_id": data.line_id, "reference": data.reference}
        async with external_call():
            if op == "suspend":
                ack = await self._client.suspend_line(
                    data.line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
            elif op == "resume":
                ack = await self._client.resume_line(
                    data.line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
            elif op == "terminate":
                ack = await self._client.terminate_line(
                    data.line_id, idempotency_key=data.idempotency_key, reference=data.reference
                )
            else:
                if not data.offer_code:
                    raise ApplicationError(
                        "offer_code is required", type=ErrorCode.SNAIC_OFFER_CODE_REQUIRED, non_retryable=True
                    )
                sent["offer_code"] = data.offer_code
                ack = await self._client.change_offer(
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
