"""The operator's hourly AccountStatus file (seed 002: "récapitulatif de vos lignes au format csv"), parsed.
Pure: no I/O, no database, no clock.

The seed gives no column layout; ours (docs/decisions.md, "AccountStatus file") is `;`-separated UTF-8 with
a header, one row per SIM:

    iccid;msisdn;status;data_used_bytes;data_remaining_bytes;last_usage_at[;voice_used_seconds;sms_used]

Only `iccid` and `data_used_bytes` are required columns; any other may be missing or empty (unknown).
`data_used_bytes` is the data used in the current calendar month, `last_usage_at` an ISO 8601 moment
(Europe/Paris when it has no offset). A row shows usage when it reports some data, voice or SMS used, or
a last usage. Rows are reported with their line number and field, as the SIM order import does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from domain.csv_files import RowIssue, RowReport, read_csv_records
from domain.identifiers import InvalidIdentifier, normalize_iccid, normalize_msisdn

REQUIRED_COLUMNS = ("iccid", "data_used_bytes")
OPTIONAL_COLUMNS = ("msisdn", "status", "data_remaining_bytes", "last_usage_at", "voice_used_seconds", "sms_used")
OPERATOR_STATUSES = frozenset({"active", "inactive", "suspended", "terminated"})
OPERATOR_TIMEZONE = ZoneInfo("Europe/Paris")
MAX_ROWS = 200_000
MAX_COUNTER = 2**62  # fits a BIGINT with room to add


@dataclass(frozen=True)
class AccountStatusRow:
    line: int
    iccid: str
    msisdn: str | None = None
    status: str | None = None
    data_used_bytes: int | None = None
    data_remaining_bytes: int | None = None
    last_usage_at: datetime | None = None
    voice_used_seconds: int | None = None
    sms_used: int | None = None

    @property
    def shows_usage(self) -> bool:
        counters = (self.data_used_bytes, self.voice_used_seconds, self.sms_used)
        return any(value for value in counters) or self.last_usage_at is not None


@dataclass
class AccountStatusFile:
    rows: list[AccountStatusRow] = field(default_factory=list)
    rejected: list[RowReport] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.rows) + len(self.rejected)


def _counter(record: dict[str, str], name: str, issues: list[RowIssue]) -> int | None:
    raw = (record.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > MAX_COUNTER:
        issues.append(RowIssue(name, "entier positif attendu"))
        return None
    return int(raw)


def _moment(raw: str, issues: list[RowIssue]) -> datetime | None:
    value = raw.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        issues.append(RowIssue("last_usage_at", "date ISO 8601 attendue (ex. 2025-03-01T10:15:00+01:00)"))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=OPERATOR_TIMEZONE)
    return moment.astimezone(UTC)  # stored in UTC (SQLite keeps no offset)


def _parse_row(line: int, record: dict[str, str]) -> tuple[AccountStatusRow | None, RowReport]:
    issues: list[RowIssue] = []
    iccid = (record.get("iccid") or "").strip()
    try:
        iccid = normalize_iccid(iccid)
    except InvalidIdentifier as exc:
        issues.append(RowIssue("iccid", exc.reason))
    msisdn: str | None = (record.get("msisdn") or "").strip() or None
    if msisdn is not None:
        try:
            msisdn = normalize_msisdn(msisdn)
        except InvalidIdentifier as exc:
            issues.append(RowIssue("msisdn", exc.reason))
    status = (record.get("status") or "").strip().lower() or None
    if status is not None and status not in OPERATOR_STATUSES:
        issues.append(RowIssue("status", f"statut inconnu (attendu : {', '.join(sorted(OPERATOR_STATUSES))})"))
    used = _counter(record, "data_used_bytes", issues)
    remaining = _counter(record, "data_remaining_bytes", issues)
    voice = _counter(record, "voice_used_seconds", issues)
    sms = _counter(record, "sms_used", issues)
    last_usage_at = _moment(record.get("last_usage_at") or "", issues)
    report = RowReport(row=line, iccid=iccid, accepted=not issues, errors=issues)
    if issues:
        return None, report
    return AccountStatusRow(line, iccid, msisdn, status, used, remaining, last_usage_at, voice, sms), report


def _blank(record: dict[str, str]) -> bool:
    return not any(value.strip() for value in record.values())


def parse_rows(records: Iterable[tuple[int, dict[str, str]]]) -> AccountStatusFile:
    """Validates every row; an ICCID given twice is refused the second time (which row is right?)."""
    parsed = AccountStatusFile()
    seen: set[str] = set()
    for line, record in records:
        if _blank(record):  # `;;;;;` lines spreadsheets leave at the end
            continue
        row, report = _parse_row(line, record)
        if row is not None and row.iccid in seen:
            report.accepted = False
            report.errors.append(RowIssue("iccid", "ICCID en double dans le fichier"))
            row = None
        if row is None:
            parsed.rejected.append(report)
            continue
        seen.add(row.iccid)
        parsed.rows.append(row)
    return parsed


def parse_account_status(content: bytes) -> AccountStatusFile:
    """The whole file: refused as a whole (`ValidationFailed("file", …)`) when it is not UTF-8, lacks a
    required column or is too long; otherwise every row is either kept or reported."""
    records = read_csv_records(content, required=REQUIRED_COLUMNS, optional=OPTIONAL_COLUMNS, max_rows=MAX_ROWS)
    return parse_rows(records)
