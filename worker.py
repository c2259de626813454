"""Composition root of the worker: settings → clients → activity instances → Worker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.billing import BillingActivities
from activities.bulk import BulkActivities
from activities.cfast import CfastActivities, CfastBillingActivities
from activities.inventory import InventoryActivities
from activities.ledger import LedgerActivities
from activities.ocs import OcsActivities
from activities.onboarding import FtpDropFolders, OnboardingActivities, OnboardingSettings
from activities.outbox import OutboxActivities
from activities.payments import PaymentActivities
from activities.records import RecordActivities
from activities.rules import RuleActivities
from activities.snaic import SnaicActivities
from activities.subscriptions import SubscriptionActivities
from activities.topups import TopUpActivities
from activities.usage import UsageActivities
from activities.webhooks import AuditActivities, WebhookActivities
from domain.security import MsisdnIndex, SecretBox
from infra.db import create_engine, create_sessionmaker
from infra.logging import configure_logging
from infra.secret_settings import UnsafeSecrets, require_safe_secrets
from infra.settings import Settings, get_settings
from infra.temporal import connect_temporal, precompile_workflow_code
from integrations.cfast import CfastClient
from integrations.ftp import FtpClient
from integrations.mail import SmtpMailer
from integrations.ocs import OcsClient
from integrations.sms import SmsGatewayClient
from integrations.snaic import SnaicClient
from integrations.stripe_gateway import StripeGateway
from integrations.webhooks import WebhookSender
from starters.schedules import ensure_outbox_relay, ensure_schedules
from starters.webhooks import emit_event
from workflows.account_status import AccountStatusImportWorkflow
from workflows.auto_topup import AutoTopUpScanWorkflow
from workflows.billing_run import BillingRunWorkflow, MonthlyBillingWorkflow
from workflows.bulk import BulkOperationWorkflow
from workflows.cfast_customer import CfastCustomerWorkflow
from workflows.deprovisioning import DeprovisioningWorkflow, LineQuarantineWorkflow
from workflows.first_usage import FirstUsageScanWorkflow
from workflows.line_operations import LineOperationWorkflow
from workflows.onboarding import OnboardingWorkflow
from workflows.outbox_relay import OutboxRelayWorkflow
from workflows.renewal_reconciler import RenewalReconcilerWorkflow
from workflows.sim_activation import SimActivationWorkflow
from workflows.subscription import SubscriptionWorkflow
from workflows.topup import TopUpWorkflow
from workflows.wallet_funding import WalletFundingWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = structlog.get_logger()

WORKFLOWS: Sequence[type] = (CfastCustomerWorkflow, TopUpWorkflow, AutoTopUpScanWorkflow)
# SIM lifecycle
WORKFLOWS = (
    *WORKFLOWS,
    SimActivationWorkflow,
    LineOperationWorkflow,
    DeprovisioningWorkflow,
    LineQuarantineWorkflow,
    BulkOperationWorkflow,
)
# Security: outgoing webhook deliveries
WORKFLOWS = (*WORKFLOWS, WebhookDeliveryWorkflow)
# Usage: AccountStatus files, first usage in the OCS
WORKFLOWS = (*WORKFLOWS, AccountStatusImportWorkflow, FirstUsageScanWorkflow)
# Outbox relay: mail (SMTP) and SMS (gateway)
WORKFLOWS = (*WORKFLOWS, OutboxRelayWorkflow)
# Billing: the monthly billing run
WORKFLOWS = (*WORKFLOWS, MonthlyBillingWorkflow, BillingRunWorkflow)
# Wallets: funding by card
WORKFLOWS = (*WORKFLOWS, WalletFundingWorkflow)
# Integrator onboarding (seed 002)
WORKFLOWS = (*WORKFLOWS, OnboardingWorkflow)


def onboarding_settings(settings: Settings) -> OnboardingSettings:
    return OnboardingSettings(
        staff_email=settings.onboarding_staff_email,
        public_base_url=settings.public_base_url,
        secrets_key=settings.secrets_key.get_secret_value(),
        invitation_ttl_s=settings.onboarding_invitation_ttl_s,
    )


# Subscriptions: renewals, reminders and dunning of each line
WORKFLOWS = (*WORKFLOWS, SubscriptionWorkflow, RenewalReconcilerWorkflow)


@asynccontextmanager
async def build_worker(settings: Settings, client: Client) -> AsyncIterator[Worker]:
    require_safe_secrets(settings, "worker")
    async with AsyncExitStack() as stack:
        engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        stack.push_async_callback(engine.dispose)
        sessionmaker = create_sessionmaker(engine)
        timeout = settings.http_timeout_s
        msisdn_index = MsisdnIndex(settings.secrets_key.get_secret_value())
        cfast = await stack.enter_async_context(CfastClient(settings.cfast_url, timeout))
        snaic = await stack.enter_async_context(SnaicClient(settings.snaic_url, timeout))
        ocs = await stack.enter_async_context(OcsClient(settings.ocs_url, settings.ocs_tenant, timeout))
        sms = await stack.enter_async_context(SmsGatewayClient(settings.sms_gateway_url, timeout))
        stripe_gateway = await stack.enter_async_context(
            StripeGateway(settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base, timeout)
        )

        activity_objects: list[Any] = [
            CfastActivities(cfast),
            CfastBillingActivities(cfast),
            RecordActivities(sessionmaker),
            OcsActivities(ocs),
            SnaicActivities(snaic),
            PaymentActivities(stripe_gateway, sessionmaker),
            LedgerActivities(sessionmaker),
            TopUpActivities(sessionmaker, snaic, cfast),
            RuleActivities(
                sessionmaker, ocs, settings.snaic_callback_sla_s, msisdn_index, settings.topup_charge_window_s
            ),
            # SIM lifecycle
            InventoryActivities(sessionmaker, msisdn_index),
            BulkActivities(sessionmaker),
            # Security: audit rows from workflows, outgoing webhooks
            AuditActivities(sessionmaker),
            WebhookActivities(
                sessionmaker,
                WebhookSender(settings.webhook_timeout_s, settings.webhook_allowed_hosts),
                SecretBox(settings.secrets_key.get_secret_value()),
                settings,
                emit_event,
            ),
            # Usage: AccountStatus files, first usage in the OCS, first-usage events
            UsageActivities(sessionmaker, ocs, settings, emit_event),
            # Outbox relay: mail and SMS
            OutboxActivities(
                sessionmaker,
                SmtpMailer(
                    settings.smtp_host,
                    settings.smtp_port,
                    security=settings.smtp_security,
                    username=settings.smtp_username,
                    password=settings.smtp_password.get_secret_value(),
                    timeout_s=settings.smtp_timeout_s,
                ),
                sms,
                settings,
            ),
            # Billing: the monthly billing run
            BillingActivities(sessionmaker),
            # Integrator onboarding: dossier checks and FTP folders from domain.onboarding_dossier, integrations.ftp
            OnboardingActivities(
                sessionmaker,
                stripe_gateway,
                onboarding_settings(settings),
                FtpDropFolders(
                    FtpClient(
                        settings.ftp_host,
                        settings.ftp_port,
                        settings.ftp_username,
                        settings.ftp_password.get_secret_value(),
                        timeout_s=settings.ftp_timeout_s,
                    )
                ),
            ),
            # Subscriptions: renewals
            SubscriptionActivities(sessionmaker, stripe_gateway, cfast, msisdn_index),
        ]
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
            # On SIGTERM the worker stops polling and lets running activities finish (a charge, a SNAIC order)
            # for this long, a little under the orchestrator's stop grace period; only then are they cancelled.
            graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_s),
        )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    require_safe_secrets(settings, "worker")  # before connecting to anything
    client = await connect_temporal(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await ensure_schedules(client, settings)
    await ensure_outbox_relay(client, settings)
    if not precompile_workflow_code("workflows"):
        log.warning("worker.workflow_code_not_precompiled")
    async with build_worker(settings, client) as worker:
        log.info("worker.started", task_queue=settings.task_queue, temporal=settings.temporal_address)
        async with worker:
            await stop.wait()
            log.info("worker.stopping", graceful_shutdown_s=settings.worker_graceful_shutdown_s)
            await worker.shutdown()  # waits for running activities, up to graceful_shutdown_timeout
    log.info("worker.stopped")


def main() -> None:
    """`python worker.py` and `simflow worker`: exits with the list of unsafe secrets, if any."""
    configure_logging()
    settings = get_settings()
    try:
        require_safe_secrets(settings, "worker")
    except UnsafeSecrets as refused:
        raise SystemExit(str(refused)) from None
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
