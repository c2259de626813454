"""The AccountStatus file parser (docs/decisions.md, "AccountStatus file"): tolerant of BOM, CRLF and blank
lines, every rejected row reported with its line number and field, the file refused as a whole only when
it cannot be read as an AccountStatus file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.account_status import parse_account_status
from domain.errors import ValidationFailed
from domain.identifiers import iccid_with_check_digit
from domain.usage_contracts import ocs_shows_usage

HEADER = "iccid;msisdn;status;data_used_bytes;data_remaining_bytes;last_usage_at"
A = iccid_with_check_digit("893301000000000001")
B = iccid_with_check_digit("893301000000000002")
C = iccid_with_check_digit("893301000000000003")


def issues(content: str | bytes) -> list[tuple[int, str, str]]:
    raw = content.encode() if isinstance(content, str) else content
    parsed = parse_account_status(raw)
    return [(r.row, r.iccid, issue.field) for r in parsed.rejected for issue in r.errors]


def test_a_good_file() -> None:
    content = "\n".join(
        [
            HEADER,
            f"{A};0612345678;active;1048576;5367660544;2025-03-01T10:15:00Z",
            f"{B};+33612345679;ACTIVE;0;5368709120;",
            f"{C};;;;;",  # known SIM, nothing known about it
        ]
    )
    parsed = parse_account_status(content.encode())
    assert parsed.rejected == [] and parsed.total == 3
    first, second, third = parsed.rows
    assert (first.line, first.iccid, first.msisdn, first.status) == (2, A, "+33612345678", "active")
    assert (first.data_used_bytes, first.data_remaining_bytes) == (1_048_576, 5_367_660_544)
    assert first.last_usage_at == datetime(2025, 3, 1, 10, 15, tzinfo=UTC)
    assert first.shows_usage
    assert (second.status, second.data_used_bytes, second.last_usage_at) == ("active", 0, None)
    assert not second.shows_usage
    assert (third.msisdn, third.data_used_bytes, third.data_remaining_bytes) == (None, None, None)
    assert not third.shows_usage


def test_bom_crlf_blank_lines_header_case_and_column_order() -> None:
    content = (
        "\ufeff DATA_USED_BYTES ;ICCID;last_usage_at\r\n"
        "\r\n"
        f"0;{A};2025-03-01 11:15:00\r\n"
        ";;\r\n"  # a spreadsheet's empty row
        "\r\n"
        f"2048;{B};\r\n"
    )
    parsed = parse_account_status(content.encode("utf-8"))
    assert parsed.rejected == []
    assert [(r.line, r.iccid, r.data_used_bytes) for r in parsed.rows] == [(3, A, 0), (6, B, 2048)]
    # Without an offset, the operator's local time (Europe/Paris, UTC+1 in March), kept in UTC.
    assert parsed.rows[0].last_usage_at == datetime(2025, 3, 1, 10, 15, tzinfo=UTC)
    assert parsed.rows[0].shows_usage  # a last usage is usage, even with no data counted
    assert parsed.rows[1].shows_usage


def test_old_mac_line_ends() -> None:
    parsed = parse_account_status(f"iccid;data_used_bytes\r{A};1\r{B};0\r".encode())
    assert [(r.line, r.iccid) for r in parsed.rows] == [(2, A), (3, B)]


def test_voice_or_sms_alone_is_usage() -> None:
    content = f"iccid;data_used_bytes;voice_used_seconds;sms_used\n{A};0;35;0\n{B};;0;2\n{C};0;0;0\n"
    assert [r.shows_usage for r in parse_account_status(content.encode()).rows] == [True, True, False]


def test_bad_rows_are_reported_with_line_and_field() -> None:
    bad_luhn = A[:-1] + str((int(A[-1]) + 1) % 10)
    content = "\n".join(
        [
            HEADER,
            f"{bad_luhn};;;0;;",  # line 2: Luhn
            f"{A};0112345678;;0;;",  # line 3: not a mobile number
            f"{B};;sleeping;-5;12abc;yesterday",  # line 4: four bad fields
            "",  # line 5: blank, skipped
            f"{C};;active;10;;",  # line 6: good
            f"{C};;active;20;;",  # line 7: duplicate ICCID
        ]
    )
    parsed = parse_account_status(content.encode())
    assert [r.iccid for r in parsed.rows] == [C]
    assert issues(content) == [
        (2, bad_luhn, "iccid"),
        (3, A, "msisdn"),
        (4, B, "status"),
        (4, B, "data_used_bytes"),
        (4, B, "data_remaining_bytes"),
        (4, B, "last_usage_at"),
        (7, C, "iccid"),
    ]
    assert parsed.total == 5
    assert all(not r.accepted and r.errors for r in parsed.rejected)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"msisdn;status\n0612345678;active\n", "colonnes manquantes : iccid, data_used_bytes"),
        (f"iccid;data_used_bytes\n{A};1\n".encode("utf-16"), "UTF-8"),
        (f"iccid,data_used_bytes\n{A},1\n".encode(), "colonnes manquantes"),  # not our separator
    ],
)
def test_unreadable_files_are_refused_as_a_whole(content: bytes, reason: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_account_status(content)
    assert caught.value.field == "file" and reason in caught.value.reason


def test_ocs_usage_signal() -> None:
    allowance = 5 * 1024**3
    assert ocs_shows_usage(allowance - 1, allowance)
    assert not ocs_shows_usage(allowance, allowance)
    assert not ocs_shows_usage(None, allowance) and not ocs_shows_usage(allowance - 1, None)
