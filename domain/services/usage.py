"""SIM usage and first usage: applying AccountStatus rows to an organisation's SIMs, the SIMs waiting for
their first usage in the OCS, and the outbox of `sim_card.first_usage` events.

Every first usage goes through `lines.record_sim_usage` (status `active`, journal entry, `first_usage_at`);
the event is published later, once per SIM, from `first_usage_at IS NOT NULL AND first_usage_published_at
IS NULL` — so a first usage seen by any path (AccountStatus file, OCS scan, bulk "refresh usage") is
announced exactly once, even when the process that saw it died before publishing.

Services take the session and never commit: the activity owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.account_status import AccountStatusRow
from domain.csv_files import RowIssue, RowReport
from domain.enums import LineStatus, SimStatus
from domain.models import Line, Plan, SimCard
from domain.services.lines import aware, record_sim_usage

FIRST_USAGE_EVENT = "sim_card.first_usage"
UNKNOWN_SIM = "carte SIM inconnue pour cette organisation"
MAX_PROBLEMS = 1000  # reported rows kept per AccountStatus import (the counts are always complete)


def first_usage_event_id(iccid: str) -> str:
    """One event per SIM, ever: the id every publication attempt reuses."""
    return f"first-usage:{iccid}"


# --- AccountStatus rows ----------------------------------------------------------------------------


@dataclass
class AppliedRows:
    applied: int = 0
    activated: int = 0
    unknown: int = 0
    problems: list[RowReport] = field(default_factory=list)


async def apply_account_status_rows(
    session: AsyncSession, *, org_id: str, rows: Sequence[AccountStatusRow], actor: str
) -> AppliedRows:
    """Records each row's usage on the organisation's SIM with that ICCID (locked for the transaction).
    An ICCID the organisation does not own — unknown, or another organisation's — is reported the same
    way and nothing is read or written for it."""
    outcome = AppliedRows()
    iccids = [row.iccid for row in rows]
    query = (  # locked in one order, so two imports of the organisation cannot deadlock each other
        select(SimCard)
        .where(SimCard.org_id == org_id, SimCard.iccid.in_(iccids))
        .order_by(SimCard.id)
        .with_for_update()
    )
    sims = {sim.iccid: sim for sim in (await session.execute(query)).scalars()}
    for row in rows:
        sim = sims.get(row.iccid)
        if sim is None:
            outcome.unknown += 1
            outcome.problems.append(RowReport(row.line, row.iccid, False, [RowIssue("iccid", UNKNOWN_SIM)]))
            continue
        remaining = row.data_remaining_bytes if row.data_remaining_bytes is not None else sim.remaining_bytes
        activated = await record_sim_usage(
            session,
            sim,
            actor=actor,
            remaining_bytes=remaining,
            remaining_days=sim.remaining_days,
            used=row.shows_usage,
            month_usage_bytes=row.data_used_bytes,
            used_at=row.last_usage_at,
        )
        outcome.applied += 1
        outcome.activated += int(activated)
    return outcome


def problem_dicts(reports: Sequence[RowReport]) -> list[dict[str, Any]]:
    """The stored form of reported rows, as the SIM import keeps its rejected rows."""
    return [
        {"row": r.row, "iccid": r.iccid, "field": issue.field, "reason": issue.reason}
        for r in reports
        for issue in r.errors
    ]


# --- first usage in the OCS ------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstUsageCandidate:
    sim_id: str
    iccid: str
    org_id: str
    ocs_account: str
    plan_id: str | None
    plan_allowance_bytes: int | None


async def first_usage_candidates(
    session: AsyncSession, *, org_id: str | None, after_iccid: str | None, limit: int
) -> list[FirstUsageCandidate]:
    """`ready_for_activation` SIMs whose active line has an OCS account, by ICCID after `after_iccid`."""
    query = (
        select(SimCard.id, SimCard.iccid, SimCard.org_id, Line.ocs_account, Line.plan_id, Plan.data_allowance_bytes)
        .join(Line, Line.sim_id == SimCard.id)
        .outerjoin(Plan, Plan.id == Line.plan_id)
        .where(
            SimCard.status == SimStatus.READY_FOR_ACTIVATION,
            Line.status == LineStatus.ACTIVE,
            Line.ocs_account.is_not(None),
        )
        .order_by(SimCard.iccid)
        .limit(limit)
    )
    if org_id is not None:
        query = query.where(SimCard.org_id == org_id)
    if after_iccid is not None:
        query = query.where(SimCard.iccid > after_iccid)
    return [
        FirstUsageCandidate(sim_id, iccid, org, account, plan_id, allowance)
        for sim_id, iccid, org, account, plan_id, allowance in (await session.execute(query)).all()
        if account
    ]


# --- the first-usage event outbox ------------------------------------------------------------------


@dataclass(frozen=True)
class PendingFirstUsage:
    sim_id: str
    org_id: str
    event_id: str
    data: dict[str, Any]


async def pending_first_usages(session: AsyncSession, *, org_id: str | None, limit: int) -> list[PendingFirstUsage]:
    """SIMs whose first usage is recorded but not yet announced, oldest first, with the event's data."""
    query = (
        select(SimCard)
        .where(SimCard.first_usage_published_at.is_(None), SimCard.first_usage_at.is_not(None))
        .order_by(SimCard.first_usage_at, SimCard.id)
        .limit(limit)
    )
    if org_id is not None:
        query = query.where(SimCard.org_id == org_id)
    sims = list((await session.execute(query)).scalars())
    msisdns: dict[str, str] = {}
    if sims:
        lines = await session.execute(
            select(Line.sim_id, Line.msisdn).where(
                Line.sim_id.in_([s.id for s in sims]), Line.status.in_([LineStatus.ACTIVE, LineStatus.SUSPENDED])
            )
        )
        msisdns = {sim_id: msisdn for sim_id, msisdn in lines.all() if sim_id}
    return [
        PendingFirstUsage(
            sim_id=sim.id,
            org_id=sim.org_id,
            event_id=first_usage_event_id(sim.iccid),
            data={
                "sim_card": {
                    "iccid": sim.iccid,
                    "msisdn": msisdns.get(sim.id),
                    "status": sim.status.value,
                    "company_id": sim.company_id,
                    "end_user_id": sim.end_user_id,
                    "plan_id": sim.plan_id,
                },
                "first_usage_at": _iso(sim.first_usage_at),
            },
        )
        for sim in sims
    ]


async def mark_first_usage_published(session: AsyncSession, *, sim_id: str, at: datetime) -> None:
    await session.execute(
        update(SimCard)
        .where(SimCard.id == sim_id, SimCard.first_usage_published_at.is_(None))
        .values(first_usage_published_at=at)
        .execution_options(synchronize_session=False)
    )


def _iso(moment: datetime | None) -> str | None:
    value = aware(moment)
    return value.isoformat() if value is not None else None
