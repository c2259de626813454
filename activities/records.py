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
from temporalio.exceptions import ApplicationError

from domain.authz import TenantChain
from domain.contracts import MarkCfastFailed, SaveCfastIds, UpdateRecordInput
from domain.enums import CfastSyncStatus
from domain.errors import DomainError
from domain.models import BillingSite, Company, Parc, UpdateRecord
from domain.services.tenancy import ensure_in_tenant
from workflows import activity_names as names


class RecordActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name=names.RECORD_UPDATE)
    async def record_update(self, data: UpdateRecordInput) -> None:
        values = data.model_dump(mode="python")
        async with self._sessionmaker.begin() as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            await session.execute(
                insert(UpdateRecord).values(**values).on_conflict_do_nothing(index_elements=["reference"])
            )

    @activity.defn(name=names.COMPANY_SAVE_CFAST_IDS)
    async def save_cfast_ids(self, data: SaveCfastIds) -> None:
        async with self._sessionmaker.begin() as session:
            tenant = TenantChain(data.org_id, data.company_id)
            try:
                company: Company = await ensure_in_tenant(session, "company_id", data.company_id, tenant)
                site: BillingSite = await ensure_in_tenant(session, "billing_site_id", data.billing_site_id, tenant)
                parc: Parc = await ensure_in_tenant(session, "parc_id", data.parc_id, tenant)
            except DomainError as exc:
                raise ApplicationError(
                    "company, billing site or parc not found", type="NotFound", non_retryable=True
                ) from exc
            company.cfast_customer_id = data.customer_id
            company.cfast_status = CfastSyncStatus.SYNCED
            site.cfast_billing_point_id = data.billing_point_id
            parc.cfast_site_id = data.site_id

    @activity.defn(name=names.COMPANY_MARK_CFAST_FAILED)
    async def mark_cfast_failed(self, data: MarkCfastFailed) -> None:
        async with self._sessionmaker.begin() as session:
            try:
                company: Company | None = await ensure_in_tenant(
                    session, "company_id", data.company_id, TenantChain(data.org_id, data.company_id), missing_ok=True
                )
            except DomainError as exc:
                raise ApplicationError("company not found", type="NotFound", non_retryable=True) from exc
            if company is not None and company.cfast_status is not CfastSyncStatus.SYNCED:
                company.cfast_status = CfastSyncStatus.FAILED
