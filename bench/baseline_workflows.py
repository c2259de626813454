"""The benchmark's baseline workflows; their activities and worker live in `bench.bare`.

- `BareWorkflow`: no-op activities in sequence (`regular` ones, and `local` ones interleaved, to match a
  top-up's mix).
- `MinimalTopUpWorkflow`: only what a card top-up must do outside our database — the card charge (Stripe,
  through the fault proxy), the OCS data credit, the SNAIC one-off option and its order answer (the signed
  callback routed by the API, polling as fallback, like the top-up), the CFAST article — plus one local
  database write.

Kept apart from the activities so that the workflow sandbox, which imports this module afresh for every
run, loads no database or HTTP code: the product's workflow modules follow the same rule."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.contracts import SNAIC_ORDER_SIGNAL, Contract, SnaicOrderUpdate

TIMEOUT = timedelta(seconds=30)
NOOP = "bench.noop"
CHARGE = "bench.minimal.charge_card"
OCS_CREDIT = "bench.minimal.ocs_credit"
SNAIC_OPTION = "bench.minimal.snaic_option"
SNAIC_ORDER = "bench.minimal.snaic_order"
CFAST_ARTICLE = "bench.minimal.cfast_article"
RECORD = "bench.minimal.record"


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, regular: int, local: int = 0) -> int:
        total = regular + local
        for step in range(total):
            # Spread the local activities evenly among the regular ones.
            if local and (step * local) // total != ((step + 1) * local) // total:
                await workflow.execute_local_activity(NOOP, step, start_to_close_timeout=TIMEOUT)
            else:
                await workflow.execute_activity(NOOP, step, start_to_close_timeout=TIMEOUT)
        return total


class MinimalTopUp(Contract):
    """What the four calls need, resolved by the bench beforehand (the top-up resolves it in an activity)."""

    org_id: str
    line_id: str
    stripe_customer_id: str
    stripe_payment_method_id: str
    ocs_account: str
    snaic_line_id: str
    cfast_service_id: str
    amount_minor: int = 50
    data_bytes: int = 1_073_741_824
    snaic_callback_sla_s: int = 60


class MinimalStep(Contract):
    """An activity's input: the run's data, and the SNAIC order once there is one."""

    data: MinimalTopUp
    order_id: str = ""


@workflow.defn(name="MinimalTopUpWorkflow")
class MinimalTopUpWorkflow:
    def __init__(self) -> None:
        self.order: SnaicOrderUpdate | None = None

    @workflow.signal(name=SNAIC_ORDER_SIGNAL)
    def order_update(self, update: SnaicOrderUpdate) -> None:
        self.order = update

    @workflow.run
    async def run(self, data: MinimalTopUp) -> str:
        step = MinimalStep(data=data)
        await workflow.execute_activity(CHARGE, step, result_type=str, start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(OCS_CREDIT, step, result_type=str, start_to_close_timeout=TIMEOUT)
        order_id = await workflow.execute_activity(SNAIC_OPTION, step, result_type=str, start_to_close_timeout=TIMEOUT)
        status = await self._order_answer(MinimalStep(data=data, order_id=order_id))
        await workflow.execute_activity(CFAST_ARTICLE, step, result_type=str, start_to_close_timeout=TIMEOUT)
        await workflow.execute_local_activity(RECORD, step, start_to_close_timeout=TIMEOUT)
        return status

    async def _order_answer(self, step: MinimalStep) -> str:
        poll_every = max(timedelta(seconds=step.data.snaic_callback_sla_s) / 5, timedelta(seconds=1))
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self.order is not None and self.order.status != "pending", timeout=poll_every
                )
            except TimeoutError:
                polled: str = await workflow.execute_activity(
                    SNAIC_ORDER, step, result_type=str, start_to_close_timeout=TIMEOUT
                )
                if polled != "pending":
                    return polled
            else:
                assert self.order is not None
                return self.order.status
