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
