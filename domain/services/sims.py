"""SIM inventory: import from the operator's order file, listing, status changes with the change journal.

Services take the session and never commit: the request or the activity owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.csv_files import RowIssue, RowReport, read_csv_records
from domain.enums import SimStatus
from domain.identifiers import InvalidIdentifier, normalize_iccid, normalize_imsi
from domain.models import SimCard, SimChange
from domain.sim_status import check_transition

IMPORT_COLUMNS = ("iccid", "imsi", "puk1", "puk2", "carrier", "esim")
OPTIONAL_IMPORT_COLUMNS = ("activation_code",)
KNOWN_CARRIERS = {"orange": "Orange", "bouygues": "Bouygues", "sfr": "SFR", "free": "Free"}
TRUE_WORDS = {"1", "true", "oui", "yes", "o", "y", "x"}
FALSE_WORDS = {"0", "false", "non", "no", "n", ""}
MAX_IMPORT_ROWS = 100_000


@dataclass
class ImportReport:
    accepted: int
    rejected: int
    rows: list[RowReport]


@dataclass
class _ParsedRow:
    row: int
    iccid: str
    imsi: str
    puk1: str | None
    puk2: str | None
    carrier: str
    is_esim: bool
    activation_code: str | None = None


def _parse_activation_code(raw: str, is_esim: bool, issues: list[RowIssue]) -> str | None:
    """An eSIM's LPA activation code (`LPA:1$<SM-DP+ address>$<matching id>`, GSMA SGP.22)."""
    value = raw.strip()
    if not value:
        return None
    if not is_esim:
        issues.append(RowIssue("activation_code", "code d'activation réservé aux eSIM"))
        return None
    parts = value.split("$")
    if len(value) > 255 or len(parts) < 3 or parts[0].upper() != "LPA:1" or not parts[1] or not parts[2]:
        issues.append(RowIssue("activation_code", "format attendu : LPA:1$<adresse SM-DP+>$<code>"))
        return None
    return value


def _parse_puk(field_name: str, raw: str, issues: list[RowIssue]) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.isdigit() or len(value) != 8:
        issues.append(RowIssue(field_name, "code PUK invalide : 8 chiffres attendus"))
        return None
    return value


def _parse_row(number: int, record: dict[str, str]) -> tuple[_ParsedRow | None, RowReport]:
    issues: list[RowIssue] = []
    raw_iccid = (record.get("iccid") or "").strip()
    iccid = raw_iccid
    imsi = ""
    try:
        iccid = normalize_iccid(raw_iccid)
    except InvalidIdentifier as exc:
        issues.append(RowIssue("iccid", exc.reason))
    try:
        imsi = normalize_imsi((record.get("imsi") or "").strip())
    except InvalidIdentifier as exc:
        issues.append(RowIssue("imsi", exc.reason))
    puk1 = _parse_puk("puk1", record.get("puk1") or "", issues)
    puk2 = _parse_puk("puk2", record.get("puk2") or "", issues)
    carrier = KNOWN_CARRIERS.get((record.get("carrier") or "").strip().lower())
    if carrier is None:
        issues.append(RowIssue("carrier", f"opérateur inconnu (attendu : {', '.join(KNOWN_CARRIERS.values())})"))
    esim_raw = (record.get("esim") or "").strip().lower()
    if esim_raw not in TRUE_WORDS | FALSE_WORDS:
        issues.append(RowIssue("esim", "valeur attendue : 0/1, oui/non"))
    activation_code = _parse_activation_code(record.get("activation_code") or "", esim_raw in TRUE_WORDS, issues)
    report = RowReport(row=number, iccid=iccid, accepted=not issues, errors=issues)
    if issues:
        return None, report
    assert carrier is not None
    return (
        _ParsedRow(number, iccid, imsi, puk1, puk2, carrier, esim_raw in TRUE_WORDS, activation_code),
        report,
    )


def read_import_csv(content: bytes) -> list[dict[str, str]]:
    """Decodes the order file (`;`-separated, UTF-8 with or without BOM) and checks its header; an
    optional `activation_code` column carries the eSIMs' LPA strings."""
    return read_csv_rows(content, required=IMPORT_COLUMNS, optional=OPTIONAL_IMPORT_COLUMNS)


