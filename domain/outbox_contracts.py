"""Inputs and results of the outbox relay (workflows/outbox_relay.py, activities/outbox.py). Frozen pydantic
models; new fields always get defaults so that running histories still decode."""

from __future__ import annotations

from domain.contracts import Contract


class OutboxRelay(Contract):
    """The relay's loop: a pass of at most `batch_size` rows per outbox, then a pause of `poll_s` when the
    outboxes are drained. `stop_when_idle` ends the workflow at the first drained pass (one-shot runs, tests);
    the totals carry over a continue-as-new."""

    batch_size: int = 50
    lease_s: int = 300
    poll_s: float = 5.0
    stop_when_idle: bool = False
    sent: int = 0
    failed: int = 0


class OutboxBatch(Contract):
    limit: int = 50
    lease_s: int = 300


class OutboxBatchResult(Contract):
    sent: int = 0
    failed: int = 0  # refused for good (invalid recipient, unknown attachment…): marked failed, never retried
    more: bool = False  # a full page was taken: call again at once


class OutboxRelayResult(Contract):
    sent: int = 0
    failed: int = 0
