"""The SIM list's dynamic table (seed 000 "Tableau dynamique"): which columns, in which order.

The layout is kept in the `simflow_sim_columns` cookie as the column keys in display order, hidden ones
prefixed with `~` (`status.carrier.~note.…`), so the server renders the chosen table on the first paint.
The ICCID column (with the selection checkbox) is always shown first and is not part of the layout.
Unknown keys in the cookie are dropped; columns added to the product later appear with their default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

COLUMNS_COOKIE = "simflow_sim_columns"
HIDDEN_MARK = "~"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    default_visible: bool = True
    numeric: bool = False


# Seed 000 order (ICCID first, fixed), then columns one can add from the list.
SIM_COLUMNS: tuple[Column, ...] = (
    Column("in_session", "En session"),
    Column("carrier", "Opérateur"),
    Column("plan", "Forfait"),
    Column("company", "Entreprise"),
    Column("end_user", "Utilisateur final"),
    Column("remaining_data", "Données restantes", numeric=True),
    Column("remaining_days", "Jours restants", numeric=True),
    Column("month_usage", "Ce mois-ci", numeric=True),
    Column("note", "Note"),
    Column("tags", "Étiquettes"),
    Column("sim_type", "Type de SIM"),
    Column("status", "Statut"),
    Column("imsi", "IMSI", default_visible=False),
    Column("imei", "IMEI", default_visible=False),
)
COLUMNS_BY_KEY = {c.key: c for c in SIM_COLUMNS}


@dataclass(frozen=True)
class LayoutEntry:
    column: Column
    visible: bool


@dataclass(frozen=True)
class ColumnLayout:
    entries: tuple[LayoutEntry, ...]

    @classmethod
    def default(cls) -> ColumnLayout:
        return cls(tuple(LayoutEntry(c, c.default_visible) for c in SIM_COLUMNS))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, bool]]) -> ColumnLayout:
        seen: dict[str, bool] = {}
        for key, visible in pairs:
            if key in COLUMNS_BY_KEY and key not in seen:
                seen[key] = visible
        for column in SIM_COLUMNS:
            seen.setdefault(column.key, column.default_visible)
        return cls(tuple(LayoutEntry(COLUMNS_BY_KEY[k], v) for k, v in seen.items()))

    @classmethod
    def from_cookie(cls, raw: str | None) -> ColumnLayout:
        if not raw:
            return cls.default()
        pairs = []
        for token in raw.split(".")[:64]:
            hidden = token.startswith(HIDDEN_MARK)
            pairs.append((token.removeprefix(HIDDEN_MARK), not hidden))
        return cls.from_pairs(pairs)

    @classmethod
    def from_form(cls, order: Sequence[str], visible: Sequence[str], fallback: ColumnLayout) -> ColumnLayout:
        """What the chooser posted: every key in displayed order, and the checked ones."""
        if not order:
            return fallback
        shown = set(visible)
        return cls.from_pairs((key, key in shown) for key in order)

    def to_cookie(self) -> str:
        return ".".join(e.column.key if e.visible else f"{HIDDEN_MARK}{e.column.key}" for e in self.entries)

    @property
    def visible_columns(self) -> list[Column]:
        return [e.column for e in self.entries if e.visible]

    def move(self, key: str, direction: str) -> ColumnLayout:
        """Moves a column one place up or down the list (its neighbour may be hidden)."""
        entries = list(self.entries)
        index = next((i for i, e in enumerate(entries) if e.column.key == key), None)
        if index is None:
            return self
        target = index - 1 if direction == "up" else index + 1 if direction == "down" else index
        if not 0 <= target < len(entries) or target == index:
            return self
        entries[index], entries[target] = entries[target], entries[index]
        return ColumnLayout(tuple(entries))

    def apply(self, action: str | None) -> ColumnLayout:
        """`reset`, or `<key>:up` / `<key>:down` from the chooser's buttons; anything else changes nothing."""
        if not action:
            return self
        if action == "reset":
            return ColumnLayout.default()
        key, _, direction = action.partition(":")
        return self.move(key, direction)