def read_csv_rows(content: bytes, *, required: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, str]]:
    """A `;`-separated UTF-8 file (BOM or not) as dicts keyed by lower-cased header names."""
    records = read_csv_records(content, required=required, optional=optional, max_rows=MAX_IMPORT_ROWS)
    return [record for _, record in records]


async def _existing(session: AsyncSession, column: str, values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    attr = getattr(SimCard, column)
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        found.update((await session.execute(select(attr).where(attr.in_(chunk)))).scalars())
    return found


async def import_sims(
    session: AsyncSession, *, org_id: str, records: Iterable[dict[str, str]], actor: str, batch: str
) -> ImportReport:
    """Validates every row, keeps the valid ones, rejects duplicates (in the file or already known)."""
    reports: list[RowReport] = []
    parsed: list[tuple[_ParsedRow, RowReport]] = []
    for number, record in enumerate(records, start=2):  # row 1 is the header
        row, report = _parse_row(number, record)
        reports.append(report)
        if row is not None:
            parsed.append((row, report))

    known_iccids = await _existing(session, "iccid", [r.iccid for r, _ in parsed])
    known_imsis = await _existing(session, "imsi", [r.imsi for r, _ in parsed])
    seen_iccids: set[str] = set()
    seen_imsis: set[str] = set()
    accepted: list[_ParsedRow] = []
    for row, report in parsed:
        if row.iccid in known_iccids:
            report.errors.append(RowIssue("iccid", "ICCID déjà présent dans l'inventaire"))
        elif row.iccid in seen_iccids:
            report.errors.append(RowIssue("iccid", "ICCID en double dans le fichier"))
        if row.imsi in known_imsis:
            report.errors.append(RowIssue("imsi", "IMSI déjà présent dans l'inventaire"))
        elif row.imsi in seen_imsis:
            report.errors.append(RowIssue("imsi", "IMSI en double dans le fichier"))
        seen_iccids.add(row.iccid)
        seen_imsis.add(row.imsi)
        if report.errors:
            report.accepted = False
            continue
        accepted.append(row)

    sims = [
        SimCard(
            org_id=org_id,
            iccid=row.iccid,
            imsi=row.imsi,
            puk1=row.puk1,
            puk2=row.puk2,
            carrier=row.carrier,
            is_esim=row.is_esim,
            activation_code=row.activation_code,
            status=SimStatus.BLANK,
            import_batch=batch,
        )
        for row in accepted
    ]
    session.add_all(sims)
    await session.flush()
    session.add_all(
        SimChange(sim_id=sim.id, field="status", old_value=None, new_value=SimStatus.BLANK.value, actor=actor)
        for sim in sims
    )
    await session.flush()
    return ImportReport(accepted=len(accepted), rejected=len(reports) - len(accepted), rows=reports)


def sims_query(
    *, org_id: str | None, company_id: str | None = None, status: SimStatus | None = None
) -> Select[SimCard]:
    query = select(SimCard)
    if org_id is not None:
        query = query.where(SimCard.org_id == org_id)
    if company_id is not None:
        query = query.where(SimCard.company_id == company_id)
    if status is not None:
        query = query.where(SimCard.status == status)
    return query  # ordered and paged by the caller (domain.pagination)


async def change_sim(session: AsyncSession, sim: SimCard, *, actor: str, **changes: object) -> None:
    """Applies field changes through the status machine and writes one journal entry per changed field."""
    for name, new in changes.items():
        old = getattr(sim, name)
        if old == new:
            continue
        if name == "status":
            assert isinstance(new, SimStatus)
            check_transition(sim.status, new)
        setattr(sim, name, new)
        session.add(
            SimChange(
                sim_id=sim.id,
                field=name,
                old_value=None if old is None else str(getattr(old, "value", old)),
                new_value=None if new is None else str(getattr(new, "value", new)),
                actor=actor,
            )
        )
    await session.flush()


async def sim_journal(session: AsyncSession, sim_id: str) -> list[SimChange]:
    query = select(SimChange).where(SimChange.sim_id == sim_id).order_by(SimChange.at.desc(), SimChange.id.desc())
    return list((await session.execute(query)).scalars())
