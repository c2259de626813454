"""Lines and their numbers: SIM reservation, MSISDN allocation from the organisation's ranges, port-in,
quarantine, the line journal and whether a line may still be topped up.

Concurrency: a SIM is reserved by one conditional UPDATE (`reserved_by IS NULL AND status = 'blank'`), and
a number by the unique `phone_numbers.msisdn` (INSERT, or conditional UPDATE of a free row), so two
activations can never hold the same SIM or the same number, on SQLite as on PostgreSQL.

Services take the session and never commit: the request or the activity owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import LineStatus, PhoneNumberStatus, SimStatus
from domain.errors import IllegalTransition, NotFound, ResourceBusy, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_msisdn, normalize_rio
from domain.line_status import check_line_transition
from domain.models import Line, LineChange, NumberRange, PhoneNumber, SimCard, SimChange, new_id
from domain.services.sims import change_sim

QUARANTINE_DAYS = 90
MAX_RANGE_SIZE = 1_000_000
P = PhoneNumberStatus


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored in UTC): make every comparison timezone-aware."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- number ranges ---------------------------------------------------------------------------------


def validate_range(first: str, last: str) -> tuple[str, str]:
    """Both ends normalised to E.164, same length, in order, at most MAX_RANGE_SIZE numbers."""
    try:
        first_e164 = normalize_msisdn(first)
    except InvalidIdentifier as exc:
        raise ValidationFailed("first_msisdn", exc.reason) from exc
    try:
        last_e164 = normalize_msisdn(last)
    except InvalidIdentifier as exc:
        raise ValidationFailed("last_msisdn", exc.reason) from exc
    if len(first_e164) != len(last_e164):
        raise ValidationFailed("last_msisdn", "les deux bornes doivent avoir le même nombre de chiffres")
    size = int(last_e164[1:]) - int(first_e164[1:]) + 1
    if size < 1:
        raise ValidationFailed("last_msisdn", "la dernière borne précède la première")
    if size > MAX_RANGE_SIZE:
        raise ValidationFailed("last_msisdn", f"plage trop grande (maximum {MAX_RANGE_SIZE} numéros)")
    return first_e164, last_e164


@dataclass(frozen=True)
class RangeUsage:
    size: int
    allocated: int  # on a line, or reserved by an activation in progress
    quarantined: int

    @property
    def in_use(self) -> int:
        return self.allocated + self.quarantined

    @property
    def free(self) -> int:
        return self.size - self.in_use


async def number_range_usage(session: AsyncSession, number_range: NumberRange) -> RangeUsage:
    """How many numbers of the range are taken, resting in quarantine, free (numbers the platform has never
    handed out have no row: they are free)."""
    rows = await session.execute(
        select(PhoneNumber.status, func.count())
        .where(PhoneNumber.range_id == number_range.id)
        .group_by(PhoneNumber.status)
    )
    counts: dict[PhoneNumberStatus, int] = {status: int(count) for status, count in rows}
    return RangeUsage(
        size=int(number_range.last_msisdn[1:]) - int(number_range.first_msisdn[1:]) + 1,
        allocated=counts.get(PhoneNumberStatus.RESERVED, 0) + counts.get(PhoneNumberStatus.ASSIGNED, 0),
        quarantined=counts.get(PhoneNumberStatus.QUARANTINED, 0),
    )


async def create_number_range(
    session: AsyncSession, *, org_id: str, label: str, first_msisdn: str, last_msisdn: str, carrier: str | None
) -> NumberRange:
    first, last = validate_range(first_msisdn, last_msisdn)
    overlapping = await session.execute(
        select(NumberRange.id).where(
            func.length(NumberRange.first_msisdn) == len(first),
            NumberRange.first_msisdn <= last,
            NumberRange.last_msisdn >= first,
        )
    )
    if overlapping.first() is not None:
        raise ResourceBusy("first_msisdn", "cette plage chevauche une plage existante")
    number_range = NumberRange(org_id=org_id, label=label, first_msisdn=first, last_msisdn=last, carrier=carrier)
    session.add(number_range)
    await session.flush()
    return number_range


def _free_condition(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        PhoneNumber.status == P.AVAILABLE,
        and_(PhoneNumber.status == P.QUARANTINED, PhoneNumber.quarantine_until <= now),
    )


def _is_free(row: PhoneNumber, now: datetime) -> bool:
    if row.status is P.AVAILABLE:
        return True
    until = aware(row.quarantine_until)
    return row.status is P.QUARANTINED and until is not None and until <= now


async def _take_number(
    session: AsyncSession,
    *,
    org_id: str,
    msisdn: str,
    range_id: str | None,
    reservation_key: str,
    now: datetime,
    ported_in: bool = False,
    known: PhoneNumber | None = None,
    look_up: bool = True,
) -> PhoneNumber | None:
    """Reserves `msisdn` for `reservation_key` if nobody holds it; None when it is taken."""
    row = known
    if row is None and look_up:
        row = (await session.execute(select(PhoneNumber).where(PhoneNumber.msisdn == msisdn))).scalar_one_or_none()
    if row is None:
        # INSERT … ON CONFLICT DO NOTHING: when another activation inserted the number between our read and
        # our insert, nothing is written and no error poisons the transaction (no savepoint needed).
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        inserted = await session.execute(
            insert(PhoneNumber)
            .values(
                id=new_id(),
                org_id=org_id,
                msisdn=msisdn,
                range_id=range_id,
                status=P.RESERVED,
                ported_in=ported_in,
                reservation_key=reservation_key,
            )
            .on_conflict_do_nothing(index_elements=["msisdn"])
        )
        if getattr(inserted, "rowcount", 0) != 1:
            return None
        return (await session.execute(select(PhoneNumber).where(PhoneNumber.msisdn == msisdn))).scalar_one()
    if row.org_id != org_id:
        return None
    taken = await session.execute(
        update(PhoneNumber)
        .where(PhoneNumber.id == row.id, _free_condition(now))
        .values(
            status=P.RESERVED,
            reservation_key=reservation_key,
            line_id=None,
            quarantine_until=None,
            ported_in=ported_in,
            range_id=range_id,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        return None
    await session.refresh(row)
    return row


async def _held_by(session: AsyncSession, reservation_key: str) -> PhoneNumber | None:
    query = select(PhoneNumber).where(
        PhoneNumber.reservation_key == reservation_key, PhoneNumber.status.in_([P.RESERVED, P.ASSIGNED])
    )
    return (await session.execute(query)).scalars().first()


async def _ranges(session: AsyncSession, org_id: str) -> list[NumberRange]:
    query = (
        select(NumberRange)
        .where(NumberRange.org_id == org_id, NumberRange.active.is_(True))
        .order_by(NumberRange.first_msisdn)
    )
    return list((await session.execute(query)).scalars())


async def allocate_msisdn(
    session: AsyncSession, *, org_id: str, reservation_key: str, now: datetime, requested: str | None = None
) -> PhoneNumber:
    """Reserves the requested number, or the lowest free number of the organisation's ranges.

    Idempotent: the number already held by `reservation_key` is returned as is.
    """
    held = await _held_by(session, reservation_key)
    if held is not None:
        return held
    ranges = await _ranges(session, org_id)
    if requested is not None:
        try:
            msisdn = normalize_msisdn(requested)
        except InvalidIdentifier as exc:
            raise ValidationFailed("msisdn", exc.reason) from exc
        owner = next(
            (r for r in ranges if len(r.first_msisdn) == len(msisdn) and r.first_msisdn <= msisdn <= r.last_msisdn),
            None,
        )
        if owner is None:
            raise ValidationFailed("msisdn", "numéro hors des plages de l'organisation")
        taken = await _take_number(
            session, org_id=org_id, msisdn=msisdn, range_id=owner.id, reservation_key=reservation_key, now=now
        )
        if taken is None:
            raise ResourceBusy("msisdn", "numéro déjà attribué ou en quarantaine")
        return taken
    for number_range in ranges:
        width = len(number_range.first_msisdn)
        rows = (
            await session.execute(
                select(PhoneNumber).where(
                    func.length(PhoneNumber.msisdn) == width,
                    PhoneNumber.msisdn >= number_range.first_msisdn,
                    PhoneNumber.msisdn <= number_range.last_msisdn,
                )
            )
        ).scalars()
        known = {row.msisdn: row for row in rows}
        first, last = int(number_range.first_msisdn[1:]), int(number_range.last_msisdn[1:])
        for value in range(first, last + 1):
            candidate = f"+{value}"
            row = known.get(candidate)
            if row is not None and not _is_free(row, now):
                continue
            taken = await _take_number(
                session,
                org_id=org_id,
                msisdn=candidate,
                range_id=number_range.id,
                reservation_key=reservation_key,
                now=now,
                known=row,
                look_up=False,
            )
            if taken is not None:
                return taken
    raise ResourceBusy("msisdn", "plus aucun numéro libre dans les plages de l'organisation")


async def reserve_port_in(
    session: AsyncSession, *, org_id: str, msisdn: str, rio: str, reservation_key: str, now: datetime
) -> PhoneNumber:
    """Checks the RIO key against the number and reserves the number being ported in."""
    try:
        e164 = normalize_msisdn(msisdn)
    except InvalidIdentifier as exc:
        raise ValidationFailed("port_in.msisdn", exc.reason) from exc
    try:
        normalize_rio(rio, e164)
    except InvalidIdentifier as exc:
        raise ValidationFailed(f"port_in.{exc.field}", exc.reason) from exc
    held = await _held_by(session, reservation_key)
    if held is not None:
        return held
    taken = await _take_number(
        session, org_id=org_id, msisdn=e164, range_id=None, reservation_key=reservation_key, now=now, ported_in=True
    )
    if taken is None:
        raise ResourceBusy("port_in.msisdn", "ce numéro est déjà utilisé sur la plateforme")
    return taken


async def release_msisdn(session: AsyncSession, *, reservation_key: str) -> int:
    """Gives back a number reserved (not yet assigned) by `reservation_key`; returns how many."""
    result = await session.execute(
        update(PhoneNumber)
        .where(PhoneNumber.reservation_key == reservation_key, PhoneNumber.status == P.RESERVED)
        .values(status=P.AVAILABLE, reservation_key=None, line_id=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def assign_msisdn(session: AsyncSession, *, reservation_key: str, line_id: str) -> None:
    await session.execute(
        update(PhoneNumber)
        .where(PhoneNumber.reservation_key == reservation_key, PhoneNumber.status.in_([P.RESERVED, P.ASSIGNED]))
        .values(status=P.ASSIGNED, line_id=line_id)
        .execution_options(synchronize_session=False)
    )


async def quarantine_msisdn(session: AsyncSession, *, line_id: str, until: datetime) -> int:
    """The terminated line's number rests until `until` before it can be allocated again."""
    result = await session.execute(
        update(PhoneNumber)
        .where(PhoneNumber.line_id == line_id, PhoneNumber.status.in_([P.ASSIGNED, P.RESERVED]))
        .values(status=P.QUARANTINED, quarantine_until=until, reservation_key=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- SIM reservation -------------------------------------------------------------------------------


async def reserve_sim(
    session: AsyncSession,
    *,
    org_id: str,
    iccid: str,
    reservation_key: str,
    company_id: str,
    actor: str,
    exclusive: bool = False,
) -> SimCard:
    """Holds a blank SIM of the organisation for one activation. Idempotent for the same key (unless
    `exclusive`: then only the caller that made the reservation succeeds); any other holder, another
    company's SIM or a SIM that is not blank is refused."""
    result = await session.execute(
        update(SimCard)
        .where(
            SimCard.iccid == iccid,
            SimCard.org_id == org_id,
            SimCard.reserved_by.is_(None),
            SimCard.status == SimStatus.BLANK,
            or_(SimCard.company_id.is_(None), SimCard.company_id == company_id),
        )
        .values(reserved_by=reservation_key)
        .execution_options(synchronize_session=False)
    )
    sim = (await session.execute(select(SimCard).where(SimCard.iccid == iccid))).scalar_one_or_none()
    if sim is None or sim.org_id != org_id:
        raise NotFound("iccid", "carte SIM introuvable")
    await session.refresh(sim)
    if getattr(result, "rowcount", 0) == 1:
        session.add(
            SimChange(sim_id=sim.id, field="reserved_by", old_value=None, new_value=reservation_key, actor=actor)
        )
        await session.flush()
        return sim
    if sim.reserved_by == reservation_key and not exclusive:
        return sim
    if sim.reserved_by == reservation_key:
        raise ResourceBusy("iccid", "une activation de cette SIM est déjà en cours")
    if sim.reserved_by is not None:
        raise ResourceBusy("iccid", "carte SIM déjà réservée par une autre activation")
    if sim.status is not SimStatus.BLANK:
        raise IllegalTransition("status", f"seule une SIM vierge peut être activée (statut : {sim.status.value})")
    raise ResourceBusy("company_id", "carte SIM attribuée à une autre entreprise")


async def release_sim(session: AsyncSession, *, iccid: str, reservation_key: str, actor: str) -> bool:
    """Gives the SIM back to the stock if `reservation_key` holds it (idempotent)."""
    sim = (await session.execute(select(SimCard).where(SimCard.iccid == iccid))).scalar_one_or_none()
    if sim is None or sim.reserved_by != reservation_key:
        return False
    if sim.status is SimStatus.READY_FOR_ACTIVATION:
        await change_sim(session, sim, actor=actor, status=SimStatus.BLANK)
    await change_sim(session, sim, actor=actor, reserved_by=None)
    return True


# --- lines -----------------------------------------------------------------------------------------


async def change_line(
    session: AsyncSession, line: Line, *, actor: str, workflow_id: str | None = None, **changes: object
) -> None:
    """Applies field changes through the line status machine, one journal entry per changed field."""
    for name, new in changes.items():
        old = getattr(line, name)
        if old == new:
            continue
        if name == "status":
            assert isinstance(new, LineStatus)
            check_line_transition(line.status, new)
        setattr(line, name, new)
        session.add(
            LineChange(
                line_id=line.id,
                field=name,
                old_value=None if old is None else str(getattr(old, "value", old)),
                new_value=None if new is None else str(getattr(new, "value", new)),
                actor=actor,
                workflow_id=workflow_id,
            )
        )
    await session.flush()


TOPUP_LINE_STATUSES = (LineStatus.ACTIVE,)


def topup_refusal(line: Line) -> str | None:
    """Why a top-up is refused on `line`, or None when it is accepted: only an active line with no
    termination scheduled takes a top-up.

    The deprovisioning workflow schedules the termination (and so closes this gate) in its first step,
    before its grace period; the recharge API checks the gate before writing the intent and the top-up
    workflow checks it again before charging. See docs/decisions.md.
    """
    if line.status not in TOPUP_LINE_STATUSES:
        return f"la ligne est {line.status.value} : recharge impossible"
    if line.termination_scheduled_for is not None:
        return "résiliation de la ligne programmée : recharge impossible"
    return None


def accepts_topup(line: Line) -> bool:
    return topup_refusal(line) is None


async def line_journal(session: AsyncSession, line_id: str) -> list[LineChange]:
    query = select(LineChange).where(LineChange.line_id == line_id).order_by(LineChange.at.desc(), LineChange.id.desc())
    return list((await session.execute(query)).scalars())


# --- usage -----------------------------------------------------------------------------------------


async def record_sim_usage(
    session: AsyncSession,
    sim: SimCard,
    *,
    actor: str,
    remaining_bytes: int | None,
    remaining_days: int | None,
    used: bool,
    month_usage_bytes: int | None = None,
    used_at: datetime | None = None,
) -> bool:
    """Stores the usage read from the OCS (or the AccountStatus file); the first usage turns a SIM
    `ready_for_activation` into `active` (seed 000 FAQ) and dates it (`first_usage_at`, at `used_at` or
    now), which queues its `sim_card.first_usage` event (see `domain.services.usage`). Returns True when
    that happened."""
    sim.remaining_bytes = remaining_bytes
    sim.remaining_days = remaining_days
    if month_usage_bytes is not None:
        sim.month_usage_bytes = month_usage_bytes
    if used and sim.status is SimStatus.READY_FOR_ACTIVATION:
        await change_sim(session, sim, actor=actor, status=SimStatus.ACTIVE)
        if sim.first_usage_at is None:
            sim.first_usage_at = used_at or datetime.now(UTC)
            await session.flush()
        return True
    await session.flush()
    return False
