"""Money in integer minor units, and data volumes in bytes, with their French display.

`Money(amount_minor, currency)` never holds a float: amounts enter as integers of minor units (cents) or
through `Money.parse("0.50")`, and every rounding (VAT) is done on `Decimal` with ROUND_HALF_UP.
Display follows Babel's `fr_FR` data: `1 234,50 €` where the thousands separator is a narrow no-break
space (U+202F) and the space before the unit a no-break space (U+00A0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar

from babel.numbers import format_currency, format_decimal, get_currency_precision, is_currency

__all__ = [
    "GB",
    "KB",
    "MB",
    "CurrencyMismatch",
    "InvalidAmount",
    "Money",
    "format_data_fr",
    "gb_to_bytes",
    "mb_to_bytes",
]

LOCALE = "fr_FR"
NBSP = "\u00a0"

DEFAULT_VAT_RATE_BP = 2000  # 20 %, French standard rate (telecom services), in basis points


class InvalidAmount(ValueError):
    """An amount or quantity failed validation. Same shape as `InvalidIdentifier`: `field`, `reason`."""

    code: ClassVar[str] = "invalid_amount"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CurrencyMismatch(ValueError):
    """Arithmetic or comparison between two different currencies."""

    code: ClassVar[str] = "currency_mismatch"

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"devises différentes : {left} et {right}")
        self.left = left
        self.right = right


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of money in minor units (cents for EUR). Immutable; arithmetic only within one currency."""

    amount_minor: int
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if not _is_int(self.amount_minor):
            raise TypeError(f"amount_minor must be an int of minor units, not {type(self.amount_minor).__name__}")
        if not isinstance(self.currency, str) or len(self.currency) != 3 or not is_currency(self.currency.upper()):
            raise InvalidAmount("currency", "code devise ISO 4217 inconnu")
        object.__setattr__(self, "currency", self.currency.upper())

    # --- construction -------------------------------------------------------------------------------------

    @classmethod
    def zero(cls, currency: str = "EUR") -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, value: str | Decimal, currency: str = "EUR", *, allow_negative: bool = False) -> Money:
        """From a decimal amount in major units: `"0.50"` (or the French `"0,50"`) → `Money(50)`.

        Floats are refused (TypeError): they cannot carry cents exactly. More decimals than the currency
        has (2 for EUR), exponents, grouping separators, NaN/infinity and — unless `allow_negative` —
        negative amounts raise `InvalidAmount`.
        """
        precision = get_currency_precision(currency.upper()) if isinstance(currency, str) else 2
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, str):
            amount = _parse_decimal_text(value)
        else:
            raise TypeError(f"amount must be a decimal string or Decimal, not {type(value).__name__}")
        if not amount.is_finite():
            raise InvalidAmount("amount", "montant invalide")
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -precision:
            raise InvalidAmount("amount", f"au plus {precision} décimales")
        if amount < 0 and not allow_negative:
            raise InvalidAmount("amount", "montant négatif interdit")
        return cls(int(amount.scaleb(precision)), currency)

    @classmethod
    def total(cls, items: Iterable[Money], currency: str = "EUR") -> Money:
        """Sum of amounts, all in `currency`; zero for no item."""
        result = cls.zero(currency)
        for item in items:
            result = result + item
        return result

    # --- arithmetic ---------------------------------------------------------------------------------------

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __mul__(self, quantity: object) -> Money:
        """Price × quantity: integer quantities only (a rate goes through `Decimal` and a rounding rule)."""
        if not _is_int(quantity):
            return NotImplemented
        assert isinstance(quantity, int)
        return Money(self.amount_minor * quantity, self.currency)

    __rmul__ = __mul__

    def share(self, part: int, whole: int) -> Money:
        """This amount × part / whole, rounded half up to the cent (ties away from zero, so the share of −x is
        exactly −(share of x)): e.g. a purchase price in the proportion of what was sold of its sale price."""
        if not (_is_int(part) and _is_int(whole)) or whole <= 0:
            raise InvalidAmount("whole", "proportion entière de dénominateur positif attendue")
        shared = (Decimal(self.amount_minor) * part / whole).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return Money(int(shared), self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount_minor), self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor >= other.amount_minor

    @property
    def is_zero(self) -> bool:
        return self.amount_minor == 0

    @property
    def is_positive(self) -> bool:
        return self.amount_minor > 0

    @property
    def is_negative(self) -> bool:
        return self.amount_minor < 0

    # --- tax ----------------------------------------------------------------------------------------------

    def vat(self, rate_bp: int = DEFAULT_VAT_RATE_BP) -> Money:
        """VAT on this amount taken as net (HT), rate in basis points (2000 = 20 %), rounded half up to the cent.

        Half up on `Decimal` rounds ties away from zero, so a credit note's VAT is the exact opposite of the
        invoice's.
        """
        if not _is_int(rate_bp) or rate_bp < 0:
            raise InvalidAmount("rate_bp", "taux en points de base entier positif attendu")
        tax = (Decimal(self.amount_minor) * rate_bp / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return Money(int(tax), self.currency)

    def included_vat(self, rate_bp: int = DEFAULT_VAT_RATE_BP) -> Money:
        """The VAT inside this amount taken as gross (TTC): gross − round(gross / (1 + rate)), half up on the
        net, so the VAT of −x is exactly −(VAT of x)."""
        if not _is_int(rate_bp) or rate_bp < 0:
            raise InvalidAmount("rate_bp", "taux en points de base entier positif attendu")
        net = (Decimal(self.amount_minor) * 10_000 / (10_000 + rate_bp)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return Money(self.amount_minor - int(net), self.currency)

    def with_vat(self, rate_bp: int = DEFAULT_VAT_RATE_BP) -> Money:
        """Gross amount (TTC) = net + `vat(rate_bp)`."""
        return self + self.vat(rate_bp)

    # --- conversion and display ---------------------------------------------------------------------------

    def to_decimal(self) -> Decimal:
        """Amount in major units, exact: `Money(50)` → `Decimal("0.50")`."""
        return Decimal(self.amount_minor).scaleb(-get_currency_precision(self.currency))

    def format_fr(self) -> str:
        """French display with Babel: `0,50 €`, `1 234,50 €` (U+202F thousands separator, U+00A0 before €)."""
        return str(format_currency(self.to_decimal(), self.currency, locale=LOCALE))


def _parse_decimal_text(text: str) -> Decimal:
    """Plain decimal text: optional sign, digits, at most one `.` or `,` separator, nothing else."""
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    if "," in body and "." not in body:
        body = body.replace(",", ".", 1)
    integer, _, fraction = body.partition(".")
    if not (integer or fraction) or not (integer + fraction).isascii() or not (integer + fraction).isdigit():
        raise InvalidAmount("amount", "montant décimal attendu, ex. 0.50")
    sign = "-" if text[:1] == "-" else ""
    return Decimal(f"{sign}{integer or '0'}.{fraction}" if fraction else f"{sign}{integer}")


# --- Data volumes -------------------------------------------------------------------------------------------

KB = 1024  # 1 Ko
MB = 1_048_576  # 1 Mo = 1024 Ko
GB = 1_073_741_824  # 1 Go = 1024 Mo (SPEC §8: bytes in the OCS, Mo/Go in the UI)

_DATA_UNITS = ((GB, "Go"), (MB, "Mo"), (KB, "Ko"))


def _units_to_bytes(field: str, value: int | Decimal, unit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{field} must be an int or Decimal, not {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidAmount(field, "volume invalide")
    if value < 0:
        raise InvalidAmount(field, "volume négatif interdit")
    exact = value * unit
    if exact != int(exact):
        raise InvalidAmount(field, "volume non entier en octets")
    return int(exact)


def gb_to_bytes(gb: int | Decimal) -> int:
    """Gigabytes (Go, 1024³ bytes) → bytes; `Decimal("0.5")` → 536 870 912."""
    return _units_to_bytes("data_gb", gb, GB)


def mb_to_bytes(mb: int | Decimal) -> int:
    """Megabytes (Mo, 1024² bytes) → bytes."""
    return _units_to_bytes("data_mb", mb, MB)


def format_data_fr(n_bytes: int) -> str:
    """French display of a data volume in the largest unit ≥ 1: `1 Go`, `1,5 Go`, `512 Mo`, `0 Mo`.

    At most two decimals (half up), decimal comma, no-break space (U+00A0) before the unit.
    """
    if not _is_int(n_bytes):
        raise TypeError(f"n_bytes must be an int, not {type(n_bytes).__name__}")
    if n_bytes == 0:
        return f"0{NBSP}Mo"
    size, unit = next(((size, unit) for size, unit in _DATA_UNITS if abs(n_bytes) >= size), (1, "o"))
    value = (Decimal(n_bytes) / size).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{format_decimal(value, format='#,##0.##', locale=LOCALE)}{NBSP}{unit}"
