"""Money in minor units, VAT rounding, French display, data volumes."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.money import (
    GB,
    KB,
    MB,
    CurrencyMismatch,
    InvalidAmount,
    Money,
    format_data_fr,
    gb_to_bytes,
    mb_to_bytes,
)

NNBSP = "\u202f"  # Babel's fr_FR thousands separator
NBSP = "\u00a0"  # before the unit

hypothesis_settings = settings(database=None, deadline=None, max_examples=200)
amounts = st.integers(min_value=-(10**12), max_value=10**12)


# --- construction -------------------------------------------------------------------------------------------


def test_defaults_to_euro_and_is_immutable() -> None:
    price = Money(50)
    assert price == Money(50, "EUR")
    with pytest.raises(dataclasses.FrozenInstanceError):
        price.amount_minor = 60  # type: ignore[misc]
    assert hash(price) == hash(Money(50, "EUR"))


def test_currency_is_upper_cased_and_must_exist() -> None:
    assert Money(1, "eur").currency == "EUR"
    for bad in ("XYZ", "EURO", "", "€"):
        with pytest.raises(InvalidAmount) as info:
            Money(1, bad)
        assert info.value.field == "currency"


@pytest.mark.parametrize("bad", [0.5, 1.0, Decimal("0.5"), "50", True, None])
def test_amount_minor_must_be_an_int(bad: object) -> None:
    with pytest.raises(TypeError):
        Money(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("0.50", 50),
        ("0,50", 50),
        ("0.5", 50),
        ("1", 100),
        ("1234.56", 123456),
        (" 12.30 ", 1230),
        (".5", 50),
        ("5.", 500),
        ("+2", 200),
        ("0", 0),
        ("-0", 0),
        ("00.10", 10),
    ],
)
def test_parse_decimal_strings(text: str, minor: int) -> None:
    assert Money.parse(text) == Money(minor)


def test_parse_decimal_and_other_currencies() -> None:
    assert Money.parse(Decimal("0.50")) == Money(50)
    assert Money.parse("100", "JPY") == Money(100, "JPY")  # no minor unit
    with pytest.raises(InvalidAmount):
        Money.parse("100.5", "JPY")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0.501", "au plus 2 décimales"),
        ("0.500", "au plus 2 décimales"),
        ("-0.50", "montant négatif interdit"),
        ("1e3", "montant décimal attendu, ex. 0.50"),
        ("NaN", "montant décimal attendu, ex. 0.50"),
        ("Infinity", "montant décimal attendu, ex. 0.50"),
        ("1,234.50", "montant décimal attendu, ex. 0.50"),
        ("1 234,50", "montant décimal attendu, ex. 0.50"),
        ("1.2.3", "montant décimal attendu, ex. 0.50"),
        ("", "montant décimal attendu, ex. 0.50"),
        (".", "montant décimal attendu, ex. 0.50"),
        ("-", "montant décimal attendu, ex. 0.50"),
        ("--1", "montant décimal attendu, ex. 0.50"),
        ("١٢", "montant décimal attendu, ex. 0.50"),  # non-ASCII digits
        ("0.50 €", "montant décimal attendu, ex. 0.50"),
    ],
)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        Money.parse(text)
    assert (info.value.field, info.value.reason) == ("amount", reason)


def test_parse_negative_when_allowed() -> None:
    assert Money.parse("-0.50", allow_negative=True) == Money(-50)
    with pytest.raises(InvalidAmount):
        Money.parse(Decimal("-1"))
    with pytest.raises(InvalidAmount):
        Money.parse(Decimal("NaN"))


@pytest.mark.parametrize("bad", [0.5, 1, True, None])
def test_parse_refuses_floats_and_other_types(bad: object) -> None:
    with pytest.raises(TypeError):
        Money.parse(bad)  # type: ignore[arg-type]


# --- arithmetic ---------------------------------------------------------------------------------------------


def test_arithmetic_within_one_currency() -> None:
    assert Money(50) + Money(25) == Money(75)
    assert Money(50) - Money(75) == Money(-25)
    assert Money(50) * 3 == Money(150)
    assert 3 * Money(50) == Money(150)
    assert -Money(50) == Money(-50)
    assert abs(Money(-50)) == Money(50)
    assert Money.total([Money(50), Money(25), Money(-10)]) == Money(65)
    assert Money.total([]) == Money.zero()
    assert Money(50) > Money(25) >= Money(25) and Money(1) < Money(2) <= Money(2)
    assert Money(0).is_zero and Money(1).is_positive and Money(-1).is_negative


def test_currencies_never_mix() -> None:
    eur, usd = Money(50), Money(50, "USD")
    for operation in (
        lambda: eur + usd,
        lambda: eur - usd,
        lambda: eur < usd,
        lambda: eur >= usd,
        lambda: Money.total([eur, usd]),
    ):
        with pytest.raises(CurrencyMismatch):
            operation()
    assert eur != usd


@pytest.mark.parametrize("bad", [0.5, Decimal("2"), True, "2"])
def test_multiply_by_integer_quantities_only(bad: object) -> None:
    with pytest.raises(TypeError):
        Money(50) * bad  # type: ignore[operator]


def test_adding_a_plain_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Money(50) + 1  # type: ignore[operator]


@hypothesis_settings
@given(amounts, amounts, st.integers(min_value=-1000, max_value=1000))
def test_arithmetic_laws(a: int, b: int, quantity: int) -> None:
    x, y = Money(a), Money(b)
    assert x + y - y == x
    assert x + y == y + x
    assert x - x == Money.zero()
    assert -x + x == Money.zero()
    assert (-x).amount_minor == -a
    assert x * quantity == Money(a * quantity)


# --- VAT ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net", "rate_bp", "vat"),
    [
        (50, 2000, 10),
        (1000, 2000, 200),
        (2, 2000, 0),  # 0.4 → 0
        (3, 2000, 1),  # 0.6 → 1
        (1001, 2000, 200),  # 200.2 → 200
        (1003, 2000, 201),  # 200.6 → 201
        (25, 2000, 5),
        (1, 5000, 1),  # exactly half: up
        (5, 1000, 1),  # 0.5 → 1
        (15, 1000, 2),  # 1.5 → 2 (half up, not banker's 2)
        (25, 1000, 3),  # 2.5 → 3 (banker's rounding would give 2)
        (1000, 550, 55),
        (1000, 0, 0),
    ],
)
def test_vat_rounds_half_up(net: int, rate_bp: int, vat: int) -> None:
    assert Money(net).vat(rate_bp) == Money(vat)


def test_vat_default_rate_and_gross() -> None:
    assert Money(50).vat() == Money(10)
    assert Money(50).with_vat() == Money(60)
    assert Money(123456).with_vat(2000) == Money(148147)  # 24691.2 → 24691


@pytest.mark.parametrize("bad", [-1, 20.0, True])
def test_vat_rate_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(InvalidAmount):
        Money(50).vat(bad)  # type: ignore[arg-type]


@hypothesis_settings
@given(amounts, st.integers(min_value=0, max_value=10_000))
def test_vat_of_a_credit_note_is_the_opposite(net: int, rate_bp: int) -> None:
    assert Money(-net).vat(rate_bp) == -Money(net).vat(rate_bp)
    exact = Decimal(net) * rate_bp / 10_000
    assert abs(Decimal(Money(net).vat(rate_bp).amount_minor) - exact) <= Decimal("0.5")


# --- display ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(50), f"0,50{NBSP}€"),
        (Money(0), f"0,00{NBSP}€"),
        (Money(100), f"1,00{NBSP}€"),
        (Money(123450), f"1{NNBSP}234,50{NBSP}€"),
        (Money(123456789), f"1{NNBSP}234{NNBSP}567,89{NBSP}€"),
        (Money(-50), f"-0,50{NBSP}€"),
        (Money(1999, "USD"), f"19,99{NBSP}$US"),
    ],
)
def test_format_fr(money: Money, text: str) -> None:
    assert money.format_fr() == text


def test_format_fr_reads_as_plain_french_once_spaces_are_normalised() -> None:
    assert Money(123450).format_fr().replace(NNBSP, " ").replace(NBSP, " ") == "1 234,50 €"


def test_to_decimal_is_exact() -> None:
    assert Money(50).to_decimal() == Decimal("0.50")
    assert str(Money(50).to_decimal()) == "0.50"
    assert Money(100, "JPY").to_decimal() == Decimal(100)


@hypothesis_settings
@given(amounts)
def test_parse_round_trips_to_decimal(minor: int) -> None:
    money = Money(minor)
    assert Money.parse(str(money.to_decimal()), allow_negative=True) == money
    assert Money.parse(str(money.to_decimal()).replace(".", ","), allow_negative=True) == money


# --- data volumes -------------------------------------------------------------------------------------------


def test_units() -> None:
    assert (KB, MB, GB) == (1024, 1024 * 1024, 1_073_741_824)
    assert GB == 1024 * MB


@pytest.mark.parametrize(
    ("value", "n_bytes"),
    [(1, GB), (0, 0), (10, 10 * GB), (Decimal("0.5"), 512 * MB), (Decimal("1.5"), 1536 * MB)],
)
def test_gb_to_bytes(value: int | Decimal, n_bytes: int) -> None:
    assert gb_to_bytes(value) == n_bytes


def test_mb_to_bytes() -> None:
    assert mb_to_bytes(500) == 500 * MB
    assert mb_to_bytes(1024) == gb_to_bytes(1)


@pytest.mark.parametrize("bad", [-1, Decimal("-0.5"), Decimal("NaN"), Decimal("1e-12")])
def test_gb_to_bytes_rejects(bad: int | Decimal) -> None:
    with pytest.raises(InvalidAmount) as info:
        gb_to_bytes(bad)
    assert info.value.field == "data_gb"


@pytest.mark.parametrize("bad", [1.5, True, "1"])
def test_gb_to_bytes_refuses_floats(bad: object) -> None:
    with pytest.raises(TypeError):
        gb_to_bytes(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (GB, "1 Go"),
        (512 * MB, "512 Mo"),
        (3 * GB // 2, "1,5 Go"),
        (5 * GB, "5 Go"),
        (1536 * GB, "1 536 Go"),
        (500 * MB, "500 Mo"),
        (MB + MB // 4, "1,25 Mo"),
        (GB - 1, "1 024 Mo"),  # rounded to 2 decimals in the unit below 1 Go
        (0, "0 Mo"),
        (2 * KB, "2 Ko"),
        (100, "100 o"),
        (-200 * MB, "-200 Mo"),
    ],
)
def test_format_data_fr(n_bytes: int, text: str) -> None:
    assert format_data_fr(n_bytes).replace(NNBSP, " ").replace(NBSP, " ") == text


def test_format_data_fr_uses_a_no_break_space_before_the_unit() -> None:
    assert format_data_fr(GB) == f"1{NBSP}Go"
    assert format_data_fr(1536 * GB) == f"1{NNBSP}536{NBSP}Go"


def test_format_data_fr_refuses_non_int() -> None:
    with pytest.raises(TypeError):
        format_data_fr(1.5)  # type: ignore[arg-type]


def test_share_is_proportional_and_rounded_half_up_symmetrically() -> None:
    purchase = Money(900)
    assert purchase.share(1500, 1500) == Money(900)  # a full period
    assert purchase.share(4500, 1500) == Money(2700)  # a pool of three lines
    assert purchase.share(500, 1500) == Money(300)  # a prorated plan change
    assert Money(1).share(1, 2) == Money(1) and Money(-1).share(1, 2) == Money(-1)
    assert purchase.share(0, 1500).is_zero
    with pytest.raises(InvalidAmount):
        purchase.share(1, 0)
