"""Database side of bulk operations: resolving each selected SIM's line, the database-only edits (note,
tags, rules, company, imported details, SMS queue, cancelling SIMs without a line), and the per-SIM
result report. Edits go through `change_sim` (status machine and journal); each write is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from domain.enums import BulkItemStatus, BulkOperationKind, BulkOperationStatus, LineStatus, SimStatus
from domain.errors import DomainError
from domain.identifiers import InvalidIdentifier, normalize_imei
from domain.lifecycle_contracts import (
    BulkEdit,
    BulkFinish,
    BulkItemInput,
    BulkItemResult,
    BulkResultsRecord,
    BulkTarget,
    BulkTargetList,
    BulkTargets,
)
from domain.models import BulkOperation, BulkOperationItem, Company, Line, Rule, SimCard, SimMessage
from domain.services.sims import change_sim
from workflows import activity_names as names

K = BulkOperationKind
LIVE_LINE = (LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.INACTIVE)
IN_SERVICE = (SimStatus.READY_FOR_ACTIVATION, SimStatus.ACTIVE, SimStatus.SUSPENDED)
MAX_NOTE = 2000
MAX_TAGS = 20


class EditRefused(Exception):
    """One SIM cannot take this edit; the item fails with this reason, the others go on."""


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [t for t in value.replace(",", ";").split(";")]
    if not isinstance(value, list):
        raise EditRefused("étiquettes : liste attendue")
    tags = sorted({str(t).strip()[:50] for t in value if str(t).strip()})
    if len(tags) > MAX_TAGS:
        raise EditRefused(f"étiquettes : {MAX_TAGS} au maximum")
    return tags


def _merge(current: list[str], given: list[str], mode: str) -> list[str]:
    if mode == "remove":
        return sorted(set(current) - set(given))
    if mode == "replace":
        return sorted(set(given))
    return sorted(set(current) | set(given))


async def _live_line(session: AsyncSession, sim: SimCard) -> Line | None:
    query = (
        select(Line)
        .where(Line.sim_id == sim.id, Line.status.in_([*LIVE_LINE, LineStatus.UNDER_CONSTRUCTION]))
        .order_by(Line.created_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


@translates_errors
class BulkActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name=names.BULK_RESOLVE_TARGETS)
    async def resolve_targets(self, data: BulkTargets) -> BulkTargetList:
        """For each SIM: its live line and company, or why the operation cannot run on it."""
        kind = K(data.kind)
        targets: list[BulkTarget] = []
        async with self._sessionmaker() as session:
            sims = {
                s.iccid: s
                for s in (
                    await session.execute(
                        select(SimCard).where(SimCard.iccid.in_(data.iccids), SimCard.org_id == data.org_id)
                    )
                ).scalars()
            }
            for iccid in data.iccids:
                sim = sims.get(iccid)
                if sim is None:
                    targets.append(BulkTarget(iccid=iccid, problem="carte SIM introuvable"))
                    continue
                if kind is K.ACTIVATE:
                    problem = None if sim.status is SimStatus.BLANK else f"SIM {sim.status.value} : déjà en service"
                    targets.append(BulkTarget(iccid=iccid, company_id=sim.company_id, problem=problem))
                    continue
                line = await _live_line(session, sim)
                if line is None or line.status is LineStatus.UNDER_CONSTRUCTION:
                    problem = "aucune ligne active sur cette SIM"
                    if line is not None:
                        problem = "ligne en cours de construction"
                    elif kind in (K.CANCEL_SIM, K.REFRESH_USAGE):
                        problem = None  # a SIM without line: cancelled in the database / nothing to read
                    targets.append(BulkTarget(iccid=iccid, company_id=sim.company_id, problem=problem))
                    continue
                targets.append(BulkTarget(iccid=iccid, line_id=line.id, company_id=line.company_id))
        return BulkTargetList(targets=targets)

    @activity.defn(name=names.BULK_APPLY_EDITS)
    async def apply_edits(self, data: BulkEdit) -> BulkResultsRecord:
        """Applies a database-only edit to each SIM, each in its own savepoint-free transaction, so one
        refused SIM never blocks the others."""
        results: list[BulkItemResult] = []
        for item in data.items:
            try:
                async with self._sessionmaker.begin() as session:
                    detail = await self._edit(session, data, item)
                results.append(BulkItemResult(iccid=item.iccid, status=BulkItemStatus.SUCCEEDED, detail=detail))
            except EditRefused as err:
                results.append(BulkItemResult(iccid=item.iccid, status=BulkItemStatus.FAILED, detail=str(err)))
            except InvalidIdentifier as err:
                results.append(
                    BulkItemResult(iccid=item.iccid, status=BulkItemStatus.FAILED, detail=f"{err.field} : {err.reason}")
                )
            except DomainError as err:
                results.append(BulkItemResult(iccid=item.iccid, status=BulkItemStatus.FAILED, detail=err.reason))
        return BulkResultsRecord(bulk_id=data.bulk_id, results=results)

    async def _edit(self, session: AsyncSession, data: BulkEdit, item: BulkItemInput) -> str:
        kind = K(data.kind)
        params = {**data.params, **item.params}
        actor = data.requested_by
        sim = (
            await session.execute(select(SimCard).where(SimCard.iccid == item.iccid, SimCard.org_id == data.org_id))
        ).scalar_one_or_none()
        if sim is None or (data.company_id is not None and sim.company_id != data.company_id):
            raise EditRefused("carte SIM introuvable")
        if kind is K.EDIT_NOTE:
            note = str(params.get("note") or "").strip()[:MAX_NOTE] or None
            await change_sim(session, sim, actor=actor, note=note)
            return "note modifiée"
        if kind is K.SET_TAGS:
            tags = _merge(list(sim.tags or []), _tags(params.get("tags", [])), str(params.get("mode", "add")))
            await change_sim(session, sim, actor=actor, tags=tags)
            return "étiquettes : " + (", ".join(tags) or "aucune")
        if kind is K.SET_RULES:
            rule_ids = [str(r) for r in params.get("rule_ids", []) if str(r)]
            known = set(
                (
                    await session.execute(select(Rule.id).where(Rule.id.in_(rule_ids), Rule.org_id == data.org_id))
                ).scalars()
            )
            unknown = [r for r in rule_ids if r not in known]
            if unknown:
                raise EditRefused(f"règle(s) introuvable(s) : {', '.join(unknown)}")
            merged = _merge(list(sim.rule_ids or []), rule_ids, str(params.get("mode", "add")))
            await change_sim(session, sim, actor=actor, rule_ids=merged)
            return f"{len(merged)} règle(s)"
        if kind in (K.ASSIGN_COMPANY, K.UNASSIGN_COMPANY):
            target = str(params.get("company_id")) if kind is K.ASSIGN_COMPANY else None
            if target is not None:
                company = await session.get(Company, target)
                if company is None or company.org_id != data.org_id:
                    raise EditRefused("entreprise introuvable")
            if sim.company_id != target and (sim.status in IN_SERVICE or sim.reserved_by is not None):
                raise EditRefused("SIM en service : résiliez la ligne avant de changer d'entreprise")
            await change_sim(
                session, sim, actor=actor, company_id=target, end_user_id=None if target is None else sim.end_user_id
            )
            return "entreprise attribuée" if target else "entreprise retirée"
        if kind is K.IMPORT_DETAILS:
            changes: dict[str, object] = {}
            if "note" in params:
                changes["note"] = str(params["note"] or "").strip()[:MAX_NOTE] or None
            if "tags" in params:
                changes["tags"] = _tags(params["tags"])
            if params.get("imei"):
                changes["imei"] = normalize_imei(str(params["imei"]))
            if not changes:
                raise EditRefused("aucun détail à importer (note, tags, imei)")
            await change_sim(session, sim, actor=actor, **changes)
            return "détails importés : " + ", ".join(sorted(changes))
        if kind is K.SEND_SMS:
            text = str(params.get("text") or "").strip()
            if not text or len(text) > 640:
                raise EditRefused("texte du SMS : 1 à 640 caractères")
            if sim.status not in IN_SERVICE:
                raise EditRefused("aucune ligne en service sur cette SIM")
            reference = f"{data.bulk_id}:{sim.iccid}"
            exists = await session.execute(select(SimMessage.id).where(SimMessage.reference == reference))
            if exists.first() is None:
                session.add(
                    SimMessage(org_id=sim.org_id, sim_id=sim.id, reference=reference, text=text, created_by=actor)
                )
            return "SMS mis en file d'envoi"
        if kind is K.CANCEL_SIM:
            if sim.reserved_by is not None:
                raise EditRefused("SIM en cours d'activation")
            await change_sim(session, sim, actor=actor, status=SimStatus.TERMINATED)
            return "SIM annulée"
        raise EditRefused(f"opération {kind.value} non prise en charge ici")

    @activity.defn(name=names.BULK_RECORD_RESULTS)
    async def record_results(self, data: BulkResultsRecord) -> None:
        """Writes the per-SIM results and the operation's counters (idempotent: plain overwrites)."""
        now = datetime.now(UTC)
        async with self._sessionmaker.begin() as session:
            for result in data.results:
                await session.execute(
                    update(BulkOperationItem)
                    .where(BulkOperationItem.bulk_id == data.bulk_id, BulkOperationItem.iccid == result.iccid)
                    .values(
                        status=BulkItemStatus(result.status),
                        detail=result.detail[:2000],
                        workflow_id=result.workflow_id,
                        line_id=result.line_id,
                        finished_at=now,
                    )
                )
            await self._count(session, data.bulk_id)

    @staticmethod
    async def _count(session: AsyncSession, bulk_id: str) -> None:
        rows = await session.execute(
            select(BulkOperationItem.status, func.count())
            .where(BulkOperationItem.bulk_id == bulk_id)
            .group_by(BulkOperationItem.status)
        )
        counts: dict[BulkItemStatus, int] = {status: int(count) for status, count in rows}
        operation = await session.get(BulkOperation, bulk_id)
        if operation is not None:
            operation.succeeded = counts.get(BulkItemStatus.SUCCEEDED, 0)
            operation.failed = counts.get(BulkItemStatus.FAILED, 0)
            operation.skipped = counts.get(BulkItemStatus.SKIPPED, 0)

    @activity.defn(name=names.BULK_FINISH)
    async def finish(self, data: BulkFinish) -> None:
        async with self._sessionmaker.begin() as session:
            operation = await session.get(BulkOperation, data.bulk_id)
            if operation is None:
                return
            await session.execute(
                update(BulkOperationItem)
                .where(BulkOperationItem.bulk_id == data.bulk_id, BulkOperationItem.status == BulkItemStatus.PENDING)
                .values(status=BulkItemStatus.SKIPPED, detail="opération annulée", finished_at=datetime.now(UTC))
            )
            await self._count(session, data.bulk_id)
            operation.status = BulkOperationStatus(data.status)
            operation.finished_at = datetime.now(UTC)
