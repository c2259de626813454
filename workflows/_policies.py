"""Timeouts and retry policies of every activity call, named in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Calls to an external system: retried with backoff on transient failures; a rejection is final.
EXTERNAL_CALL_TIMEOUT = timedelta(seconds=30)
EXTERNAL_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)

# Our own database: short, retried until it works (a lost write is never acceptable).
DATABASE_TIMEOUT = timedelta(seconds=15)
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)

# Compensations must eventually succeed: unlimited attempts, capped backoff.
COMPENSATION_TIMEOUT = timedelta(seconds=30)
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)

# A charge whose outcome is unknown is retried with the same idempotency key (which makes every retry safe)
# for the top-up's charge window (`TopUpInput.charge_window_s`, from settings, 10 minutes by default); then
# the refund settles it.
CHARGE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)

# A renewal's charge retries as long (same key, so never twice): a PSP that is down or overloaded for an hour
# delays the renewal, it does not end the subscription workflow. Within Stripe's 24 h key retention.
RENEWAL_CHARGE_WINDOW = timedelta(hours=6)

# Refunds and removal of a credited balance: retried for a while, then the top-up needs attention.
REFUND_SCHEDULE_TO_CLOSE = timedelta(minutes=5)
REFUND_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)

# Outgoing webhooks: each attempt bounded, retried with backoff (30 s, ×2, capped at 6 h) for 3 days.
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(seconds=30)
WEBHOOK_DELIVERY_WINDOW = timedelta(days=3)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=6),
    non_retryable_error_types=["webhook.target_rejected", "webhook.endpoint_gone"],
)

# Long passes over many rows (an AccountStatus file, the first-usage scan): chunked, heartbeating after every
# chunk or SIM, so a lost worker is noticed within the heartbeat timeout and the pass resumes where it was.
BATCH_TIMEOUT = timedelta(minutes=30)
BATCH_HEARTBEAT_TIMEOUT = timedelta(minutes=2)

# The outbox relay's pass: each send bounded by the SMTP timeout, a heartbeat per row; an outage is retried
# without end (capped at one minute between passes), a permanent refusal is marked on the row instead.
OUTBOX_PASS_TIMEOUT = timedelta(minutes=10)
OUTBOX_HEARTBEAT_TIMEOUT = timedelta(minutes=2)
OUTBOX_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
