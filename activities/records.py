"""Database side effects of workflows: update (MAJ) records and the CFAST ids of a company.

Each write is idempotent: MAJ records are unique by reference, id updates are plain overwrites.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.contracts import MarkCfastFailed, SaveCfastIds, UpdateRecordInput
from domain.enums import CfastSyncStatus
from domain.models import BillingSite, Company, Parc, UpdateRecord
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
            company = await session.get(Company, data.company_id)
            site = await session.get(BillingSite, data.billing_site_id)
            parc = await session.get(Parc, data.parc_id)
            if company is None or site is None or parc is None:
                raise ApplicationError("company, billing site or parc not found", type="NotFound", non_retryable=True)
            company.cfast_customer_id = data.customer_id
            company.cfast_status = CfastSyncStatus.SYNCED
            site.cfast_billing_point_id = data.billing_point_id
            parc.cfast_site_id = data.site_id

    @activity.defn(name=names.COMPANY_MARK_CFAST_FAILED)
    async def mark_cfast_failed(self, data: MarkCfastFailed) -> None:
        async with self._sessionmaker.begin() as session:
            company = await session.get(Company, data.company_id)
            if company is not None and company.cfast_status is not CfastSyncStatus.SYNCED:
                company.cfast_status = CfastSyncStatus.FAILED
