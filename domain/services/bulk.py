"""Bulk operations on SIMs (seed 000): checking the request, writing the operation and its per-SIM items,
reading the report back as CSV; and the SIM export.

Services take the session and never commit: the request owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.csv_files import write_csv
from domain.enums import BULK_KIND_LABELS_FR, SIM_STATUS_LABELS_FR, BulkItemStatus, BulkOperationKind
from domain.errors import NotFound, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid
from domain.models import BulkOperation, BulkOperationItem, Company, EndUser, Plan, Rule, SimCard, new_id
from domain.services.sims import read_csv_rows

K = BulkOperationKind
MAX_ITEMS = 10_000


@dataclass(frozen=True)
class BulkRequestItem:
    iccid: str
    params: dict[str, Any]


@dataclass
class PreparedBulk:
    operation: BulkOperation
    runnable: list[BulkRequestItem]


def normalise_items(iccids: Sequence[str], items: Sequence[tuple[str, dict[str, Any]]] = ()) -> list[BulkRequestItem]:
    """ICCIDs checked (Luhn) and de-duplicated, in the order given; a bad one names its position."""
    seen: set[str] = set()
    out: list[BulkRequestItem] = []
    raw: list[tuple[str, dict[str, Any]]] = [(value, {}) for value in iccids] + list(items)
    if len(raw) > MAX_ITEMS:
        raise ValidationFailed("iccids", f"{MAX_ITEMS} cartes SIM au maximum par opération")
    for index, (value, params) in enumerate(raw):
        try:
            iccid = normalize_iccid(value)
        except InvalidIdentifier as exc:
            raise ValidationFailed(f"iccids.{index}", exc.reason) from exc
        if iccid in seen:
            continue
        seen.add(iccid)
        out.append(BulkRequestItem(iccid=iccid, params=dict(params)))
    if not out:
        raise ValidationFailed("iccids", "au moins une carte SIM")
    return out


async def _company_in_org(session: AsyncSession, company_id: object, org_id: str, field: str) -> str:
    company = await session.get(Company, str(company_id)) if company_id else None
    if company is None or company.org_id != org_id:
        raise NotFound(field, "entreprise introuvable")
    return company.id


async def _plan_in_org(session: AsyncSession, plan_id: object, org_id: str, company_id: str | None) -> str:
    plan = await session.get(Plan, str(plan_id)) if plan_id else None
    if plan is None or plan.org_id != org_id or (company_id and plan.company_id not in (None, company_id)):
        raise NotFound("params.plan_id", "forfait introuvable")
    return plan.id


async def check_params(
    session: AsyncSession, *, kind: BulkOperationKind, org_id: str, company_scope: str | None, params: dict[str, Any]
) -> dict[str, Any]:
    """The operation's parameters, checked for its kind (the field is named on refusal)."""
    clean: dict[str, Any] = {}
    if kind is K.ACTIVATE:
        company_id = params.get("company_id") or company_scope
        if company_scope is not None and company_id != company_scope:
            raise NotFound("params.company_id", "entreprise introuvable")
        clean["company_id"] = await _company_in_org(session, company_id, org_id, "params.company_id")
        clean["plan_id"] = await _plan_in_org(session, params.get("plan_id"), org_id, clean["company_id"])
        if params.get("end_user_id"):  # optional: every activated line goes to this end user
            user = await session.get(EndUser, str(params["end_user_id"]))
            if user is None or user.company_id != clean["company_id"]:
                raise NotFound("params.end_user_id", "utilisateur final introuvable dans cette entreprise")
            clean["end_user_id"] = user.id
    elif kind is K.CHANGE_PLAN:
        clean["plan_id"] = await _plan_in_org(session, params.get("plan_id"), org_id, company_scope)
    elif kind is K.ASSIGN_COMPANY:
        if company_scope is not None:
            raise ValidationFailed("kind", "réservé au personnel de l'organisation")
        clean["company_id"] = await _company_in_org(session, params.get("company_id"), org_id, "params.company_id")
    elif kind is K.UNASSIGN_COMPANY:
        if company_scope is not None:
            raise ValidationFailed("kind", "réservé au personnel de l'organisation")
    elif kind is K.SEND_SMS:
        text = str(params.get("text") or "").strip()
        if not 1 <= len(text) <= 640:
            raise ValidationFailed("params.text", "texte du SMS : 1 à 640 caractères")
        clean["text"] = text
    elif kind is K.EDIT_NOTE:
        note = params.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 2000):
            raise ValidationFailed("params.note", "texte de 2000 caractères au maximum")
        clean["note"] = note or ""
    elif kind in (K.SET_TAGS, K.SET_RULES):
        key = "tags" if kind is K.SET_TAGS else "rule_ids"
        values = params.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            raise ValidationFailed(f"params.{key}", "liste de textes attendue")
        mode = params.get("mode", "add")
        if mode not in ("add", "remove", "replace"):
            raise ValidationFailed("params.mode", "add, remove ou replace")
        if kind is K.SET_RULES and values:
            found = set(
                (await session.execute(select(Rule.id).where(Rule.id.in_(values), Rule.org_id == org_id))).scalars()
            )
            missing = [v for v in values if v not in found]
            if missing:
                raise NotFound("params.rule_ids", f"règle(s) introuvable(s) : {', '.join(missing)}")
        clean[key] = [v.strip() for v in values]
        clean["mode"] = mode
    elif kind is K.CANCEL_SIM:
        grace = params.get("grace_days", 0)
        if not isinstance(grace, int) or (grace and not 7 <= grace <= 30):
            raise ValidationFailed("params.grace_days", "0 (immédiat) ou de 7 à 30 jours")
        clean["grace_days"] = grace
    return clean


