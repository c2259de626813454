"""The status machines and the pure rules of the SIM lifecycle: one place decides, illegal moves are refused
with a clear reason."""

from __future__ import annotations

import pytest

from domain.enums import LineStatus, SimStatus
from domain.errors import IllegalTransition, ValidationFailed
from domain.identifiers import iccid_with_check_digit
from domain.line_status import ALLOWED_LINE_TRANSITIONS, check_line_transition
from domain.models import Line
from domain.services.bulk import normalise_items
from domain.services.lines import accepts_topup, validate_range
from domain.services.sims import _parse_row
from domain.sim_status import check_transition


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (SimStatus.BLANK, SimStatus.READY_FOR_ACTIVATION),
        (SimStatus.READY_FOR_ACTIVATION, SimStatus.ACTIVE),
        (SimStatus.ACTIVE, SimStatus.SUSPENDED),
        (SimStatus.SUSPENDED, SimStatus.READY_FOR_ACTIVATION),
        (SimStatus.ACTIVE, SimStatus.TERMINATED),
        (SimStatus.BLANK, SimStatus.TERMINATED),
    ],
)
def test_sim_lifecycle_moves_are_allowed(current: SimStatus, target: SimStatus) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (SimStatus.TERMINATED, SimStatus.ACTIVE),
        (SimStatus.BLANK, SimStatus.ACTIVE),
        (SimStatus.ACTIVE, SimStatus.BLANK),
        (SimStatus.PENDING, SimStatus.TERMINATED),
    ],
)
def test_illegal_sim_moves_are_refused_with_the_reason(current: SimStatus, target: SimStatus) -> None:
    with pytest.raises(IllegalTransition) as err:
        check_transition(current, target)
    assert err.value.field == "status" and f"{current.value} → {target.value}" in err.value.reason


def test_line_machine_covers_every_status_and_terminated_is_final() -> None:
    assert set(ALLOWED_LINE_TRANSITIONS) == set(LineStatus)
    check_line_transition(LineStatus.UNDER_CONSTRUCTION, LineStatus.ACTIVE)
    check_line_transition(LineStatus.UNDER_CONSTRUCTION, LineStatus.OBSOLETE)
    for target in (LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.UNDER_CONSTRUCTION):
        with pytest.raises(IllegalTransition):
            check_line_transition(LineStatus.TERMINATED, target)
    with pytest.raises(IllegalTransition):
        check_line_transition(LineStatus.UNDER_CONSTRUCTION, LineStatus.SUSPENDED)


def test_topup_gate() -> None:
    from datetime import UTC, datetime

    line = Line(status=LineStatus.ACTIVE, termination_scheduled_for=None)
    assert accepts_topup(line)
    line.termination_scheduled_for = datetime.now(UTC)
    assert not accepts_topup(line)
    for status in (LineStatus.SUSPENDED, LineStatus.TERMINATED, LineStatus.UNDER_CONSTRUCTION):
        assert not accepts_topup(Line(status=status, termination_scheduled_for=None))


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        ("0612345678", "0612345600", "last_msisdn"),
        ("0612345678", "+33700000000001", "last_msisdn"),
        ("0145678901", "0145678999", "first_msisdn"),
        ("0600000000", "0699999999", "last_msisdn"),  # more than a million numbers
    ],
)
def test_bad_number_ranges(first: str, last: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_range(first, last)
    assert err.value.field == field


def test_number_range_is_normalised() -> None:
    assert validate_range("06 12 34 56 00", "0612345699") == ("+33612345600", "+33612345699")
    assert validate_range("0700 00 00 00 00 00", "07000000000099") == ("+337000000000000", "+337000000000099")


def test_bulk_iccids_are_checked_and_deduplicated() -> None:
    first, second = iccid_with_check_digit("893312345678901234"), iccid_with_check_digit("8933123456789012345")
    spaced = " ".join(first[i : i + 4] for i in range(0, len(first), 4))
    items = normalise_items([spaced, second, first])
    assert [i.iccid for i in items] == [first, second]
    with pytest.raises(ValidationFailed) as err:
        normalise_items([first, "123"])
    assert err.value.field == "iccids.1"


@pytest.mark.parametrize(
    ("esim", "code", "accepted"),
    [
        ("1", "LPA:1$smdp.example.com$ABC-123", True),
        ("1", "", True),
        ("1", "https://example.com", False),
        ("0", "LPA:1$smdp.example.com$ABC", False),
    ],
)
def test_esim_activation_code(esim: str, code: str, accepted: bool) -> None:
    from tests.api._support import random_iccid, random_imsi

    row, report = _parse_row(
        2,
        {"iccid": random_iccid(), "imsi": random_imsi(), "carrier": "Orange", "esim": esim, "activation_code": code},
    )
    assert report.accepted is accepted, report.errors
    if accepted and code:
        assert row is not None and row.activation_code == code
