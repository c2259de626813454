"""Outgoing webhooks (seed 000 "WEBHOOKS"): the event catalogue, the `echo` validation payload and the
signatures. Pure functions, no I/O.

Every delivery carries two signatures over the per-endpoint signing secret (`whsec_…`, stored encrypted):

- the seed's header, for compatibility: `X-Webhook-Hash: SHA256("{secret}:{timestamp}")` with
  `X-Webhook-Timestamp: {timestamp}` (UNIX seconds). It does not cover the body;
- `X-Webhook-Signature: t={timestamp},v1={HMAC-SHA256(secret, "{timestamp}.{body}")}` — one `v1` per
  active secret during a rotation. Receivers should check this one (`verify_signature`), on the raw body,
  within 5 minutes either way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

ECHO = "echo"
ECHO_DATA_MAX = 50

EVENT_TYPES: tuple[str, ...] = (
    "company.added",
    "company.deleted",
    "company.updated",
    "company.staff.added",
    "company.staff.deleted",
    "company.staff.updated",
    "end_user.added",
    "end_user.deleted",
    "end_user.updated",
    "sim_card.assigned_to_end_user",
    "sim_card.first_usage",
    "payment.created",
    "rule.sim_card.current_usage.triggered",
    "rule.sim_card.status.changed",
    "rule.sim_card.remaining_usage.triggered",
    "rule.sim_card.imei.changed",
    "rule.sim_card.date.triggered",
    "rule.pool.usage.triggered",
    "rule.company.wallet.triggered",
)
ALL_EVENTS = "*"

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
HASH_HEADER = "X-Webhook-Hash"
SIGNATURE_HEADER = "X-Webhook-Signature"
EVENT_ID_HEADER = "X-Webhook-Id"
EVENT_TYPE_HEADER = "X-Webhook-Event"
TOLERANCE_S = 300
MAX_HEADER_LENGTH = 4096


class SignatureError(ValueError):
    """A malformed signature header."""


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def subscribed(events: Iterable[str], event_type: str) -> bool:
    events = list(events)
    return ALL_EVENTS in events or event_type in events


def seed_hash(secret: str, timestamp: int) -> str:
    """The seed's header value: SHA256 of `api_secret:timestamp` (hex)."""
    return hashlib.sha256(f"{secret}:{timestamp}".encode()).hexdigest()


def hmac_signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_headers(body: bytes, secrets_: list[str], timestamp: int) -> dict[str, str]:
    """Headers for a delivery signed with the current secret first, then any secret still in rotation."""
    if not secrets_:
        raise ValueError("at least one signing secret is needed")
    v1 = ",".join(f"v1={hmac_signature(s, timestamp, body)}" for s in secrets_)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        HASH_HEADER: seed_hash(secrets_[0], timestamp),
        SIGNATURE_HEADER: f"t={timestamp},{v1}",
    }


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """`t=<unix>,v1=<hex>[,v1=<hex>…]` → (t, [v1…]). Raises SignatureError, and only that."""
    if not isinstance(value, str) or not value or len(value) > MAX_HEADER_LENGTH:
        raise SignatureError("missing or oversized signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed element {part[:20]!r}")
        if key == "t":
            if timestamp is not None or not item.isascii() or not item.isdigit() or len(item) > 12:
                raise SignatureError("malformed or repeated timestamp")
            timestamp = int(item)
        elif key == "v1":
            if len(item) != 64 or any(c not in "0123456789abcdef" for c in item):
                raise SignatureError("malformed v1 signature")
            signatures.append(item)
        # other schemes (v0, future versions) are ignored
    if timestamp is None or not signatures:
        raise SignatureError("timestamp or v1 signature missing")
    return timestamp, signatures


def verify_signature(body: bytes, header: str, secrets_: list[str], now: float, tolerance_s: int = TOLERANCE_S) -> bool:
    """True when one `v1` matches one of the secrets and the timestamp is within `tolerance_s` of now,
    in either direction. Compares in constant time."""
    try:
        timestamp, signatures = parse_signature_header(header)
    except SignatureError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    matched = False
    for secret in secrets_:
        expected = hmac_signature(secret, timestamp, body)
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def envelope(event_id: str, event_type: str, org_id: str, created: int, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a delivery."""
    return {"id": event_id, "type": event_type, "created": created, "org_id": org_id, "data": data}


def echo_payload(echo_data: str) -> dict[str, Any]:
    return {"type": ECHO, "echo_data": echo_data}


def new_echo_data() -> str:
    return secrets.token_urlsafe(30)[:40]


def echo_answer_ok(answer: Any, echo_data: str) -> bool:
    return (
        isinstance(answer, dict)
        and answer.get("type") == ECHO
        and isinstance(answer.get("echo_data"), str)
        and hmac.compare_digest(answer["echo_data"].encode(), echo_data.encode())
    )
