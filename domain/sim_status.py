"""The SIM status machine (SPEC §2), enforced in this one place."""

from __future__ import annotations

from domain.enums import SimStatus
from domain.errors import IllegalTransition

S = SimStatus

ALLOWED_TRANSITIONS: dict[SimStatus, frozenset[SimStatus]] = {
    S.UNAVAILABLE: frozenset({S.PENDING, S.BLANK, S.INVALID}),
    S.PENDING: frozenset({S.BLANK, S.READY_FOR_ACTIVATION, S.INVALID, S.UNAVAILABLE}),
    S.BLANK: frozenset({S.PENDING, S.READY_FOR_ACTIVATION, S.INVALID, S.TERMINATED}),
    S.READY_FOR_ACTIVATION: frozenset({S.ACTIVE, S.SUSPENDED, S.BLANK, S.INVALID, S.TERMINATED}),
    S.ACTIVE: frozenset({S.SUSPENDED, S.INVALID, S.TERMINATED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.READY_FOR_ACTIVATION, S.INVALID, S.TERMINATED}),
    S.INVALID: frozenset({S.PENDING, S.BLANK, S.TERMINATED}),
    S.TERMINATED: frozenset(),
}


def check_transition(current: SimStatus, target: SimStatus) -> None:
    """Raises IllegalTransition unless `current -> target` is allowed (same status is a no-op)."""
    if current == target:
        return
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(
            "status",
            f"transition de statut interdite : {current.value} → {target.value}",
        )
