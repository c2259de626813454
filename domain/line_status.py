"""The line status machine (SPEC §2, CFAST "Activité"), enforced in this one place like `sim_status`."""

from __future__ import annotations

from domain.enums import LineStatus
from domain.errors import IllegalTransition

L = LineStatus

ALLOWED_LINE_TRANSITIONS: dict[LineStatus, frozenset[LineStatus]] = {
    # A line is built by its activation; a failed activation leaves it obsolete (kept for history).
    L.UNDER_CONSTRUCTION: frozenset({L.ACTIVE, L.OBSOLETE}),
    L.ACTIVE: frozenset({L.SUSPENDED, L.INACTIVE, L.TERMINATED}),
    L.SUSPENDED: frozenset({L.ACTIVE, L.INACTIVE, L.TERMINATED}),
    L.INACTIVE: frozenset({L.ACTIVE, L.SUSPENDED, L.TERMINATED}),
    L.TERMINATED: frozenset({L.OBSOLETE}),
    L.OBSOLETE: frozenset(),
}

LINE_STATUS_LABELS_FR: dict[LineStatus, str] = {
    L.UNDER_CONSTRUCTION: "En cours de construction",
    L.ACTIVE: "Actif",
    L.INACTIVE: "Inactif",
    L.SUSPENDED: "Suspendu",
    L.TERMINATED: "Résilié",
    L.OBSOLETE: "Obsolète",
}


def check_line_transition(current: LineStatus, target: LineStatus) -> None:
    """Raises IllegalTransition unless `current -> target` is allowed (same status is a no-op)."""
    if current == target:
        return
    if target not in ALLOWED_LINE_TRANSITIONS[current]:
        raise IllegalTransition(
            "status",
            f"transition de statut de ligne interdite : {current.value} → {target.value}",
        )
