"""Telecom, banking and company identifiers: normalise or raise `InvalidIdentifier`.

Every public function takes what a human or a supplier file typed and returns the one canonical form we
store (no spaces, upper case, E.164 for phone numbers), or raises `InvalidIdentifier(field, reason)`.
The check digits and formats come from python-stdnum and phonenumbers; only the RIO check key, for which
no library exists, is computed here (Arcep algorithm, see `rio_key`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum import imei as stdnum_imei
from stdnum import imsi as stdnum_imsi
from stdnum import luhn
from stdnum.eu import at_02 as stdnum_sepa_ci
from stdnum.eu import vat as stdnum_eu_vat
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.fr import siret as stdnum_siret
from stdnum.fr import tva as stdnum_fr_tva

from domain.errors import ErrorCode

__all__ = [
    "InvalidIdentifier",
    "iccid_with_check_digit",
    "msisdn_national",
    "normalize_bic",
    "normalize_iban",
    "normalize_iccid",
    "normalize_imei",
    "normalize_imsi",
    "normalize_msisdn",
    "normalize_rio",
    "normalize_sepa_ics",
    "normalize_siret",
    "normalize_vat",
    "rio_key",
]


class InvalidIdentifier(ValueError):
    """An identifier failed validation. `field` names the input, `reason` says why (short, in French)."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_IDENTIFIER

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# Separators people and supplier files put inside identifiers; removed before validation.
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f-.")


def _require_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier(field, "texte attendu")
    return value


def _stdnum(
    field: str, validate: Callable[[str], str], value: str, *, checksum: str = "clé de contrôle invalide"
) -> str:
    """Run a python-stdnum `validate` and translate its exception tree into `InvalidIdentifier`."""
    try:
        return validate(value)
    except InvalidLength:  # subclass of InvalidFormat: test it first
        raise InvalidIdentifier(field, "longueur invalide") from None
    except InvalidFormat:
        raise InvalidIdentifier(field, "format invalide") from None
    except InvalidChecksum:
        raise InvalidIdentifier(field, checksum) from None
    except InvalidComponent:
        raise InvalidIdentifier(field, "code pays, opérateur ou préfixe inconnu") from None
    except ValidationError:
        raise InvalidIdentifier(field, "invalide") from None


# --- SIM card -------------------------------------------------------------------------------------------


def normalize_iccid(value: str) -> str:
    """ICCID (ITU-T E.118): 19 or 20 digits ending with a Luhn check digit.

    Spaces/dashes and the trailing `F` nibble that BCD-encoded ICCIDs carry when their length is odd are
    removed. The check digit is never added silently: use `iccid_with_check_digit` for supplier files that
    omit it.
    """
    value = _require_str("iccid", value).translate(_SEPARATORS).upper().rstrip("F")
    if not value.isascii() or not value.isdigit():
        raise InvalidIdentifier("iccid", "chiffres uniquement")
    if len(value) not in (19, 20):
        raise InvalidIdentifier("iccid", "19 ou 20 chiffres attendus")
    if not luhn.is_valid(value):
        raise InvalidIdentifier("iccid", "clé de Luhn invalide")
    return value


def iccid_with_check_digit(body: str) -> str:
    """Append the Luhn check digit to an 18- or 19-digit ICCID body (supplier files that omit it)."""
    body = _require_str("iccid", body).translate(_SEPARATORS)
    if not body.isascii() or not body.isdigit() or len(body) not in (18, 19):
        raise InvalidIdentifier("iccid", "18 ou 19 chiffres attendus sans la clé")
    return body + luhn.calc_check_digit(body)


def normalize_imsi(value: str) -> str:
    """IMSI: 15 digits, MCC known to python-stdnum (e.g. `208…` for France)."""
    value = _stdnum("imsi", stdnum_imsi.validate, _require_str("imsi", value))
    if len(value) != 15:  # stdnum also accepts 14 digits (some 2-digit-MNC networks); SIM files carry 15
        raise InvalidIdentifier("imsi", "15 chiffres attendus")
    return value


