"""The worker of the benchmark's baselines (bench/baseline_workflows.py), on its own process and task queue,
against the same Temporal server and simulators as the product. The minimal top-up's activities use clients
and a database engine built once for the process, as the product's worker does.

    python -m bench.bare  (reads the same settings as the worker: SIMFLOW_*, TEMPORAL_ADDRESS)
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.worker import Worker

from bench import baseline_workflows as baseline
from domain.contracts import snaic_reference
from domain.enums import ExternalSystem, MajStatus
from domain.models import UpdateRecord
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings, get_settings
from infra.temporal import connect_temporal, precompile_workflow_code
from integrations.cfast import CfastClient
from integrations.ocs import OcsClient
from integrations.snaic import SnaicClient
from integrations.stripe_gateway import StripeGateway

TASK_QUEUE = "simflow-bench-bare"


@activity.defn(name=baseline.NOOP)
async def noop(step: int) -> int:
    return step


class MinimalActivities:
    """The minimal top-up's calls: keys from the workflow id, as the top-up derives its own."""

    def __init__(
        self,
        stripe: StripeGateway,
        ocs: OcsClient,
        snaic: SnaicClient,
        cfast: CfastClient,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self._stripe, self._ocs, self._snaic, self._cfast = stripe, ocs, snaic, cfast
        self._sessionmaker = sessionmaker

    @staticmethod
    def _wf() -> str:
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None  # always run by the minimal workflow
        return workflow_id

    @activity.defn(name=baseline.CHARGE)
    async def charge_card(self, step: baseline.MinimalStep) -> str:
        data = step.data
        result = await self._stripe.charge_off_session(
            data.stripe_customer_id,
            data.stripe_payment_method_id,
            data.amount_minor,
            "EUR",
            f"{self._wf()}:charge",
            {"bench_minimal": self._wf()},
        )
        return result.payment_intent_id

    @activity.defn(name=baseline.OCS_CREDIT)
    async def ocs_credit(self, step: baseline.MinimalStep) -> str:
        balance_id = f"minimal-{self._wf()}"
        await self._ocs.credit_data_once(
            step.data.ocs_account,
            balance_id,
            step.data.data_bytes,
            datetime.now(UTC) + timedelta(days=30),
            10.0,
            request_id=f"{self._wf()}:ocs-credit",
        )
        return balance_id

    @activity.defn(name=baseline.SNAIC_OPTION)
    async def snaic_option(self, step: baseline.MinimalStep) -> str:
        ack = await self._snaic.add_one_off_option(
            step.data.snaic_line_id,
            option_code="RECHARGE_DATA_1GO",
            quantity=1,
            reference=snaic_reference(self._wf(), "one-off-option"),
            idempotency_key=f"{self._wf()}:snaic-option",
        )
        return ack.order_id

    @activity.defn(name=baseline.SNAIC_ORDER)
    async def snaic_order(self, step: baseline.MinimalStep) -> str:
        return (await self._snaic.get_order(step.order_id)).status

    @activity.defn(name=baseline.CFAST_ARTICLE)
    async def cfast_article(self, step: baseline.MinimalStep) -> str:
        article = await self._cfast.add_one_off_article(
            step.data.cfast_service_id,
            article_code="RECHARGE_DATA_1GO",
            label="Recharge DATA 1Go (référence du banc)",
            quantity=1,
            unit_price=0,
            reference=f"minimal:{self._wf()}",
            idempotency_key=f"{self._wf()}:cfast-article",
        )
        return article.article_line_id

    @activity.defn(name=baseline.RECORD)
    async def record(self, step: baseline.MinimalStep) -> None:
        async with self._sessionmaker.begin() as session:
            session.add(
                UpdateRecord(
                    org_id=step.data.org_id,
                    line_id=step.data.line_id,
                    workflow_id=self._wf(),
                    reference=f"{self._wf()}:minimal",
                    system=ExternalSystem.CFAST,
                    operation="minimal_topup",
                    status=MajStatus.OK,
                )
            )


async def minimal_activities(settings: Settings, stack: AsyncExitStack) -> MinimalActivities:
    engine = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    stack.push_async_callback(engine.dispose)
    timeout = settings.http_timeout_s
    return MinimalActivities(
        await stack.enter_async_context(
            StripeGateway(settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base, timeout)
        ),
        await stack.enter_async_context(OcsClient(settings.ocs_url, settings.ocs_tenant, timeout)),
        await stack.enter_async_context(SnaicClient(settings.snaic_url, timeout)),
        await stack.enter_async_context(CfastClient(settings.cfast_url, timeout)),
        create_sessionmaker(engine),
    )


async def run_worker() -> None:
    settings = get_settings()
    client = await connect_temporal(settings)
    precompile_workflow_code("bench")  # as the product's worker does, so the comparison stays fair
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        calls = await minimal_activities(settings, stack)
        async with Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[baseline.BareWorkflow, baseline.MinimalTopUpWorkflow],
            activities=[
                noop,
                calls.charge_card,
                calls.ocs_credit,
                calls.snaic_option,
                calls.snaic_order,
                calls.cfast_article,
                calls.record,
            ],
            max_concurrent_activities=200,
            max_concurrent_workflow_tasks=100,
        ):
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(run_worker())