async def create_bulk_operation(
    session: AsyncSession,
    *,
    org_id: str,
    company_scope: str | None,
    kind: BulkOperationKind,
    items: list[BulkRequestItem],
    params: dict[str, Any],
    created_by: str,
    workflow_id_for: Any,
) -> PreparedBulk:
    """Writes the operation and one item per SIM. SIMs outside the caller's scope are reported as not
    found (skipped at once) and never reach the workflow."""
    visible: set[str] = set()
    iccids = [i.iccid for i in items]
    for start in range(0, len(iccids), 500):
        chunk = iccids[start : start + 500]
        query = select(SimCard.iccid).where(SimCard.org_id == org_id, SimCard.iccid.in_(chunk))
        if company_scope is not None:
            query = query.where(SimCard.company_id == company_scope)
        visible.update((await session.execute(query)).scalars())
    bulk_id = new_id()
    operation = BulkOperation(
        id=bulk_id,
        org_id=org_id,
        company_id=company_scope,
        kind=kind,
        params=params,
        total=len(items),
        workflow_id=workflow_id_for(org_id, bulk_id),
        created_by=created_by,
    )
    session.add(operation)
    await session.flush()
    runnable: list[BulkRequestItem] = []
    rows: list[BulkOperationItem] = []
    for position, item in enumerate(items):
        known = item.iccid in visible
        rows.append(
            BulkOperationItem(
                bulk_id=bulk_id,
                position=position,
                iccid=item.iccid,
                params=item.params,
                status=BulkItemStatus.PENDING if known else BulkItemStatus.SKIPPED,
                detail=None if known else "carte SIM introuvable",
            )
        )
        if known:
            runnable.append(item)
    session.add_all(rows)
    operation.skipped = len(items) - len(runnable)
    await session.flush()
    return PreparedBulk(operation=operation, runnable=runnable)


def read_details_csv(content: bytes) -> list[tuple[str, dict[str, Any]]]:
    """ "Importer des détails": `iccid;note;tags;imei` (only iccid mandatory; tags separated by `,`)."""
    rows = read_csv_rows(content, required=("iccid",), optional=("note", "tags", "imei"))
    items: list[tuple[str, dict[str, Any]]] = []
    for record in rows:
        params: dict[str, Any] = {}
        for key in ("note", "tags", "imei"):
            value = (record.get(key) or "").strip()
            if value:
                params[key] = value
        items.append(((record.get("iccid") or "").strip(), params))
    return items


# --- CSV ---------------------------------------------------------------------------------------------


STATUS_LABELS = {
    BulkItemStatus.PENDING: "en attente",
    BulkItemStatus.SUCCEEDED: "réussie",
    BulkItemStatus.FAILED: "en échec",
    BulkItemStatus.SKIPPED: "ignorée",
}


def bulk_report_csv(operation: BulkOperation, items: Sequence[BulkOperationItem]) -> str:
    label = BULK_KIND_LABELS_FR.get(operation.kind, operation.kind.value)
    return write_csv(
        ("position", "iccid", "operation", "resultat", "detail", "workflow_id", "ligne", "termine_le"),
        (
            (
                i.position + 1,
                i.iccid,
                label,
                STATUS_LABELS.get(i.status, i.status.value),
                i.detail,
                i.workflow_id,
                i.line_id,
                i.finished_at.isoformat() if i.finished_at else "",
            )
            for i in items
        ),
    )


EXPORT_COLUMNS: dict[str, str] = {
    "iccid": "ICCID",
    "imsi": "IMSI",
    "status": "Statut",
    "sim_type": "Type de SIM",
    "carrier": "Opérateur",
    "is_esim": "eSIM",
    "company_id": "Entreprise",
    "end_user_id": "Utilisateur final",
    "plan_id": "Forfait",
    "tags": "Étiquettes",
    "note": "Note",
    "imei": "IMEI",
    "in_session": "En session",
    "remaining_bytes": "Données restantes (Mo)",
    "remaining_days": "Jours restants",
    "month_usage_bytes": "Ce mois-ci (Mo)",
    "created_at": "Créée le",
}


def _export_value(sim: SimCard, column: str) -> object:
    value = getattr(sim, column)
    if column == "status":
        return SIM_STATUS_LABELS_FR.get(value, value)
    if column in ("remaining_bytes", "month_usage_bytes"):
        return None if value is None else value // (1024 * 1024)
    if column == "tags":
        return ", ".join(value or [])
    if column in ("is_esim", "in_session"):
        return "" if value is None else ("oui" if value else "non")
    if hasattr(value, "value"):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def export_sims_csv(sims: Sequence[SimCard], columns: Sequence[str] | None = None) -> str:
    """The seed's "Exporter": the chosen columns, in the chosen order."""
    chosen = [c for c in (columns or EXPORT_COLUMNS) if c in EXPORT_COLUMNS] or list(EXPORT_COLUMNS)
    return write_csv([EXPORT_COLUMNS[c] for c in chosen], ([_export_value(s, c) for c in chosen] for s in sims))
