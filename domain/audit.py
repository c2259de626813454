"""The audit log: append-only, hash-chained rows for authentication events, privileged actions and
money movements.

Each row's `hash` is SHA-256 over the previous row's hash and the row's canonical JSON content, so
changing, removing or reordering any row breaks the chain from there on; the single `audit_chain_head`
row holds the last hash and the number of rows appended, so removing the tail is detected too. Every
append first updates the head row: that serialises appenders on PostgreSQL (row lock) and SQLite (write
lock), and the append commits or rolls back with the caller's transaction. Database triggers (migration
0003) refuse UPDATE and DELETE on `audit_log`.

Never put secrets in `details`: callers pass ids, prefixes and outcomes, not keys, codes or passwords.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import AuditChainHead, AuditLog

GENESIS_HASH = "0" * 64
HEAD_ID = 1


@dataclass(frozen=True)
class AuditContext:
    """What the current request or activity adds to every audit row it writes."""

    request_id: str | None = None
    workflow_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None


_EMPTY = AuditContext()
_context: ContextVar[AuditContext | None] = ContextVar("simflow_audit_context", default=None)


def current_context() -> AuditContext:
    return _context.get() or _EMPTY


def bind_context(**values: Any) -> Any:
    """Sets fields of the audit context for the current task; returns the token to `reset_context`."""
    return _context.set(replace(current_context(), **values))


def reset_context(token: Any) -> None:
    _context.reset(token)


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    result: str = "ok"
    actor_kind: str = "system"
    org_id: str | None = None
    company_id: str | None = None
    end_user_id: str | None = None
    target: str | None = None
    request_id: str | None = None
    workflow_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None


def _canonical_at(at: datetime) -> str:
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def canonical(row: AuditLog | dict[str, Any]) -> bytes:
    def get(name: str) -> Any:
        return row[name] if isinstance(row, dict) else getattr(row, name)

    content = {
        "at": _canonical_at(get("at")),
        "actor": get("actor"),
        "actor_kind": get("actor_kind"),
        "org_id": get("org_id"),
        "company_id": get("company_id"),
        "end_user_id": get("end_user_id"),
        "action": get("action"),
        "target": get("target"),
        "result": get("result"),
        "request_id": get("request_id"),
        "workflow_id": get("workflow_id"),
        "details": get("details") or {},
        "reference": get("reference"),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def chain_hash(prev_hash: str, row: AuditLog | dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(row)).hexdigest()


async def _lock_head(session: AsyncSession) -> tuple[int, str]:
    """Takes the append lock (the head row) and returns (rows appended, last hash)."""
    bump = update(AuditChainHead).where(AuditChainHead.id == HEAD_ID).values(appended=AuditChainHead.appended + 1)
    result = await session.execute(bump, execution_options={"synchronize_session": False})
    if getattr(result, "rowcount", 0) == 0:
        # A database migrated without the seed row (or emptied by hand): the chain starts here.
        session.add(AuditChainHead(id=HEAD_ID, appended=0, last_hash=GENESIS_HASH))
        await session.flush()
        await session.execute(bump, execution_options={"synchronize_session": False})
    row = (
        await session.execute(
            select(AuditChainHead.appended, AuditChainHead.last_hash).where(AuditChainHead.id == HEAD_ID)
        )
    ).one()
    return int(row[0]), str(row[1])


async def record(session: AsyncSession, entry: AuditEntry) -> AuditLog | None:
    """Appends one row in the caller's transaction. With a `reference`, appending twice is a no-op
    (activities are retried); returns None then."""
    ctx = current_context()
    if entry.reference is not None:
        exists = await session.execute(select(AuditLog.id).where(AuditLog.reference == entry.reference))
        if exists.first() is not None:
            return None
    _, last_hash = await _lock_head(session)
    if entry.reference is not None:  # re-checked under the lock: a concurrent retry may have won
        exists = await session.execute(select(AuditLog.id).where(AuditLog.reference == entry.reference))
        if exists.first() is not None:
            # Give the count back: the head would otherwise count a row never appended (the chain then
            # reads as "rows removed" for good).
            await session.execute(
                update(AuditChainHead).where(AuditChainHead.id == HEAD_ID).values(appended=AuditChainHead.appended - 1),
                execution_options={"synchronize_session": False},
            )
            return None
    details = dict(entry.details)
    if ctx.ip and "ip" not in details:
        details["ip"] = ctx.ip
    if ctx.user_agent and "user_agent" not in details:
        details["user_agent"] = ctx.user_agent[:200]
    values: dict[str, Any] = {
        "at": datetime.now(UTC),
        "actor": entry.actor[:320],
        "actor_kind": entry.actor_kind,
        "org_id": entry.org_id,
        "company_id": entry.company_id,
        "end_user_id": entry.end_user_id,
        "action": entry.action[:100],
        "target": entry.target[:200] if entry.target else None,
        "result": entry.result,
        "request_id": entry.request_id or ctx.request_id,
        "workflow_id": entry.workflow_id or ctx.workflow_id,
        "details": details,
        "reference": entry.reference,
    }
    digest = chain_hash(last_hash, values)
    row = AuditLog(**values, prev_hash=last_hash, hash=digest)
    session.add(row)
    await session.flush()
    await session.execute(
        update(AuditChainHead).where(AuditChainHead.id == HEAD_ID).values(last_hash=digest),
        execution_options={"synchronize_session": False},
    )
    return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    first_bad_id: int | None = None
    reason: str | None = None


async def verify_chain(session: AsyncSession, batch: int = 2000) -> ChainReport:
    """Re-computes every hash in id order and compares with the head row. The head is read first and the
    rows it counts are checked: rows appended while the check runs (live traffic) come after them and are
    left to the next check, so they are never taken for a broken chain."""
    head = (
        await session.execute(
            select(AuditChainHead.appended, AuditChainHead.last_hash).where(AuditChainHead.id == HEAD_ID)
        )
    ).first()
    expected = None if head is None else int(head[0])
    prev = GENESIS_HASH
    count = 0
    last_id = 0
    table = AuditLog.__table__
    while expected is None or count < expected:
        limit = batch if expected is None else min(batch, expected - count)
        query = select(table).where(table.c.id > last_id).order_by(table.c.id).limit(limit)
        rows = [dict(r) for r in (await session.execute(query)).mappings().all()]
        if not rows:
            break
        for row in rows:
            if row["prev_hash"] != prev:
                return ChainReport(False, count, row["id"], "prev_hash does not match the previous row (row removed?)")
            if chain_hash(prev, row) != row["hash"]:
                return ChainReport(False, count, row["id"], "content does not match its hash (row modified)")
            prev = row["hash"]
            count += 1
            last_id = row["id"]
    if head is None:
        return ChainReport(count == 0, count, None, None if count == 0 else "chain head missing")
    if head[1] != prev or expected != count:
        return ChainReport(False, count, None, f"head says {head[0]} rows ending {head[1][:12]}…: rows removed")
    return ChainReport(True, count)