def normalize_imei(value: str) -> str:
    """IMEI: 15 digits with a Luhn check digit (a 14-digit IMEI gets its check digit); IMEISV (16) kept as is."""
    value = _stdnum("imei", stdnum_imei.validate, _require_str("imei", value), checksum="clé de Luhn invalide")
    if len(value) == 14:
        value += luhn.calc_check_digit(value)
    return value


# --- Phone numbers ----------------------------------------------------------------------------------------

_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def _is_french_m2m(number: PhoneNumber) -> bool:
    """French 14-digit M2M numbers `0700 xx xx xx xx xx` (+33 700 …, 13 significant digits).

    phonenumbers (9.0.x) neither validates them nor even finds them "possible" (the metadata knows only
    10-digit French numbers), so they are recognised here explicitly from the parsed number: country code
    33, national significant number of 13 digits starting with 700 (Arcep numbering plan, decision
    2022-1583).
    """
    nsn = str(number.national_number)
    return number.country_code == 33 and not number.italian_leading_zero and len(nsn) == 13 and nsn.startswith("700")


def _parse_msisdn(value: str, default_region: str) -> PhoneNumber:
    value = _require_str("msisdn", value).strip()
    if not value:
        raise InvalidIdentifier("msisdn", "numéro vide")
    try:
        return phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("msisdn", "numéro de téléphone illisible") from None


def normalize_msisdn(value: str, default_region: str = "FR") -> str:
    """A mobile line's number in E.164 (`+33612345678`).

    Accepts national (`06 12 34 56 78`, `07…`), international (`+33…`, `0033…`) and the French 14-digit M2M
    numbers (`0700…` → `+33700…`). Rejects invalid numbers and numbers that are not mobile (fixed lines,
    freephone, premium rate…).
    """
    number = _parse_msisdn(value, default_region)
    if _is_french_m2m(number):
        return f"+{number.country_code}{number.national_number}"
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier("msisdn", "numéro invalide")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise InvalidIdentifier("msisdn", "numéro non mobile")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def msisdn_national(e164: str) -> str:
    """National digits of a mobile number, no spaces: `+33612345678` → `0612345678` (M2M: `0700…`, 14 digits)."""
    number = phonenumbers.parse(normalize_msisdn(e164), None)
    if number.country_code == 33:
        return f"0{number.national_number}"
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())


def _rio_national_number(msisdn: str) -> str:
    """The 10-digit French mobile number (`06…`/`07…`) a RIO key is computed over.

    Only the shape is checked (French, 06/07, 10 digits): whether the range is allocated is
    `normalize_msisdn`'s business, and the portability key must be checkable on its own.
    """
    number = _parse_msisdn(msisdn, "FR")
    nsn = str(number.national_number)
    if number.country_code != 33 or number.italian_leading_zero or len(nsn) != 9 or nsn[0] not in "67":
        raise InvalidIdentifier("msisdn", "numéro mobile français à 10 chiffres attendu")
    return f"0{nsn}"


# --- RIO (portability code) -------------------------------------------------------------------------------

# Arcep annex 1 "Relevés d'identité opérateur", § 2.1: the 37 symbols in this order, letters first.
_RIO_ORDER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+"
_RIO_ALNUM = frozenset(_RIO_ORDER[:-1])
# Subscriber quality for a mobile line: E (entreprise) or P (particulier); F…Z are fixed lines, A special numbers.
_RIO_MOBILE_QUALITIES = frozenset("EP")


def rio_key(operator: str, quality: str, reference: str, msisdn10: str) -> str:
    """The 3-character check key `CCC` of a RIO `OO Q RRRRRR CCC` for a 10-digit national number.

    Arcep algorithm: over the 19 symbols of `OO + Q + RRRRRR + number`, with p the symbol's index in
    `_RIO_ORDER`, a = (a + p) % 37, b = (2b + p) % 37, c = (4c + p) % 37; key = order[a] order[b] order[c].
    """
    head = f"{operator}{quality}{reference}".upper()
    if len(operator) != 2 or len(quality) != 1 or len(reference) != 6 or not set(head) <= _RIO_ALNUM:
        raise InvalidIdentifier("rio", "format OO Q RRRRRR invalide")
    if len(msisdn10) != 10 or not msisdn10.isascii() or not msisdn10.isdigit():
        raise InvalidIdentifier("msisdn", "numéro national à 10 chiffres attendu")
    a = b = c = 0
    for symbol in head + msisdn10:
        p = _RIO_ORDER.index(symbol)
        a, b, c = (a + p) % 37, (2 * b + p) % 37, (4 * c + p) % 37
    return _RIO_ORDER[a] + _RIO_ORDER[b] + _RIO_ORDER[c]


