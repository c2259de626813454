"""Keyset pagination: the one cursor of every list (API and portal).

A cursor is the position of the last row of a page, as decimal digits, in base64url: the key of the list
read as a number. SIM lists are keyed by the ICCID (digits already); the other lists by their row id (32
hexadecimal digits, `models.new_id`), whose order as text is the order of its value as a 128-bit number.
One format, so one exact pattern in the OpenAPI (`api.schemas.page_cursor`), whatever the list.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

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
