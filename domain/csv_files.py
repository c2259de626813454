"""The `;`-separated files operators and staff hand us (SIM order file, bulk edits, AccountStatus): decoding,
header check, records numbered by their line in the file, and the per-row report; and the files we hand back
(exports, reports), written through `write_csv` only. Pure: no I/O, no database.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from domain.errors import ValidationFailed


@dataclass
class RowIssue:
    field: str
    reason: str


@dataclass
class RowReport:
    row: int
    iccid: str
    accepted: bool
    errors: list[RowIssue] = field(default_factory=list)


def read_csv_records(
    content: bytes, *, required: Sequence[str], optional: Sequence[str] = (), max_rows: int
) -> list[tuple[int, dict[str, str]]]:
    """A `;`-separated UTF-8 file (BOM or not; LF, CRLF or CR line ends) as dicts keyed by lower-cased
    header names, each with its line number in the file (the header is line 1). Blank lines are skipped;
    a file without a required column, not in UTF-8 or over `max_rows` rows is refused as a whole."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("file", "le fichier doit être encodé en UTF-8") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=";")
    try:  # the csv module raises on e.g. a field over its size limit: a bad file, not a server error
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            expected = ";".join([*required, *optional])
            raise ValidationFailed("file", f"colonnes manquantes : {', '.join(missing)} (attendu : {expected})")
        reader.fieldnames = header
        rows: list[tuple[int, dict[str, str]]] = []
        for record in reader:
            rows.append((reader.line_num, {k: (v or "") for k, v in record.items() if isinstance(k, str)}))
            if len(rows) > max_rows:
                raise ValidationFailed("file", f"trop de lignes (maximum {max_rows})")
    except csv.Error as exc:
        raise ValidationFailed("file", f"fichier CSV illisible : {exc}") from exc
    return rows


# --- files we hand back -------------------------------------------------------------------------------

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?")


def spreadsheet_safe(value: object) -> object:
    """A cell a spreadsheet shows as text, never runs (OWASP "CSV injection"): a text starting with
    = + - @, tab or CR gets a leading single quote. Numbers, and texts that are only a signed decimal
    number ("-1.50"), are left alone: a spreadsheet reads them as the number, not as a formula."""
    if value is None:
        return ""
    if not isinstance(value, str) or not value.startswith(FORMULA_TRIGGERS) or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def write_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """`;`-separated, CRLF, UTF-8 with BOM (what French spreadsheets open correctly), every cell through
    `spreadsheet_safe`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([spreadsheet_safe(h) for h in header])
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in row])
    return "\ufeff" + buffer.getvalue()
