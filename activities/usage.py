"""Usage side effects: an AccountStatus file applied to its organisation's SIMs in chunks, the OCS read of
the SIMs waiting for their first usage, and the publication of `sim_card.first_usage` events.

Idempotency: the file's cursor moves in the same transaction as the chunk it covers, so a retried (or
duplicated) attempt resumes after the last committed chunk and never applies a row twice; a first usage is
recorded once (conditional on the SIM's status, under a row lock) and its event goes out from the outbox
(`domain.services.usage`) with one stable event id per SIM.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from activities.webhooks import EventPublisher
from domain.account_status import AccountStatusRow, parse_account_status
from domain.enums import FileImportStatus, SimStatus
from domain.errors import DomainError, ErrorCode, NotFound, ValidationFailed
from domain.lifecycle_contracts import plan_balance_id
from domain.models import AccountStatusImport, SimCard
from domain.services.lines import aware, record_sim_usage
from domain.services.usage import (
    FIRST_USAGE_EVENT,
    MAX_PROBLEMS,
    apply_account_status_rows,
    first_usage_candidates,
    mark_first_usage_published,
    pending_first_usages,
    problem_dicts,
)
from domain.usage_contracts import (
    AccountStatusImportResult,
    ApplyAccountStatus,
    FirstUsageCheck,
    FirstUsageChecked,
    FirstUsagePublished,
    PublishFirstUsage,
    ocs_shows_usage,
)
from infra.settings import Settings
from integrations.ocs import DATA, OcsClient
from workflows import activity_names as names


def _result(record: AccountStatusImport) -> AccountStatusImportResult:
    return AccountStatusImportResult(
        import_id=record.id,
        rows=record.rows,
        applied=record.applied,
        activated=record.activated,
        unknown=record.unknown,
        errors=record.errors,
    )


@translates_errors
class UsageActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        ocs: OcsClient,
        settings: Settings,
        publish: EventPublisher,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._ocs = ocs
        self._settings = settings
        self._publish = publish

    # --- AccountStatus file -------------------------------------------------------------------------

    @activity.defn(name=names.USAGE_APPLY_ACCOUNT_STATUS)
    async def apply_account_status(self, data: ApplyAccountStatus) -> AccountStatusImportResult:
        """Applies the stored file from its cursor, `chunk_rows` rows per transaction, heartbeating after
        each; then closes the import with its counts and reported rows. A closed import answers its counts."""
        async with self._sessionmaker() as session:
            record = await session.get(AccountStatusImport, data.import_id)
            if record is None or record.org_id != data.org_id:
                raise NotFound("import_id", "AccountStatus import not found", code=ErrorCode.USAGE_IMPORT_NOT_FOUND)
            if record.status == FileImportStatus.COMPLETED:
                return _result(record)
            content, cursor = record.content, record.next_row
        try:
            parsed = parse_account_status(content)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.field, exc.reason, code=ErrorCode.USAGE_INVALID_FILE) from exc
        rows = parsed.rows
        chunk = max(1, data.chunk_rows)
        while cursor < len(rows):
            end = min(cursor + chunk, len(rows))
            async with self._sessionmaker.begin() as session:
                cursor, end = await self._apply_chunk(session, data, rows, cursor, end)
            cursor = end
            activity.heartbeat(cursor)
        async with self._sessionmaker.begin() as session:
            record = await session.get(
                AccountStatusImport, data.import_id, populate_existing=True, with_for_update=True
            )
            assert record is not None
            if record.status != FileImportStatus.COMPLETED:
                problems = [*problem_dicts(parsed.rejected), *record.problems]
                problems.sort(key=lambda p: int(p["row"]))
                record.problems = problems[:MAX_PROBLEMS]
                record.rows = parsed.total
                record.errors = len(parsed.rejected)
                record.status = FileImportStatus.COMPLETED
                record.finished_at = datetime.now(UTC)
            return _result(record)

    @staticmethod
    async def _apply_chunk(
        session: AsyncSession, data: ApplyAccountStatus, rows: list[AccountStatusRow], cursor: int, end: int
    ) -> tuple[int, int]:
        """Moves the cursor from `cursor` to `end` and applies those rows, in the caller's transaction. When
        another attempt moved it first, applies nothing and answers where it stands."""
        moved = await session.execute(
            update(AccountStatusImport)
            .where(AccountStatusImport.id == data.import_id, AccountStatusImport.next_row == cursor)
            .values(next_row=end)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) != 1:
            query = select(AccountStatusImport.next_row).where(AccountStatusImport.id == data.import_id)
            current = int((await session.execute(query)).scalar_one())
            return current, current
        outcome = await apply_account_status_rows(session, org_id=data.org_id, rows=rows[cursor:end], actor=data.actor)
        record = await session.get(AccountStatusImport, data.import_id, populate_existing=True)
        assert record is not None
        record.applied += outcome.applied
        record.activated += outcome.activated
        record.unknown += outcome.unknown
        if outcome.problems and len(record.problems) < MAX_PROBLEMS:
            record.problems = [*record.problems, *problem_dicts(outcome.problems)][:MAX_PROBLEMS]
        await session.flush()
        return cursor, end

    # --- first usage in the OCS ---------------------------------------------------------------------

    @activity.defn(name=names.USAGE_CHECK_FIRST_USAGE)
    async def check_first_usage(self, data: FirstUsageCheck) -> FirstUsageChecked:
        """Reads the OCS account of up to `limit` SIMs waiting for their first usage (after `after_iccid`)
        and records what it shows; a plan balance below the plan's allowance is a first usage."""
        async with self._sessionmaker() as session:
            candidates = await first_usage_candidates(
                session, org_id=data.org_id, after_iccid=data.after_iccid, limit=data.limit
            )
        activated = missing = 0
        for candidate in candidates:
            account = await self._ocs.get_account(
                candidate.ocs_account, request_id=f"{data.request_prefix}:{candidate.iccid}"
            )
            activity.heartbeat(candidate.iccid)
            if account is None:
                missing += 1
                continue
            now = datetime.now(UTC)
            plan = account.balance(plan_balance_id(candidate.plan_id), DATA) if candidate.plan_id else None
            used = ocs_shows_usage(int(plan.value) if plan is not None else None, candidate.plan_allowance_bytes)
            expires_at = aware(plan.expires_at) if plan is not None else None
            remaining_days = max(0, (expires_at - now) // timedelta(days=1)) if expires_at is not None else None
            async with self._sessionmaker.begin() as session:
                sim = await session.get(SimCard, candidate.sim_id, with_for_update=True, populate_existing=True)
                if sim is None or sim.status is not SimStatus.READY_FOR_ACTIVATION:
                    continue  # changed since the list was read (suspended, terminated, used)
                first = await record_sim_usage(
                    session,
                    sim,
                    actor=data.actor,
                    remaining_bytes=int(account.total(DATA, now)),
                    remaining_days=remaining_days,
                    used=used,
                )
                activated += int(first)
        return FirstUsageChecked(
            checked=len(candidates),
            activated=activated,
            missing_accounts=missing,
            last_iccid=candidates[-1].iccid if candidates else data.after_iccid,
            more=len(candidates) >= data.limit,
        )

    # --- the first-usage event outbox ---------------------------------------------------------------

    @activity.defn(name=names.USAGE_PUBLISH_FIRST_USAGE)
    async def publish_first_usage(self, data: PublishFirstUsage) -> FirstUsagePublished:
        """Publishes `sim_card.first_usage` for up to `limit` SIMs whose first usage is not yet announced
        (event id `first-usage:{iccid}`: publishing again after a crash sends nothing twice), then marks
        each one published."""
        async with self._sessionmaker() as session:
            pending = await pending_first_usages(session, org_id=data.org_id, limit=data.limit + 1)
        published = 0
        for item in pending[: data.limit]:
            try:
                await self._publish(
                    activity.client(),
                    self._settings,
                    item.org_id,
                    FIRST_USAGE_EVENT,
                    item.data,
                    event_id=item.event_id,
                    sessionmaker=self._sessionmaker,
                )
            except ValidationFailed as exc:  # not in the catalogue: a programming error, not worth retrying
                raise DomainError(exc.field, exc.reason, code=ErrorCode.WEBHOOK_UNKNOWN_EVENT) from exc
            async with self._sessionmaker.begin() as session:
                await mark_first_usage_published(session, sim_id=item.sim_id, at=datetime.now(UTC))
            published += 1
            activity.heartbeat(published)
        return FirstUsagePublished(published=published, more=len(pending) > data.limit)
