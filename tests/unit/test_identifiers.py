"""Identifiers: canonical forms, every rejection names its field and reason, RIO vectors, Luhn corruption."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.identifiers import (
    InvalidIdentifier,
    iccid_with_check_digit,
    msisdn_national,
    normalize_bic,
    normalize_iban,
    normalize_iccid,
    normalize_imei,
    normalize_imsi,
    normalize_msisdn,
    normalize_rio,
    normalize_siret,
    normalize_vat,
    rio_key,
)

ICCID_19 = iccid_with_check_digit("893315000000000001")  # 18-digit body + Luhn digit
ICCID_20 = iccid_with_check_digit("8933150000000000012")

hypothesis_settings = settings(database=None, deadline=None, max_examples=200)


def rejects(fn, *args, field: str) -> InvalidIdentifier:
    with pytest.raises(InvalidIdentifier) as info:
        fn(*args)
    assert info.value.field == field
    assert info.value.reason
    assert str(info.value).startswith(f"{field}: ")
    return info.value


def test_invalid_identifier_is_a_value_error_with_a_stable_code() -> None:
    err = InvalidIdentifier("iccid", "clé de Luhn invalide")
    assert isinstance(err, ValueError)
    assert (err.field, err.reason, err.code) == ("iccid", "clé de Luhn invalide", "request.invalid_identifier")


# --- ICCID --------------------------------------------------------------------------------------------------


def test_iccid_check_digit_helper() -> None:
    assert ICCID_19 == "8933150000000000010"
    assert len(ICCID_20) == 20


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (ICCID_19, ICCID_19),
        (ICCID_20, ICCID_20),
        (f" {ICCID_19[:4]} {ICCID_19[4:8]} {ICCID_19[8:]} ", ICCID_19),
        (ICCID_19 + "F", ICCID_19),  # BCD padding nibble of an odd-length ICCID
        (ICCID_19 + "f", ICCID_19),
        ("8933-1500-0000-0000-010", ICCID_19),
    ],
)
def test_iccid_normalised(raw: str, expected: str) -> None:
    assert normalize_iccid(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (ICCID_19[:-1], "19 ou 20 chiffres attendus"),  # Luhn digit omitted: never added silently
        (ICCID_20 + "0", "19 ou 20 chiffres attendus"),
        ("", "chiffres uniquement"),
        ("89331500000000000A0", "chiffres uniquement"),
        ("８９３３１５００００００００００１０", "chiffres uniquement"),  # full-width digits
        (ICCID_19[:-1] + str((int(ICCID_19[-1]) + 1) % 10), "clé de Luhn invalide"),
    ],
)
def test_iccid_rejected(raw: str, reason: str) -> None:
    assert rejects(normalize_iccid, raw, field="iccid").reason == reason


@pytest.mark.parametrize("iccid", [ICCID_19, ICCID_20])
def test_iccid_every_single_digit_corruption_is_detected(iccid: str) -> None:
    corrupted = 0
    for position, digit in enumerate(iccid):
        for replacement in "0123456789":
            if replacement == digit:
                continue
            bad = iccid[:position] + replacement + iccid[position + 1 :]
            assert rejects(normalize_iccid, bad, field="iccid").reason == "clé de Luhn invalide", (position, bad)
            corrupted += 1
    assert corrupted == 9 * len(iccid)


def test_iccid_check_digit_helper_rejects_wrong_lengths() -> None:
    rejects(iccid_with_check_digit, "8933", field="iccid")
    rejects(iccid_with_check_digit, ICCID_20, field="iccid")


@hypothesis_settings
@given(st.text(alphabet="0123456789", min_size=18, max_size=19))
def test_iccid_with_check_digit_round_trips(body: str) -> None:
    iccid = iccid_with_check_digit(body)
    assert normalize_iccid(iccid) == iccid
    assert normalize_iccid(" ".join(iccid) + "F") == iccid


@hypothesis_settings
@given(st.text(alphabet="0123456789", min_size=18, max_size=19), st.integers(0, 18), st.integers(1, 9))
def test_iccid_any_digit_shift_is_rejected(body: str, position: int, shift: int) -> None:
    iccid = iccid_with_check_digit(body)
    bad = iccid[:position] + str((int(iccid[position]) + shift) % 10) + iccid[position + 1 :]
    rejects(normalize_iccid, bad, field="iccid")


# --- IMSI / IMEI --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("208150123456789", "208150123456789"), (" 208 15 0123456789 ", "208150123456789")]
)
def test_imsi_normalised(raw: str, expected: str) -> None:
    assert normalize_imsi(raw) == expected


@pytest.mark.parametrize("raw", ["20815012345678", "2081501234567890", "20815012345678X", "", "000000123456789"])
def test_imsi_rejected(raw: str) -> None:
    rejects(normalize_imsi, raw, field="imsi")


def test_imei_normalised_and_completed() -> None:
    assert normalize_imei("49-015420-323751-8") == "490154203237518"
    assert normalize_imei("49015420323751") == "490154203237518"  # 14 digits: check digit added
    assert normalize_imei("4901542032375101") == "4901542032375101"  # IMEISV


@pytest.mark.parametrize("raw", ["490154203237519", "4901542032", "49015420323751X"])
def test_imei_rejected(raw: str) -> None:
    rejects(normalize_imei, raw, field="imei")


# --- MSISDN -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0612345678", "+33612345678"),
        ("06 12 34 56 78", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("+33612345678", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("0734567890", "+33734567890"),
        ("07 81 23 45 67", "+33781234567"),
        # French 14-digit M2M numbers: not known to phonenumbers, accepted explicitly.
        ("07001234567890", "+337001234567890"),
        ("0700 12 34 56 78 90", "+337001234567890"),
        ("+337001234567890", "+337001234567890"),
        ("+447911123456", "+447911123456"),  # a foreign mobile is still a mobile
    ],
)
def test_msisdn_normalised_to_e164(raw: str, expected: str) -> None:
    assert normalize_msisdn(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0145678901", "numéro non mobile"),  # fixed line, Paris
        ("0912345678", "numéro non mobile"),  # VoIP
        ("0800123456", "numéro non mobile"),  # freephone
        ("0712345678", "numéro invalide"),  # 071 is not allocated
        ("061234567", "numéro invalide"),
        ("0690000000", "numéro invalide"),  # Guadeloupe mobile: +590 690…, not +33
        ("06123456789", "numéro invalide"),
        ("0700123456789", "numéro invalide"),  # 13 digits: neither mobile nor M2M
        ("+3300612345678", "numéro invalide"),
        ("bonjour", "numéro de téléphone illisible"),
        ("", "numéro vide"),
    ],
)
def test_msisdn_rejected(raw: str, reason: str) -> None:
    assert rejects(normalize_msisdn, raw, field="msisdn").reason == reason


def test_msisdn_default_region_applies_to_national_numbers() -> None:
    assert normalize_msisdn("07911 123456", default_region="GB") == "+447911123456"


def test_msisdn_not_a_string() -> None:
    rejects(normalize_msisdn, 612345678, field="msisdn")


@pytest.mark.parametrize(
    ("raw", "national"),
    [
        ("+33612345678", "0612345678"),
        ("0612345678", "0612345678"),
        ("+337001234567890", "07001234567890"),
        ("+447911123456", "07911123456"),
    ],
)
def test_msisdn_national(raw: str, national: str) -> None:
    assert msisdn_national(raw) == national


@hypothesis_settings
@given(
    st.sampled_from(["60", "61", "62", "64", "65", "66", "67", "68", "73", "74", "75", "76", "77", "78", "79"]),
    st.text(alphabet="0123456789", min_size=8),
)
def test_msisdn_national_round_trip(prefix: str, digits: str) -> None:
    # 063x9/069x ranges left out: mostly overseas mobiles (+590, +262, +596…) that are invalid under +33.
    national = ("0" + prefix + digits)[:10]
    e164 = normalize_msisdn(national)
    assert e164 == "+33" + national[1:]
    assert msisdn_national(e164) == national
    assert normalize_msisdn(msisdn_national(e164)) == e164


# --- RIO ----------------------------------------------------------------------------------------------------

RIO_VECTORS = [  # self-computed (reference/libraries-and-conventions.md §2); not official vectors
    ("02", "P", "123456", "0612345678", "4NH"),
    ("01", "E", "A1B2C3", "0712345678", "DUL"),
    ("03", "P", "000001", "0600000000", "M6J"),
]


@pytest.mark.parametrize(("oo", "q", "ref", "msisdn", "key"), RIO_VECTORS)
def test_rio_key_vectors(oo: str, q: str, ref: str, msisdn: str, key: str) -> None:
    assert rio_key(oo, q, ref, msisdn) == key
    assert rio_key(oo.lower(), q.lower(), ref.lower(), msisdn) == key


@pytest.mark.parametrize(("oo", "q", "ref", "msisdn", "key"), RIO_VECTORS)
def test_rio_normalised(oo: str, q: str, ref: str, msisdn: str, key: str) -> None:
    rio = f"{oo}{q}{ref}{key}"
    assert normalize_rio(rio, msisdn) == rio
    assert normalize_rio(f" {oo} {q} {ref} {key} ".lower(), msisdn) == rio
    assert normalize_rio(rio, "+33" + msisdn[1:]) == rio  # E.164 accepted, key computed on 0XXXXXXXXX


@pytest.mark.parametrize(
    ("rio", "msisdn", "field", "reason"),
    [
        ("02P1234564NH", "0612345679", "rio", "clé de contrôle invalide pour ce numéro"),  # another number
        ("02P1234564NI", "0612345678", "rio", "clé de contrôle invalide pour ce numéro"),
        ("02P1234574NH", "0612345678", "rio", "clé de contrôle invalide pour ce numéro"),
        ("O2P1234564NH", "0612345678", "rio", "clé de contrôle invalide pour ce numéro"),  # letter O for zero
        ("02F1234564NH", "0612345678", "rio", "3e caractère E ou P attendu pour une ligne mobile"),
        ("02P1234564N", "0612345678", "rio", "12 caractères attendus"),
        ("02P1234564NHX", "0612345678", "rio", "12 caractères attendus"),
        ("02P12345+4NH", "0612345678", "rio", "caractères invalides"),
        ("02P123456_NH", "0612345678", "rio", "caractères invalides"),
        ("02P1234564NH", "0145678901", "msisdn", "numéro mobile français à 10 chiffres attendu"),
        ("02P1234564NH", "+447911123456", "msisdn", "numéro mobile français à 10 chiffres attendu"),
        ("02P1234564NH", "07001234567890", "msisdn", "numéro mobile français à 10 chiffres attendu"),
    ],
)
def test_rio_rejected(rio: str, msisdn: str, field: str, reason: str) -> None:
    assert rejects(normalize_rio, rio, msisdn, field=field).reason == reason


def test_rio_key_rejects_bad_fields() -> None:
    rejects(rio_key, "2", "P", "123456", "0612345678", field="rio")
    rejects(rio_key, "02", "P", "12345", "0612345678", field="rio")
    rejects(rio_key, "02", "P", "12345+", "0612345678", field="rio")
    rejects(rio_key, "02", "P", "123456", "+33612345678", field="msisdn")


@hypothesis_settings
@given(
    st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    st.sampled_from("EP"),
    st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=6, max_size=6),
    st.text(alphabet="0123456789", min_size=8, max_size=8),
    st.integers(0, 8),
)
def test_rio_any_single_character_change_in_the_head_is_detected(
    oo: str, q: str, ref: str, digits: str, position: int
) -> None:
    msisdn = "06" + digits
    head = oo + q + ref
    rio = head + rio_key(oo, q, ref, msisdn)
    assert normalize_rio(rio, msisdn) == rio
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    other = alphabet[(alphabet.index(head[position]) + 1) % len(alphabet)]
    if position == 2:
        other = "P" if q == "E" else "E"
    bad_head = head[:position] + other + head[position + 1 :]
    with pytest.raises(InvalidIdentifier):
        normalize_rio(bad_head + rio[9:], msisdn)


# --- IBAN / BIC ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
        ("fr14 2004 1010 0505 0001 3m02 606", "FR1420041010050500013M02606"),
        ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
    ],
)
def test_iban_normalised(raw: str, expected: str) -> None:
    assert normalize_iban(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("FR1520041010050500013M02606", "clé de contrôle invalide"),
        ("FR8620041010050500013M0260", "format invalide"),  # key right, French BBAN one character short
        ("XX2820041010050500013M02606", "code pays, opérateur ou préfixe inconnu"),
        ("FR14200410100505000!3M02606", "format invalide"),
    ],
)
def test_iban_rejected(raw: str, reason: str) -> None:
    assert rejects(normalize_iban, raw, field="iban").reason == reason


@pytest.mark.parametrize(("raw", "expected"), [("PSSTFRPPXXX", "PSSTFRPPXXX"), ("psst fr pp", "PSSTFRPP")])
def test_bic_normalised(raw: str, expected: str) -> None:
    assert normalize_bic(raw) == expected


@pytest.mark.parametrize("raw", ["PSSTFRP", "PSSTFRPPXX", "1SSTFRPP", "PSSTXXPP"])
def test_bic_rejected(raw: str) -> None:
    rejects(normalize_bic, raw, field="bic")


# --- SIRET / VAT --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("73282932000074", "73282932000074"),
        ("732 829 320 00074", "73282932000074"),
        ("35600000000048", "35600000000048"),  # La Poste: its own checksum rule
    ],
)
def test_siret_normalised(raw: str, expected: str) -> None:
    assert normalize_siret(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("73282932000075", "clé de Luhn invalide"),
        ("7328293200007", "longueur invalide"),
        ("7328293200007A", "format invalide"),
    ],
)
def test_siret_rejected(raw: str, reason: str) -> None:
    assert rejects(normalize_siret, raw, field="siret").reason == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("FR44732829320", "FR44732829320"),
        ("fr 44 732 829 320", "FR44732829320"),
        ("44732829320", "FR44732829320"),  # digits only: French
        ("DE136695976", "DE136695976"),
        ("BE 0403.170.701", "BE0403170701"),
        ("EL094259216", "EL094259216"),
    ],
)
def test_vat_normalised(raw: str, expected: str) -> None:
    assert normalize_vat(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["FR45732829320", "FR4473282932", "DE136695977", "US123456789", "", "12", "ZZ44732829320"],
)
def test_vat_rejected(raw: str) -> None:
    rejects(normalize_vat, raw, field="vat")


def test_vat_never_goes_to_vies(monkeypatch: pytest.MonkeyPatch) -> None:
    import stdnum.eu.vat

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("VIES must not be called")

    monkeypatch.setattr(stdnum.eu.vat, "check_vies", no_network)
    monkeypatch.setattr(stdnum.eu.vat, "check_vies_approx", no_network)
    assert normalize_vat("DE136695976") == "DE136695976"
