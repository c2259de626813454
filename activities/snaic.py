"""SNAIC side effects of top-ups: the one-off option order, reading an order's result, and cancelling the
option of a top-up that is refunded."""

from __future__ import annotations

from temporalio import activity

from activities._errors import external_call
from domain.contracts import (
    ExternalCallResult,
    SnaicOptionCancel,
    SnaicOptionRequest,
    SnaicOrderAccepted,
    SnaicOrderPoll,
    SnaicOrderUpdate,
)
from integrations.snaic import SnaicClient
from workflows import activity_names as names


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
