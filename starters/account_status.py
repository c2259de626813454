"""`simflow import-account-status FILE --org ORG`: stores the operator's AccountStatus file for the
organisation and runs `AccountStatusImportWorkflow` on it, once per file content (its SHA-256).

A file already applied is not applied again: its stored import answers (`duplicate=True`) without starting
anything; a file whose import is still running is joined (USE_EXISTING) and its result awaited.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.account_status import parse_account_status
from domain.enums import BusinessStatus, FileImportStatus
from domain.errors import NotFound, ResourceBusy
from domain.models import AccountStatusImport, Organisation
from domain.usage_contracts import AccountStatusImportInput, AccountStatusImportResult
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from infra.temporal import connect_temporal
from workflows._search import initial_attributes
from workflows.account_status import AccountStatusImportWorkflow, workflow_id


@dataclass
class AccountStatusOutcome:
    org_name: str
    workflow_id: str
    duplicate: bool
    result: AccountStatusImportResult
    problems: list[dict[str, Any]] = field(default_factory=list)


async def _organisation(session: AsyncSession, org: str) -> Organisation:
    query = select(Organisation).where(or_(Organisation.id == org, Organisation.slug == org))
    organisation = (await session.execute(query)).scalar_one_or_none()
    if organisation is None:
        raise NotFound("org", f"organisation introuvable : {org}")
    return organisation


async def _stored(
    sessionmaker: async_sessionmaker[AsyncSession], org: str, path: Path, content: bytes, sha256: str, actor: str
) -> tuple[Organisation, AccountStatusImport]:
    """The organisation and the file's import row, created on the first run (two runs racing: one wins)."""
    for _ in range(2):
        try:
            async with sessionmaker.begin() as session:
                organisation = await _organisation(session, org)
                query = select(AccountStatusImport).where(
                    AccountStatusImport.org_id == organisation.id, AccountStatusImport.sha256 == sha256
                )
                record = (await session.execute(query)).scalar_one_or_none()
                if record is None:
                    record = AccountStatusImport(
                        org_id=organisation.id,
                        sha256=sha256,
                        filename=path.name[:255],
                        content=content,
                        status=FileImportStatus.PENDING,
                        workflow_id=workflow_id(organisation.id, sha256),
                        problems=[],
                        created_by=actor[:320],
                    )
                    session.add(record)
                    await session.flush()
                return organisation, record
        except IntegrityError:
            continue  # the other run stored it first: read it
    raise RuntimeError("AccountStatus import could not be stored")


async def import_account_status_file(
    settings: Settings, path: Path, org: str, *, client: Client | None = None, actor: str | None = None
) -> AccountStatusOutcome:
    """Applies `path` to the organisation `org` (id or slug). A file that cannot be read as an AccountStatus
    file at all raises `ValidationFailed("file", …)` before anything is stored."""
    content = await asyncio.to_thread(path.read_bytes)
    parse_account_status(content)  # refuses a file without the required columns, not UTF-8, too long
    sha256 = hashlib.sha256(content).hexdigest()
    actor = actor or f"account-status:{path.name}"
    engine = create_engine(settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        organisation, record = await _stored(sessionmaker, org, path, content, sha256, actor)
        wf_id = record.workflow_id
        result: AccountStatusImportResult | None = None
        if record.status != FileImportStatus.COMPLETED:
            client = client or await connect_temporal(settings)
            data = AccountStatusImportInput(org_id=organisation.id, import_id=record.id, actor=actor)
            try:
                handle = await client.start_workflow(
                    AccountStatusImportWorkflow.run,
                    data,
                    id=wf_id,
                    task_queue=settings.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    search_attributes=initial_attributes(org_id=organisation.id, status=BusinessStatus.RUNNING),
                    static_summary=f"AccountStatus {path.name[:100]}",
                )
                result = await handle.result()
            except WorkflowAlreadyStartedError:
                pass  # closed under this id: the stored import says how it went
        async with sessionmaker() as session:
            final = await session.get(AccountStatusImport, record.id)
            assert final is not None
            if result is None and final.status != FileImportStatus.COMPLETED:
                raise ResourceBusy("file", f"l'import de ce fichier a échoué, voir le workflow {wf_id}")
            problems = list(final.problems)
            stored = AccountStatusImportResult(
                import_id=final.id,
                rows=final.rows,
                applied=final.applied,
                activated=final.activated,
                unknown=final.unknown,
                errors=final.errors,
            )
    finally:
        await engine.dispose()
    return AccountStatusOutcome(organisation.name, wf_id, result is None, result or stored, problems)