def normalize_rio(rio: str, msisdn: str) -> str:
    """A mobile RIO (12 characters, upper case, no spaces) checked against the number it ports.

    `msisdn` may be E.164 or national; the key is computed over the 10-digit national form.
    """
    rio = _require_str("rio", rio).translate(_SEPARATORS).upper()
    if len(rio) != 12:
        raise InvalidIdentifier("rio", "12 caractères attendus")
    if not set(rio) <= _RIO_ALNUM | {"+"} or not set(rio[:9]) <= _RIO_ALNUM:
        raise InvalidIdentifier("rio", "caractères invalides")
    if rio[2] not in _RIO_MOBILE_QUALITIES:
        raise InvalidIdentifier("rio", "3e caractère E ou P attendu pour une ligne mobile")
    if rio_key(rio[:2], rio[2], rio[3:9], _rio_national_number(msisdn)) != rio[9:]:
        raise InvalidIdentifier("rio", "clé de contrôle invalide pour ce numéro")
    return rio


# --- Banking and company ----------------------------------------------------------------------------------


def normalize_iban(value: str) -> str:
    """IBAN in its compact form (`FR1420041010050500013M02606`): country format and mod-97 key checked."""
    return _stdnum("iban", stdnum_iban.validate, _require_str("iban", value))


def normalize_bic(value: str) -> str:
    """BIC/SWIFT code, 8 or 11 characters, upper case (`PSSTFRPPXXX`)."""
    return _stdnum("bic", stdnum_bic.validate, _require_str("bic", value))


def normalize_siret(value: str) -> str:
    """SIRET: 14 digits, Luhn key (with La Poste's exception, handled by python-stdnum)."""
    return _stdnum("siret", stdnum_siret.validate, _require_str("siret", value), checksum="clé de Luhn invalide")


def normalize_vat(value: str) -> str:
    """Intra-EU VAT number with its country prefix (`FR44732829320`), checked offline (never VIES).

    French numbers go through `stdnum.fr.tva` (key computed from the SIREN); a number of digits only is
    taken as French. Other member states through `stdnum.eu.vat` (Greece is `EL`).
    """
    compact = _require_str("vat", value).translate(_SEPARATORS).upper()
    if compact.isdigit() or compact.startswith("FR"):
        return "FR" + _stdnum("vat", stdnum_fr_tva.validate, compact.removeprefix("FR"))
    if len(compact) < 3 or not compact[:2].isalpha():
        raise InvalidIdentifier("vat", "préfixe pays attendu (FR, DE, …)")
    return _stdnum("vat", stdnum_eu_vat.validate, compact)


def normalize_sepa_ics(value: str) -> str:
    """French SEPA creditor identifier (ICS, `FRkkZZZnnnnnn`): `FR`, a 2-digit ISO 7064 mod-97 key, a
    3-character creditor business code (`ZZZ` when none) and a 6-character national number; the key, which
    skips the business code, is checked by python-stdnum (`stdnum.eu.at_02`)."""
    compact = _require_str("sepa_ics", value).translate(_SEPARATORS).upper()
    if not compact.startswith("FR"):
        raise InvalidIdentifier("sepa_ics", "un ICS français commence par FR")
    if len(compact) != 13:
        raise InvalidIdentifier("sepa_ics", f"13 caractères attendus (FRkkZZZnnnnnn), {len(compact)} reçus")
    if not compact[2:4].isdigit() or not compact[4:7].isalnum() or not compact[7:].isalnum() or not compact.isascii():
        raise InvalidIdentifier("sepa_ics", "format attendu FRkkZZZnnnnnn (clé à 2 chiffres, code activité, numéro)")
    return _stdnum("sepa_ics", stdnum_sepa_ci.validate, compact, checksum="clé de contrôle (mod 97) invalide")
