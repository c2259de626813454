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
from domain.usage_contracts import FirstUsageScan
from infra.settings import Settings
from workflows.auto_topup import SCHEDULE_ID, AutoTopUpScanWorkflow
from workflows.first_usage import SCHEDULE_ID as FIRST_USAGE_SCHEDULE_ID
from workflows.first_usage import FirstUsageScanWorkflow


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
    try:
        await client.create_schedule(
            FIRST_USAGE_SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    FirstUsageScanWorkflow.run,
                    FirstUsageScan(),
                    id=FIRST_USAGE_SCHEDULE_ID,
                    task_queue=settings.task_queue,
                ),
                spec=ScheduleSpec(
                    intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.first_usage_scan_s))]
                ),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                state=ScheduleState(note="Première utilisation : SIM prêtes à l'activation lues dans l'OCS"),
            ),
        )
    except ScheduleAlreadyRunningError:
        pass
