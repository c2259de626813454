"""Keyset pagination: the one cursor of every list (API and portal).

A cursor is the position of the last row of a page, as decimal digits, in base64url: the key of the list
read as a number. SIM lists are keyed by the ICCID (digits already); the other lists by their row id (32
hexadecimal digits, `models.new_id`), whose order as text is the order of its value as a 128-bit number.
One format, so one exact pattern in the OpenAPI (`api.schemas.page_cursor`), whatever the list.

Lists kept in another order than their id: by a unique text (`by_text`: staff by e-mail; the text's UTF-8
bytes, behind a 0x01 byte, read as a number), by a number in E.164 (`by_msisdn`), or by creation time then
id (`CreatedKeyset`: API keys newest first, webhook endpoints oldest first; 17 digits of microseconds since
1970, then the id's 39). The database compares the column itself, so its own order is the page order.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_

from domain.errors import ValidationFailed

Row = TypeVar("Row")
AnySelect = Select[*tuple[Any, ...]]  # a query of any columns
ID_DIGITS = 39  # 2**128 - 1 has 39 decimal digits
_ID_LIMIT = 2**128


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The digits of a cursor (its `=` padding may be left out), or a 422 naming `cursor`."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor", "curseur de pagination invalide") from exc
    if not value.isdigit() or not value.isascii():
        raise ValidationFailed("cursor", "curseur de pagination invalide")
    return value


def _id_position(row_id: str) -> str:
    return str(int(row_id, 16))


def _position_id(digits: str) -> str:
    value = int(digits)
    if value >= _ID_LIMIT:
        raise ValidationFailed("cursor", "curseur de pagination invalide")
    return f"{value:032x}"


@dataclass(frozen=True)
class Keyset:
    """A list ordered by one unique text column, paged after the last key seen."""

    column: Any  # the ordering column (unique)
    max_digits: int
    to_position: Callable[[str], str]
    from_position: Callable[[str], str]

    def apply(self, query: AnySelect, cursor: str | None, limit: int) -> AnySelect:
        """The query of one page: after the cursor's key, in key order, one row more than the page."""
        if cursor is not None:
            digits = decode_cursor(cursor)
            if len(digits) > self.max_digits:
                raise ValidationFailed("cursor", "curseur de pagination invalide")
            query = query.where(self.column > self.from_position(digits))
        return query.order_by(self.column).limit(limit + 1)

    def page(self, rows: Sequence[Row], limit: int, key: Callable[[Row], str]) -> tuple[list[Row], str | None]:
        """The page's rows and the cursor of the next page (None on the last page)."""
        items = list(rows[:limit])
        return items, encode_cursor(self.to_position(key(items[-1]))) if len(rows) > limit else None


def by_iccid(column: Any) -> Keyset:
    return Keyset(column, 21, to_position=lambda iccid: iccid, from_position=lambda digits: digits)


def by_id(column: Any) -> Keyset:
    return Keyset(column, ID_DIGITS, to_position=_id_position, from_position=_position_id)


def _text_position(text: str) -> str:
    return str(int.from_bytes(b"\x01" + text.encode(), "big"))


def _position_text(digits: str) -> str:
    """The text of a position. Any digits the cursor's pattern admits are a position (as for the other
    lists): digits that no page issued still give a text to compare with, never NUL (not storable)."""
    value = int(digits)
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big").removeprefix(b"\x01")
    return raw.decode(errors="replace").replace("\x00", "\ufffd")


def text_digits(max_bytes: int) -> int:
    """Digits of the cursor of a text of up to `max_bytes` UTF-8 bytes."""
    return len(str(256 ** (max_bytes + 1)))


def by_text(column: Any, max_bytes: int) -> Keyset:
    return Keyset(column, text_digits(max_bytes), to_position=_text_position, from_position=_position_text)


def by_msisdn(column: Any) -> Keyset:
    """Numbers stored in E.164 (`+` and up to 15 digits)."""
    return Keyset(column, 15, to_position=lambda msisdn: msisdn.removeprefix("+"), from_position=lambda d: f"+{d}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = 17


@dataclass(frozen=True)
class CreatedKeyset:
    """A list ordered by creation time (newest or oldest first), then by id for equal times."""

    created: Any
    row_id: Any
    newest_first: bool
    max_digits: int = _MICROS + ID_DIGITS

    def apply(self, query: AnySelect, cursor: str | None, limit: int) -> AnySelect:
        if cursor is not None:
            digits = decode_cursor(cursor)
            if len(digits) > self.max_digits:
                raise ValidationFailed("cursor", "curseur de pagination invalide")
            digits = digits.zfill(self.max_digits)  # any admitted digits are a position, as for the others
            at = _EPOCH + timedelta(microseconds=int(digits[:_MICROS]))
            last_id = f"{min(int(digits[_MICROS:]), _ID_LIMIT - 1):032x}"
            beyond = self.created < at if self.newest_first else self.created > at
            query = query.where(or_(beyond, and_(self.created == at, self.row_id > last_id)))
        order = self.created.desc() if self.newest_first else self.created
        return query.order_by(order, self.row_id).limit(limit + 1)

    def page(
        self, rows: Sequence[Row], limit: int, key: Callable[[Row], tuple[datetime, str]]
    ) -> tuple[list[Row], str | None]:
        items = list(rows[:limit])
        if len(rows) <= limit:
            return items, None
        created, row_id = key(items[-1])
        aware = created if created.tzinfo else created.replace(tzinfo=UTC)
        micros = (aware - _EPOCH) // timedelta(microseconds=1)
        return items, encode_cursor(f"{micros:0{_MICROS}d}{_id_position(row_id):0>{ID_DIGITS}}")
