"""`simflow import-sims FILE`: the operator's SIM order file straight into the database (same validation
and journal as the API import), in chunks, with a progress callback and a timing. The caller (the CLI) owns
the engine; the import is one transaction."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import NotFound
from domain.models import Organisation, SimImport
from domain.services.sim_imports import ImportSummary, errors_csv, import_records
from domain.services.sims import read_import_csv


@dataclass
class FileImport:
    summary: ImportSummary
    org_name: str
    rows: int
    seconds: float
    errors_path: Path | None


async def import_sims_file(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    org: str,
    *,
    actor: str = "cli",
    errors_path: Path | None = None,
    on_rows: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> FileImport:
    """Imports `path` for the organisation `org` (id or slug) in one transaction; the rejected rows go to
    `errors_path` (default: `<file>.erreurs.csv`) when there are any."""
    started = time.monotonic()
    records = read_import_csv(await asyncio.to_thread(path.read_bytes))
    if on_total is not None:
        on_total(len(records))
    async with sessionmaker.begin() as session:
        organisation = (
            await session.execute(select(Organisation).where(or_(Organisation.id == org, Organisation.slug == org)))
        ).scalar_one_or_none()
        if organisation is None:
            raise NotFound("org", f"organisation introuvable : {org}")
        summary = await import_records(
            session,
            org_id=organisation.id,
            records=records,
            actor=actor,
            batch=f"import-{secrets.token_hex(6)}",
            filename=path.name,
            progress=on_rows,
        )
        org_name = organisation.name
    written: Path | None = None
    if summary.rejected:
        async with sessionmaker() as session:
            record = (await session.execute(select(SimImport).where(SimImport.batch == summary.batch))).scalar_one()
        written = errors_path or path.with_name(path.name + ".erreurs.csv")
        await asyncio.to_thread(written.write_text, errors_csv(record), "utf-8")
    return FileImport(summary, org_name, len(records), time.monotonic() - started, written)
