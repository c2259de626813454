"""Starting the subscription workflow of a line from the API and the portal (`renew now`, the auto-renew
switch on a line the daily reconciler has not reached yet): the same start as the reconciler's."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client

from activities.subscriptions import start_subscription_workflow
from domain.models import Line, Pool
from domain.subscription_contracts import SubscriptionInput
from infra.settings import Settings


async def start_pool_subscription(client: Client, settings: Settings, pool: Pool) -> str:
    """Starts the pool's subscription workflow (`subscription/{org}/pool-{pool}`), or joins the running one."""
    return await start_subscription_workflow(
        client,
        settings.task_queue,
        SubscriptionInput(org_id=pool.org_id, company_id=pool.company_id, pool_id=pool.id),
        msisdn_hash=None,
    )


async def start_subscription(
    client: Client, settings: Settings, line: Line, iccid: str | None, *, start_delay: timedelta | None = None
) -> str:
    """Starts the line's subscription workflow, or joins the running one."""
    return await start_subscription_workflow(
        client,
        settings.task_queue,
        SubscriptionInput(org_id=line.org_id, company_id=line.company_id, line_id=line.id, iccid=iccid),
        msisdn_hash=settings.msisdn_hash(line.msisdn),
        start_delay=start_delay,
    )
