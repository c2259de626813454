"""S6: webhook signatures — the seed header, the HMAC over `timestamp.body`, the parser under fuzzing."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.webhooks import (
    HASH_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    echo_answer_ok,
    hmac_signature,
    new_signing_secret,
    parse_signature_header,
    seed_hash,
    signature_headers,
    verify_signature,
)

BODY = b'{"id":"evt_1","type":"payment.created","data":{"amount_minor":500}}'
SECRET = "whsec_test_secret_0123456789"


def test_seed_hash_is_sha256_of_secret_colon_timestamp() -> None:
    assert seed_hash(SECRET, 1700000000) == hashlib.sha256(f"{SECRET}:1700000000".encode()).hexdigest()


def test_headers_carry_both_signatures() -> None:
    headers = signature_headers(BODY, [SECRET], 1700000000)
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[HASH_HEADER] == seed_hash(SECRET, 1700000000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"t=1700000000,v1={expected}"


def test_valid_fresh_signature_is_accepted() -> None:
    now = time.time()
    header = signature_headers(BODY, [SECRET], int(now))[SIGNATURE_HEADER]
    assert verify_signature(BODY, header, [SECRET], now)


@pytest.mark.parametrize(
    "case",
    ["tampered body", "wrong secret", "stale", "future", "missing v1", "garbage", "empty", "v0 only"],
)
def test_invalid_signatures_are_rejected(case: str) -> None:
    now = time.time()
    ts = int(now)
    body, secrets_, header = BODY, [SECRET], signature_headers(BODY, [SECRET], ts)[SIGNATURE_HEADER]
    if case == "tampered body":
        body = BODY.replace(b"500", b"50000")
    elif case == "wrong secret":
        secrets_ = [new_signing_secret()]
    elif case == "stale":
        header = signature_headers(BODY, [SECRET], ts - 301)[SIGNATURE_HEADER]
    elif case == "future":
        header = signature_headers(BODY, [SECRET], ts + 301)[SIGNATURE_HEADER]
    elif case == "missing v1":
        header = f"t={ts}"
    elif case == "garbage":
        header = "not a signature"
    elif case == "empty":
        header = ""
    elif case == "v0 only":
        header = f"t={ts},v0={hmac_signature(SECRET, ts, BODY)}"
    assert not verify_signature(body, header, secrets_, now)


def test_duplicated_v1_and_rotation() -> None:
    """During a rotation a delivery carries one v1 per secret: a receiver with either secret accepts it;
    a forged extra v1 next to a valid one does not make an invalid one valid."""
    now = time.time()
    old, new = new_signing_secret(), new_signing_secret()
    header = signature_headers(BODY, [new, old], int(now))[SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    assert verify_signature(BODY, header, [old], now)
    assert verify_signature(BODY, header, [new], now)
    assert not verify_signature(BODY, header, [new_signing_secret()], now)
    forged = f"t={int(now)},v1={'0' * 64},v1={'f' * 64}"
    assert not verify_signature(BODY, forged, [old, new], now)


def test_repeated_timestamp_is_malformed() -> None:
    ts = int(time.time())
    sig = hmac_signature(SECRET, ts, BODY)
    with pytest.raises(SignatureError):
        parse_signature_header(f"t={ts},t={ts + 1},v1={sig}")
    assert not verify_signature(BODY, f"t={ts},t={ts},v1={sig}", [SECRET], time.time())


def test_verify_uses_a_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    import domain.webhooks as module

    calls: list[tuple[str, str]] = []
    real = module.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", spy)
    ts = int(time.time())
    assert verify_signature(BODY, signature_headers(BODY, [SECRET], ts)[SIGNATURE_HEADER], [SECRET], ts)
    assert calls


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_parser_raises_only_signature_error(value: str) -> None:
    try:
        parse_signature_header(value)
    except SignatureError:
        pass
    assert verify_signature(BODY, value, [SECRET], time.time()) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["t=1", "v1=" + "a" * 64, "v1=zz", "t=", "=", ",", "t=99999999999999", " v1"])))
def test_parser_on_structured_fragments(parts: list[str]) -> None:
    try:
        timestamp, signatures = parse_signature_header(",".join(parts))
    except SignatureError:
        return
    assert timestamp >= 0 and signatures


def test_echo_answer_must_repeat_echo_data() -> None:
    assert echo_answer_ok({"type": "echo", "echo_data": "abc"}, "abc")
    assert not echo_answer_ok({"type": "echo", "echo_data": "abd"}, "abc")
    assert not echo_answer_ok({"type": "other", "echo_data": "abc"}, "abc")
    assert not echo_answer_ok(["echo"], "abc")
    assert not echo_answer_ok({"type": "echo", "echo_data": 5}, "abc")
