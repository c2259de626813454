"""Composition root of the worker: settings → clients → activity instances → Worker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.cfast import CfastActivities
from activities.records import RecordActivities
from infra.db import create_engine, create_sessionmaker
from infra.logging import configure_logging
from infra.settings import Settings, get_settings
from infra.temporal import connect_temporal
from integrations.cfast import CfastClient
from workflows.cfast_customer import CfastCustomerWorkflow

log = structlog.get_logger()

WORKFLOWS: Sequence[type] = (CfastCustomerWorkflow,)


@asynccontextmanager
async def build_worker(settings: Settings, client: Client) -> AsyncIterator[Worker]:
    async with AsyncExitStack() as stack:
        engine = create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        sessionmaker = create_sessionmaker(engine)
        cfast = await stack.enter_async_context(CfastClient(settings.cfast_url, settings.http_timeout_s))

        activity_objects: list[Any] = [CfastActivities(cfast), RecordActivities(sessionmaker)]
        activities = [
            getattr(obj, name)
            for obj in activity_objects
            for name in dir(obj)
            if hasattr(getattr(obj, name), "__temporal_activity_definition")
        ]
        yield Worker(
            client,
            task_queue=settings.task_queue,
            workflows=list(WORKFLOWS),
            activities=activities,
            max_concurrent_activities=200,
            max_concurrent_workflow_tasks=100,
        )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    client = await connect_temporal(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(settings, client) as worker:
        log.info("worker.started", task_queue=settings.task_queue, temporal=settings.temporal_address)
        async with worker:
            await stop.wait()
    log.info("worker.stopped")


def main() -> None:
    configure_logging()
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
