"""Database side effects of workflows: update (MAJ) records and the CFAST ids of a company.

Each write is idempotent: MAJ records are unique by reference, id updates are plain overwrites. The company,
billing site and parc ids come from the workflow input: each must belong to the organisation the workflow
runs for (`ensure_in_tenant`), or nothing is written.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from domain.audit import AuditEntry, bind_context, record, reset_context
from domain.authz import TenantChain
from domain.contracts import MarkCfastFailed, SaveCfastIds, UpdateRecordInput
from domain.enums import CfastSyncStatus
from domain.models import BillingSite, Company, Parc, UpdateRecord
from domain.security_contracts import AuditRecordInput
from domain.services.tenancy import ensure_in_tenant
from workflows import activity_names as names


async def insert_update_record(session: AsyncSession, data: UpdateRecordInput) -> None:
    """One MAJ record in the caller's transaction, once per reference."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(UpdateRecord)
        .values(**data.model_dump(mode="python"))
        .on_conflict_do_nothing(index_elements=["reference"])
    )


async def write_audit_row(session: AsyncSession, data: AuditRecordInput) -> None:
    """A workflow's audit row in the caller's transaction, once per `reference` (retries write nothing more)."""
    workflow_id = data.workflow_id or activity.info().workflow_id
    token = bind_context(workflow_id=workflow_id)
    try:
        await record(
            session,
            AuditEntry(
                actor=data.actor,
                actor_kind=data.actor_kind,
                action=data.action,
                result=data.result,
                org_id=data.org_id,
                company_id=data.company_id,
                end_user_id=data.end_user_id,
                target=data.target,
                workflow_id=workflow_id,
                details=dict(data.details),
                reference=data.reference,
            ),
        )
    finally:
        reset_context(token)


@translates_errors
class RecordActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name=names.RECORD_UPDATE)
    async def record_update(self, data: UpdateRecordInput) -> None:
        async with self._sessionmaker.begin() as session:
            await insert_update_record(session, data)

    @activity.defn(name=names.COMPANY_SAVE_CFAST_IDS)
    async def save_cfast_ids(self, data: SaveCfastIds) -> None:
        async with self._sessionmaker.begin() as session:
            tenant = TenantChain(data.org_id, data.company_id)
            company: Company = await ensure_in_tenant(session, "company_id", data.company_id, tenant)
            site: BillingSite = await ensure_in_tenant(session, "billing_site_id", data.billing_site_id, tenant)
            parc: Parc = await ensure_in_tenant(session, "parc_id", data.parc_id, tenant)
            company.cfast_customer_id = data.customer_id
            company.cfast_status = CfastSyncStatus.SYNCED
            site.cfast_billing_point_id = data.billing_point_id
            parc.cfast_site_id = data.site_id

    @activity.defn(name=names.COMPANY_MARK_CFAST_FAILED)
    async def mark_cfast_failed(self, data: MarkCfastFailed) -> None:
        async with self._sessionmaker.begin() as session:
            company: Company | None = await ensure_in_tenant(
                session, "company_id", data.company_id, TenantChain(data.org_id, data.company_id), missing_ok=True
            )
            if company is not None and company.cfast_status is not CfastSyncStatus.SYNCED:
                company.cfast_status = CfastSyncStatus.FAILED
