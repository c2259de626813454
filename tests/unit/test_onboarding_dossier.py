"""The technical dossier (seed 002): every item valid and invalid, the sales tables as CSV and XLSX, the rows
they become, and the French messages naming the sheet, row, column or dimension at fault."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from openpyxl import Workbook, load_workbook
from PIL import Image

from domain.enums import ArticleKind, PlanType, SubscriptionKind
from domain.errors import ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_sepa_ics
from domain.money import GB
from domain.onboarding_dossier import (
    DOSSIER_ITEMS,
    MAX_FILE_BYTES,
    MAX_ROWS_PER_TABLE,
    SalesTablesInvalid,
    missing_items,
    parse_sales_tables,
    template_csv,
    template_xlsx,
    validate_item,
)

# --- helpers -------------------------------------------------------------------------------------------


def image(width: int, height: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def csv_text() -> str:
    return template_csv().decode("utf-8-sig")


def csv_with(old: str, new: str) -> bytes:
    text = csv_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def csv_errors(content: bytes) -> list[str]:
    result = validate_item("sales_tables", "tables.csv", content)
    assert not result.valid and result.sales_tables is None
    return list(result.errors)


def workbook() -> Workbook:
    return load_workbook(io.BytesIO(template_xlsx()))


def xlsx_bytes(book: Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def xlsx_errors(book: Workbook) -> list[str]:
    result = validate_item("sales_tables", "tables.xlsx", xlsx_bytes(book))
    assert not result.valid
    return list(result.errors)


def one_error(errors: list[str], *fragments: str) -> str:
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# --- valid sales tables --------------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "content"), [("t.csv", template_csv()), ("t.xlsx", template_xlsx())])
def test_templates_are_valid_and_give_plans_articles_and_grids(filename: str, content: bytes) -> None:
    result = validate_item("sales_tables", filename, content)
    assert result.valid and result.errors == ()
    tables = result.sales_tables
    assert tables is not None
    plans = {p.key: p for p in tables.plan_specs()}
    # 4 subscription rows, 2 of them priced with a handset.
    assert sorted(plans) == sorted(
        ["MOB5:0m:seul", "MOB5:12m:seul", "MOB5:12m:mobile", "MOB5:24m:seul", "MOB5:24m:mobile", "PRE20:0m:seul"]
    )
    mobile = plans["MOB5:12m:mobile"]
    assert mobile.price_minor == 1499 and mobile.currency == "EUR"
    assert mobile.plan_type is PlanType.SUBSCRIPTION and mobile.subscription_kind is SubscriptionKind.MONTHLY
    assert mobile.data_allowance_bytes == 5 * GB and mobile.validity_days == 30 and mobile.carrier == "Orange"
    assert "engagement 12 mois" in mobile.name and "avec mobile" in mobile.name
    assert "dossier:MOB5:12m:mobile" in mobile.tags
    prepaid = plans["PRE20:0m:seul"]
    assert prepaid.plan_type is PlanType.PREPAID and prepaid.subscription_kind is None
    assert prepaid.model_kwargs()["price_minor"] == 1500 and prepaid.model_kwargs()["tags"] == list(prepaid.tags)
    articles = {a.code: a for a in tables.article_specs()}
    assert articles["ASSUR"].sale_price_minor == 699 and articles["ASSUR.materiel"].sale_price_minor == 499
    assert "INTL.materiel" not in articles  # the same price with hardware: one article
    assert articles["ESIM"].kind is ArticleKind.ONE_OFF_OPTION
    assert articles["SMA15"].kind is ArticleKind.HARDWARE and articles["SMA15"].sale_price_minor == 19_900
    assert articles["SMA15.MOB5.24m"].sale_price_minor == 100
    grids = tables.minute_grids()
    assert [g.number for g in grids] == [1, 2, 3, 4, 5]
    assert grids[2].national["Fixes et mobiles France"] == Decimal("0.039")
    assert grids[4].international["Amérique du Nord"] == Decimal("0.40")


def test_template_media_types() -> None:
    assert validate_item("sales_tables", "t.csv", template_csv()).media_type == "text/csv"
    assert validate_item("sales_tables", "t.xlsx", template_xlsx()).media_type.endswith("spreadsheetml.sheet")


def test_csv_without_bom_with_crlf_and_headers_as_people_type_them() -> None:
    text = csv_text().replace(
        "code;libelle;type;operateur;engagement_mois;prix_sans_mobile",
        "Code;Libellé;Type;Opérateur;Engagement (mois);Prix sans mobile",
    )
    tables = parse_sales_tables(text.replace("\r\n", "\n").encode("utf-8"), "TABLES.CSV")
    assert len(tables.subscriptions) == 4


def test_xlsx_numbers_sheet_names_and_extra_sheets() -> None:
    book = workbook()
    sheet = book["abonnements"]
    sheet.title = "provisoire"  # openpyxl refuses a title differing only in case from the sheet's own
    sheet.title = "Abonnements"
    sheet["F2"] = 9.99  # a spreadsheet number, not text
    book.create_sheet("Notes internes").append(["rien à lire ici"])
    tables = parse_sales_tables(xlsx_bytes(book), "tables.xlsx")
    assert tables.subscriptions[0].price_without_handset.amount_minor == 999


def test_a_money_cell_keeps_grouping_spaces_and_a_euro_sign() -> None:
    tables = parse_sales_tables(
        csv_with("SMA15;Samsung Galaxy A15;NU;199,00;", "SMA15;Samsung Galaxy A15;NU;1 199,00 €;"), "t.csv"
    )
    assert tables.handsets[0].bare_price.amount_minor == 119_900


def test_subscription_formula_defaults_to_monthly_and_validity_to_30_days() -> None:
    tables = parse_sales_tables(
        csv_with(
            "MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;5;30;",
            "MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;;5;;",
        ),
        "t.csv",
    )
    assert tables.subscriptions[0].subscription_kind is SubscriptionKind.MONTHLY
    assert tables.subscriptions[0].validity_days == 30


# --- invalid sales tables: the file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content", "fragment"),
    [
        ("tables.ods", b"whatever", "format de « tables.ods » non accepté"),
        ("tables.xls", b"\xd0\xcf\x11\xe0old excel", "format de « tables.xls » non accepté"),
        ("tables.xlsx", b"not a zip at all", "n'est pas un classeur XLSX lisible"),
        ("tables.xlsx", b"PK\x03\x04broken zip", "classeur XLSX illisible"),
        ("tables.csv", "#abonnements\ncode;libellé\n".encode("latin-1"), "encodé en UTF-8"),
        ("tables.csv", b"code;libelle\nMOB5;Mobile\n", "ligne 1, une section"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(filename: str, content: bytes, fragment: str) -> None:
    result = validate_item("sales_tables", filename, content)
    assert not result.valid
    one_error(list(result.errors), fragment)


def test_missing_section_and_missing_sheet_are_named() -> None:
    text = csv_text()
    without = text[: text.index("#terminaux")]
    one_error(csv_errors(without.encode()), "section « #terminaux » absente")
    book = workbook()
    del book["options"]
    one_error(xlsx_errors(book), "feuille « options » absente", "abonnements, options, grilles_minutes, terminaux")


def test_missing_column_is_named_with_the_expected_columns() -> None:
    errors = csv_errors(
        csv_with(
            "zone;destination;grille_1;grille_2;grille_3;grille_4;grille_5",
            "zone;destination;grille_1;grille_2;grille_3;grille_4",
        )
    )
    one_error(errors, "section « #grilles_minutes »", "colonne(s) absente(s) grille_5")
    book = workbook()
    book["options"]["D1"] = "tarif"
    one_error(xlsx_errors(book), "feuille « options »", "prix_seul", "colonnes attendues : code, libelle")


def test_a_table_without_rows_is_refused() -> None:
    text = csv_text()
    start = text.index("#options")
    end = text.index("#grilles_minutes")
    empty = text[:start] + "#options\r\ncode;libelle;periodicite;prix_seul\r\n\r\n" + text[end:]
    one_error(csv_errors(empty.encode()), "section « #options »", "aucune ligne")


def test_too_many_rows_are_refused() -> None:
    rows = "".join(f"nationale;Destination {n};0;0;0;0;0\r\n" for n in range(MAX_ROWS_PER_TABLE + 1))
    content = csv_with(
        "zone;destination;grille_1;grille_2;grille_3;grille_4;grille_5\r\n",
        "zone;destination;grille_1;grille_2;grille_3;grille_4;grille_5\r\n" + rows,
    )
    one_error(csv_errors(content), "plus de 2000 lignes")
    book = workbook()
    sheet = book["grilles_minutes"]
    for n in range(MAX_ROWS_PER_TABLE + 1):
        sheet.append(["nationale", f"Destination {n}", 0, 0, 0, 0, 0])
    one_error(xlsx_errors(book), "feuille « grilles_minutes »", "plus de 2000 lignes")


# --- invalid sales tables: cells -----------------------------------------------------------------------

SUB0 = "MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;5;30;"  # line 3 of the CSV template


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        (
            "MOB5;Mobile 5 Go;abonnement;Orange;0;abc;forfait_mensuel;5;30;",
            ("ligne 3, colonne prix_sans_mobile", "« abc » invalide"),
        ),
        (
            "MOB5;Mobile 5 Go;abonnement;Orange;0;0,99;forfait_mensuel;5;30;",
            ("prix_sans_mobile", "inférieur au minimum 1,00"),
        ),
        (
            "MOB5;Mobile 5 Go;abonnement;Orange;0;9,999;forfait_mensuel;5;30;",
            ("prix_sans_mobile", "au plus 2 décimales"),
        ),
        ("MOB5;Mobile 5 Go;abonnement;Orange;0;-9,99;forfait_mensuel;5;30;", ("prix_sans_mobile", "négatif")),
        (
            "MOB5;Mobile 5 Go;abonnement;Orange;0;;forfait_mensuel;5;30;",
            ("ligne 3, colonne prix_sans_mobile", "prix absent"),
        ),
        (
            "MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;5;30;1e3",
            ("prix_avec_mobile", "« 1e3 » invalide"),
        ),
        (
            "MOB5;Mobile 5 Go;forfait;Orange;0;9,99;forfait_mensuel;5;30;",
            ("colonne type", "« forfait » inconnu", "prepaye, abonnement, paygo"),
        ),
        ("MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;mensuel;5;30;", ("colonne formule", "« mensuel » inconnu")),
        (
            "MOB5;Mobile 5 Go;prepaye;Orange;0;9,99;forfait_mensuel;5;30;",
            ("colonne formule", "réservée au type abonnement"),
        ),
        ("MOB 5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;5;30;", ("colonne code", "« MOB 5 » invalide")),
        ("MOB5;;abonnement;Orange;0;9,99;forfait_mensuel;5;30;", ("colonne libelle", "valeur absente")),
        ("MOB5;Mobile 5 Go;abonnement;;0;9,99;forfait_mensuel;5;30;", ("colonne operateur", "valeur absente")),
        (
            "MOB5;Mobile 5 Go;abonnement;Orange;;9,99;forfait_mensuel;5;30;",
            ("colonne engagement_mois", "valeur absente"),
        ),
        ("MOB5;Mobile 5 Go;abonnement;Orange;60;9,99;forfait_mensuel;5;30;", ("engagement_mois", "de 0 à 48")),
        ("MOB5;Mobile 5 Go;abonnement;Orange;1,5;9,99;forfait_mensuel;5;30;", ("engagement_mois", "entier")),
        ("MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;cinq;30;", ("colonne donnees_go", "« cinq »")),
        ("MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;-1;30;", ("colonne donnees_go", "négatif")),
        ("MOB5;Mobile 5 Go;abonnement;Orange;0;9,99;forfait_mensuel;5;0;", ("colonne validite_jours", "de 1 à 3660")),
    ],
)
def test_each_bad_subscription_cell_is_named(row: str, fragments: tuple[str, ...]) -> None:
    one_error(csv_errors(csv_with(SUB0, row)), *fragments)


LINE4 = "MOB5;Mobile 5 Go;abonnement;Orange;12;7,99;forfait_mensuel;5;30;14,99"


def test_an_offer_twice_at_one_commitment_or_under_two_labels_is_refused() -> None:
    same = csv_with(LINE4, "MOB5;Mobile 5 Go;abonnement;Orange;0;7,99;forfait_mensuel;5;30;")
    one_error(csv_errors(same), "ligne 4, colonne engagement_mois", "offre MOB5 déjà décrite", "(ligne 3)")
    renamed = csv_with(LINE4, "MOB5;Mobile 6 Go;abonnement;Orange;12;7,99;forfait_mensuel;5;30;14,99")
    one_error(csv_errors(renamed), "ligne 4, colonne libelle", "ligne 3")


def test_an_xlsx_error_names_the_cell() -> None:
    book = workbook()
    book["abonnements"]["F3"] = "douze"
    one_error(xlsx_errors(book), "feuille « abonnements », cellule F3 (colonne prix_sans_mobile)", "« douze »")
    book = workbook()
    book["abonnements"]["E2"] = True
    one_error(xlsx_errors(book), "cellule E2 (colonne engagement_mois)")


def test_every_bad_cell_is_reported_at_once() -> None:
    content = csv_with(SUB0, "MOB5;;abonnement;Orange;0;abc;forfait_mensuel;5;30;")
    content = content.replace(b"ESIM;Changement de SIM;ponctuelle;10,00;", b"ESIM;Changement de SIM;annuelle;10,00;")
    errors = csv_errors(content)
    assert len(errors) == 3, errors
    assert any("colonne libelle" in e for e in errors) and any("colonne prix_sans_mobile" in e for e in errors)
    assert any("colonne periodicite" in e and "« annuelle » inconnu" in e for e in errors)


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        (
            "ASSUR;Assurance mobile;mensuelle;6,99;4,99",
            "ASSUR;Assurance mobile;mensuelle;6,99;gratuit",
            ("colonne prix_avec_materiel", "« gratuit »"),
        ),
        (
            "ASSUR;Assurance mobile;mensuelle;6,99;4,99",
            "ASSUR;Assurance mobile;mensuelle;;4,99",
            ("colonne prix_seul", "prix absent"),
        ),
        (
            "ASSUR;Assurance mobile;mensuelle;6,99;4,99",
            "INTL;Assurance mobile;mensuelle;6,99;4,99",
            ("colonne code", "option INTL déjà décrite"),
        ),
        (
            "nationale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,25",
            "nationale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,00001",
            ("colonne grille_5", "4 décimales au plus"),
        ),
        (
            "nationale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,25",
            "nationale;Numéros spéciaux;0,15;-0,15;0,20;0,20;0,25",
            ("colonne grille_2", "positif"),
        ),
        (
            "nationale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,25",
            "nationale;Numéros spéciaux;0,15;0,15;;0,20;0,25",
            ("colonne grille_3", "absent"),
        ),
        (
            "nationale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,25",
            "locale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,25",
            ("colonne zone", "« locale » inconnu"),
        ),
        (
            "nationale;Numéros spéciaux;0,15;0,15;0,20;0,20;0,25",
            "nationale;fixes et mobiles france;0,15;0,15;0,20;0,20;0,25",
            ("colonne destination", "déjà tarifée à la ligne"),
        ),
        (
            "SMA15;Samsung Galaxy A15;MOB5;49,00;12",
            "SMA15;Samsung Galaxy A15;MOB9;49,00;12",
            ("colonne offre", "aucune offre MOB9 (engagement 12 mois)"),
        ),
        (
            "SMA15;Samsung Galaxy A15;MOB5;49,00;12",
            "SMA15;Samsung Galaxy A15;MOB5;49,00;0",
            ("colonne offre", "aucune offre MOB5 (sans engagement) avec prix_avec_mobile"),
        ),
        (
            "SMA15;Samsung Galaxy A15;MOB5;49,00;12",
            "SMA15;Samsung Galaxy A15;MOB5;49,00;",
            ("colonne engagement_mois", "valeur absente"),
        ),
        (
            "SMA15;Samsung Galaxy A15;MOB5;49,00;12",
            "SMA15;Samsung Galaxy A16;MOB5;49,00;12",
            ("colonne modele", "terminal SMA15"),
        ),
        (
            "SMA15;Samsung Galaxy A15;MOB5;49,00;12",
            "SMA15;Samsung Galaxy A15;MOB5;49,00;24",
            ("colonne offre", "déjà donné à la ligne"),
        ),
        (
            "SMA15;Samsung Galaxy A15;MOB5;49,00;12",
            "SMA15;Samsung Galaxy A15;MOB5;quarante;12",
            ("colonne prix", "« quarante »"),
        ),
        (
            "SMA15;Samsung Galaxy A15;NU;199,00;",
            "SMA15;Samsung Galaxy A15;NU;199,00;12",
            ("colonne engagement_mois", "vide pour le tarif NU"),
        ),
    ],
)
def test_each_bad_option_grid_and_handset_cell_is_named(old: str, new: str, fragments: tuple[str, ...]) -> None:
    one_error(csv_errors(csv_with(old, new)), *fragments)


def test_a_handset_without_bare_price_is_refused() -> None:
    content = csv_with("SMA15;Samsung Galaxy A15;NU;199,00;\r\n", "")
    one_error(csv_errors(content), "terminal SMA15", "sans tarif NU")


def test_both_zones_are_required_in_the_minute_grids() -> None:
    text = csv_text()
    for line in (
        "internationale;Union européenne;0,10;0,12;0,15;0,20;0,25\r\n",
        "internationale;Amérique du Nord;0,15;0,20;0,25;0,30;0,40\r\n",
    ):
        text = text.replace(line, "")
    one_error(csv_errors(text.encode()), "aucune destination de zone « internationale »")


def test_parse_sales_tables_raises_with_every_error() -> None:
    with pytest.raises(SalesTablesInvalid) as info:
        parse_sales_tables(csv_with(SUB0, "MOB5;;abonnement;Orange;0;abc;forfait_mensuel;5;30;"), "t.csv")
    assert len(info.value.errors) == 2 and info.value.field == "sales_tables"
    assert isinstance(info.value, ValidationFailed)


# --- images --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("item", "size"), [("logo", (95, 95)), ("footer_banner", (760, 95))])
@pytest.mark.parametrize(("fmt", "media_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_images_of_the_exact_size_are_kept(item: str, size: tuple[int, int], fmt: str, media_type: str) -> None:
    content = image(*size, fmt=fmt)
    result = validate_item(item, "image", content)
    assert result.valid and result.media_type == media_type and result.size_bytes == len(content)


@pytest.mark.parametrize(
    ("item", "size", "fragment"),
    [
        ("logo", (96, 95), "dimensions 96 × 95 pixels, 95 × 95 pixels attendues"),
        ("logo", (760, 95), "dimensions 760 × 95 pixels, 95 × 95"),
        ("footer_banner", (95, 95), "dimensions 95 × 95 pixels, 760 × 95 pixels attendues"),
        ("footer_banner", (760, 94), "760 × 94"),
    ],
)
def test_wrong_image_size_names_both_dimensions(item: str, size: tuple[int, int], fragment: str) -> None:
    result = validate_item(item, "image.png", image(*size))
    assert not result.valid
    one_error(list(result.errors), fragment)


def test_image_in_another_format_is_refused() -> None:
    result = validate_item("logo", "logo.gif", image(95, 95, "GIF"))
    one_error(list(result.errors), "Logo : format GIF non accepté")
    result = validate_item("logo", "logo.gif", image(100, 95, "GIF"))
    assert len(result.errors) == 2  # format and size, both said


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "est vide"),
        (b"not an image", "n'est pas une image lisible"),
        (image(95, 95)[:60], "n'est pas une image lisible"),  # truncated PNG
        (b"\x89PNG" + b"0" * MAX_FILE_BYTES, "fichier trop lourd (5,0 Mo, 5 Mo au plus)"),
    ],
)
def test_unreadable_or_too_large_images_are_refused(content: bytes, fragment: str) -> None:
    result = validate_item("footer_banner", "bandeau.png", content)
    assert not result.valid
    one_error(list(result.errors), fragment)


# --- ARCEP form ----------------------------------------------------------------------------------------


def test_arcep_form_accepts_a_pdf_only() -> None:
    pdf = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
    result = validate_item("arcep_form", "arcep.pdf", pdf)
    assert result.valid and result.media_type == "application/pdf" and result.filename == "arcep.pdf"
    one_error(
        list(validate_item("arcep_form", "arcep.docx", b"PK\x03\x04word").errors), "« arcep.docx » n'est pas un PDF"
    )
    one_error(list(validate_item("arcep_form", "arcep.pdf", b"").errors), "est vide")
    one_error(list(validate_item("arcep_form", "arcep.pdf", b"%PDF-" + b"0" * MAX_FILE_BYTES).errors), "trop lourd")


# --- text items ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", ["accounting_email", "technical_email"])
def test_emails(item: str) -> None:
    result = validate_item(item, "", b" Facturation@Integrateur.example \n")
    assert result.valid and result.value == "facturation@integrateur.example"
    for bad in ("facturation", "facturation@", "a b@example.com", "@example.com"):
        errors = list(validate_item(item, "", bad.encode()).errors)
        one_error(errors, f"« {bad} » n'est pas une adresse e-mail valide")
    one_error(list(validate_item(item, "", b"  ").errors), "valeur absente")


def test_sepa_ics() -> None:
    result = validate_item("sepa_ics", "", b"fr72 zzz 123456")
    assert result.valid and result.value == "FR72ZZZ123456"
    one_error(
        list(validate_item("sepa_ics", "", b"FR73ZZZ123456").errors), "ICS (norme SEPA)", "clé de contrôle (mod 97)"
    )
    one_error(list(validate_item("sepa_ics", "", b"DE98ZZZ09999999999").errors), "commence par FR")
    one_error(list(validate_item("sepa_ics", "", b"FR72ZZZ12345").errors), "13 caractères attendus", "12 reçus")
    one_error(list(validate_item("sepa_ics", "", b"FRXXZZZ123456").errors), "format attendu FRkkZZZnnnnnn")


def test_sepa_ics_identifier_keys() -> None:
    assert normalize_sepa_ics("FR19ZZZ654321") == "FR19ZZZ654321"
    for wrong_key in range(100):
        if wrong_key != 19:
            with pytest.raises(InvalidIdentifier):
                normalize_sepa_ics(f"FR{wrong_key:02d}ZZZ654321")


@pytest.mark.parametrize("item", ["contact_name", "brand_name"])
def test_names(item: str) -> None:
    result = validate_item(item, "", "  Élodie   Martin ".encode())
    assert result.valid and result.value == "Élodie Martin"
    one_error(list(validate_item(item, "", b"").errors), "valeur absente")
    one_error(list(validate_item(item, "", b"A\nB").errors), "caractères de contrôle")
    one_error(list(validate_item(item, "", b"42").errors), "aucune lettre")
    one_error(list(validate_item(item, "", b"x" * 300).errors), "300 reçus")
    one_error(list(validate_item(item, "", b"\xff\xfe").errors), "UTF-8")


# --- the dossier ---------------------------------------------------------------------------------------


def test_unknown_item_is_the_callers_error() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_item("kbis", "kbis.pdf", b"%PDF-")
    assert info.value.field == "item"


def test_missing_items_in_dossier_order() -> None:
    assert missing_items([]) == list(DOSSIER_ITEMS)
    assert missing_items(["logo", "sepa_ics"])[:3] == ["sales_tables", "footer_banner", "arcep_form"]
    assert missing_items(DOSSIER_ITEMS) == []
    assert len(DOSSIER_ITEMS) == 9
