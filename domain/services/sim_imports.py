"""Imports of the operator's SIM order file, as a whole: chunked validation and insertion (with a progress
callback for the CLI's bar), the import record and its downloadable error report.

Services take the session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from domain.csv_files import RowReport, write_csv
from domain.models import SimImport
from domain.services.sims import ImportReport, import_sims

CHUNK_ROWS = 1000


@dataclass
class ImportSummary:
    batch: str
    accepted: int
    rejected: int
    rows: list[RowReport]


async def import_records(
    session: AsyncSession,
    *,
    org_id: str,
    records: list[dict[str, str]],
    actor: str,
    batch: str,
    filename: str = "",
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Imports in chunks of CHUNK_ROWS rows (duplicates across chunks are caught: earlier chunks are
    flushed), records the import with its rejected rows, and reports progress after each chunk."""
    reports: list[RowReport] = []
    accepted = 0
    for start in range(0, len(records), CHUNK_ROWS):
        chunk = records[start : start + CHUNK_ROWS]
        report: ImportReport = await import_sims(session, org_id=org_id, records=chunk, actor=actor, batch=batch)
        for row in report.rows:
            row.row += start  # numbered over the whole file
        reports.extend(report.rows)
        accepted += report.accepted
        if progress is not None:
            progress(len(chunk))
    rejected = len(reports) - accepted
    session.add(
        SimImport(
            org_id=org_id,
            batch=batch,
            filename=filename[:255],
            accepted=accepted,
            rejected=rejected,
            errors=[
                {"row": r.row, "iccid": r.iccid, "field": issue.field, "reason": issue.reason}
                for r in reports
                if not r.accepted
                for issue in r.errors
            ],
            created_by=actor,
        )
    )
    await session.flush()
    return ImportSummary(batch=batch, accepted=accepted, rejected=rejected, rows=reports)


async def record_import(
    session: AsyncSession, *, org_id: str, batch: str, filename: str, report: ImportReport, actor: str
) -> SimImport:
    """Keeps an import done by `import_sims` (API route) with its rejected rows."""
    record = SimImport(
        org_id=org_id,
        batch=batch,
        filename=filename[:255],
        accepted=report.accepted,
        rejected=report.rejected,
        errors=[
            {"row": r.row, "iccid": r.iccid, "field": issue.field, "reason": issue.reason}
            for r in report.rows
            if not r.accepted
            for issue in r.errors
        ],
        created_by=actor,
    )
    session.add(record)
    await session.flush()
    return record


def errors_csv(record: SimImport) -> str:
    """The error report: one line per problem (row, ICCID, field, reason), `;`, UTF-8 with BOM."""
    return write_csv(
        ["ligne", "iccid", "champ", "motif"],
        ([error.get("row"), error.get("iccid"), error.get("field"), error.get("reason")] for error in record.errors),
    )
