"""Temporal Schedules created when a worker starts (idempotent: an existing schedule is left as it is), and the
outbox relay, a long-running workflow started the same way (an existing run is left as it is)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from domain.billing_contracts import BillingScan
from domain.contracts import AutoTopUpScan
from domain.outbox_contracts import OutboxRelay
from domain.subscription_contracts import ReconcileScan
from domain.usage_contracts import FirstUsageScan
from infra.settings import Settings
from workflows.auto_topup import SCHEDULE_ID, AutoTopUpScanWorkflow
from workflows.billing_run import SCHEDULE_ID as BILLING_SCHEDULE_ID
from workflows.billing_run import MonthlyBillingWorkflow
from workflows.first_usage import SCHEDULE_ID as FIRST_USAGE_SCHEDULE_ID
from workflows.first_usage import FirstUsageScanWorkflow
from workflows.outbox_relay import WORKFLOW_ID as OUTBOX_RELAY_ID
from workflows.outbox_relay import OutboxRelayWorkflow
from workflows.renewal_reconciler import SCHEDULE_ID as RENEWAL_RECONCILER_ID
from workflows.renewal_reconciler import RenewalReconcilerWorkflow


def product_schedules(settings: Settings) -> dict[str, Schedule]:
    """Every Schedule the product runs, by id."""

    def every(seconds: float) -> ScheduleSpec:
        return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))])

    def schedule(action: ScheduleActionStartWorkflow, spec: ScheduleSpec, note: str) -> Schedule:
        return Schedule(
            action=action,
            spec=spec,
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note=note),
        )

    queue = settings.task_queue
    return {
        SCHEDULE_ID: schedule(
            ScheduleActionStartWorkflow(AutoTopUpScanWorkflow.run, AutoTopUpScan(), id=SCHEDULE_ID, task_queue=queue),
            every(settings.auto_topup_scan_s),
            "Recharges automatiques : lignes sous le seuil de leur règle",
        ),
        FIRST_USAGE_SCHEDULE_ID: schedule(
            ScheduleActionStartWorkflow(
                FirstUsageScanWorkflow.run, FirstUsageScan(), id=FIRST_USAGE_SCHEDULE_ID, task_queue=queue
            ),
            every(settings.first_usage_scan_s),
            "Première utilisation : SIM prêtes à l'activation lues dans l'OCS",
        ),
        BILLING_SCHEDULE_ID: schedule(
            ScheduleActionStartWorkflow(
                MonthlyBillingWorkflow.run, BillingScan(), id=BILLING_SCHEDULE_ID, task_queue=queue
            ),
            # The 1st of each month at 02:00 UTC bills the month just ended, once per organisation.
            ScheduleSpec(
                calendars=[
                    ScheduleCalendarSpec(
                        day_of_month=[ScheduleRange(1)], hour=[ScheduleRange(2)], minute=[ScheduleRange(0)]
                    )
                ]
            ),
            "Facturation mensuelle : une facture par entreprise et par mois",
        ),
        # Every renewing line gets its subscription workflow, orphans are reported.
        RENEWAL_RECONCILER_ID: schedule(
            ScheduleActionStartWorkflow(
                RenewalReconcilerWorkflow.run,
                ReconcileScan(task_queue=queue),
                id=RENEWAL_RECONCILER_ID,
                task_queue=queue,
            ),
            every(settings.renewal_reconcile_s),
            "Renouvellements : un workflow par abonnement, orphelins signalés",
        ),
    }


SCHEDULE_IDS = (SCHEDULE_ID, FIRST_USAGE_SCHEDULE_ID, BILLING_SCHEDULE_ID, RENEWAL_RECONCILER_ID)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    for schedule_id, schedule in product_schedules(settings).items():
        await _create_unless_present(client, schedule_id, schedule)


async def ensure_renewal_reconciler(client: Client, settings: Settings) -> None:
    await _create_unless_present(client, RENEWAL_RECONCILER_ID, product_schedules(settings)[RENEWAL_RECONCILER_ID])


async def _create_unless_present(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Idempotent: an existing schedule is left as it is (each worker replica calls this at start)."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        pass


async def ensure_outbox_relay(client: Client, settings: Settings) -> None:
    """Starts `outbox-relay` unless it runs already (every worker calls this at start: one relay runs)."""
    await client.start_workflow(
        OutboxRelayWorkflow.run,
        OutboxRelay(
            batch_size=settings.outbox_batch_size, lease_s=settings.outbox_lease_s, poll_s=settings.outbox_poll_s
        ),
        id=OUTBOX_RELAY_ID,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
