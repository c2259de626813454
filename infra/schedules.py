"""Temporal Schedules created when a worker starts (idempotent: an existing schedule is left as it is)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

from domain.contracts import AutoTopUpScan
from infra.settings import Settings
from workflows.auto_topup import SCHEDULE_ID, AutoTopUpScanWorkflow


async def ensure_schedules(client: Client, settings: Settings) -> None:
    try:
        await client.create_schedule(
            SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    AutoTopUpScanWorkflow.run, AutoTopUpScan(), id=SCHEDULE_ID, task_queue=settings.task_queue
                ),
                spec=ScheduleSpec(
                    intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.auto_topup_scan_s))]
                ),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                state=ScheduleState(note="Recharges automatiques : lignes sous le seuil de leur règle"),
            ),
        )
    except ScheduleAlreadyRunningError:
        pass
