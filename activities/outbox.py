"""The outbox relay's one activity: a pass over the outboxes, each row claimed, sent, then marked.

Per row: claim (its own transaction) → build the message (attachment resolved) → send → mark sent (its
own transaction, only while the claim is ours). A permanent refusal (5xx, no recipient, unknown attachment)
marks the row failed and the pass goes on. A passing failure (server down, 4xx, timeout) gives the row back
and fails the activity, retryable: Temporal retries the pass with the relay's backoff, durably, for as long
as it takes; nothing is marked failed for an outage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from domain.models import SimMessage
from domain.outbox_contracts import OutboxBatch, OutboxBatchResult
from domain.services import outbox
from infra.settings import Settings
from integrations.errors import IntegrationError
from integrations.mail import SmtpMailer
from integrations.sms import SmsGatewayClient
from workflows import activity_names as names

log = structlog.get_logger()


@translates_errors
class OutboxActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        mailer: SmtpMailer,
        sms: SmsGatewayClient,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._mailer = mailer
        self._sms = sms
        self._sender = settings.mail_sender
        self._sms_sender = settings.sms_sender

    @activity.defn(name=names.OUTBOX_RELAY_BATCH)
    async def relay_batch(self, data: OutboxBatch) -> OutboxBatchResult:
        sent = failed = 0
        more = False
        lease = timedelta(seconds=data.lease_s)
        for table, model in outbox.OUTBOX_MODELS.items():
            async with self._sessionmaker() as session:
                ids = await outbox.claimable_ids(session, model, data.limit, datetime.now(UTC))
            more = more or len(ids) >= data.limit
            for row_id in ids:
                outcome = await self._relay_one(table, model, row_id, lease)
                sent += outcome == "sent"
                failed += outcome == "failed"
                activity.heartbeat(f"{table}:{row_id}")
        return OutboxBatchResult(sent=sent, failed=failed, more=more)

    async def _relay_one(self, table: str, model: type[Any], row_id: int, lease: timedelta) -> str:
        token = outbox.new_claim_token()
        async with self._sessionmaker.begin() as session:
            if not await outbox.claim(session, model, row_id, token, datetime.now(UTC), lease):
                return "taken"  # another relay holds it, or it was just sent
        try:
            async with self._sessionmaker() as session:
                row = await session.get(model, row_id)
                assert row is not None
                if isinstance(row, SimMessage):
                    to = await outbox.sms_recipient(session, row)
                    await self._sms.send(
                        to=to, text=row.text, sender=self._sms_sender, idempotency_key=f"outbox:{table}:{row_id}"
                    )
                else:
                    message = await outbox.build_mail(session, row, self._sender)
                    await self._mailer.send(message)
        except (outbox.PermanentFailure, IntegrationError) as err:
            reason = err.message if isinstance(err, IntegrationError) else str(err)
            if isinstance(err, IntegrationError) and err.retryable:
                async with self._sessionmaker.begin() as session:
                    await outbox.release(session, model, row_id, token, reason)
                log.warning("outbox.send_deferred", table=table, row_id=row_id, error=reason)
                raise  # `{system}.unavailable`, retried (activities._errors)
            async with self._sessionmaker.begin() as session:
                await outbox.mark_failed(session, model, row_id, token, datetime.now(UTC), reason)
            log.warning("outbox.send_refused", table=table, row_id=row_id, error=reason)
            return "failed"
        except Exception as err:  # a bug or the database: the row is given back, the pass is retried
            async with self._sessionmaker.begin() as session:
                await outbox.release(session, model, row_id, token, f"{type(err).__name__}: {err}")
            raise
        async with self._sessionmaker.begin() as session:
            await outbox.mark_sent(session, model, row_id, token, datetime.now(UTC))
        return "sent"
