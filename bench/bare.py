"""The benchmark's baseline: a bare Temporal workflow running no-op activities in sequence (`regular` ones,
and `local` ones interleaved, to match a top-up's mix), on its own worker process and task queue, against
the same Temporal server as the product.

    python -m bench.bare  (reads TEMPORAL_ADDRESS / SIMFLOW_TEMPORAL_NAMESPACE like the worker)
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.worker import Worker

from infra.settings import get_settings
from infra.temporal import connect_temporal, precompile_workflow_code

TASK_QUEUE = "simflow-bench-bare"


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, regular: int, local: int = 0) -> int:
        total = regular + local
        for step in range(total):
            # Spread the local activities evenly among the regular ones.
            if local and (step * local) // total != ((step + 1) * local) // total:
                await workflow.execute_local_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))
            else:
                await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))
        return total


async def run_worker() -> None:
    client = await connect_temporal(get_settings())
    precompile_workflow_code("bench")  # as the product's worker does, so the comparison stays fair
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[BareWorkflow],
        activities=[noop],
        max_concurrent_activities=200,
        max_concurrent_workflow_tasks=100,
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(run_worker())
