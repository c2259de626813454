"""The integrator's technical dossier (seed 002 §B), checked item by item on upload. Pure: parses bytes only.

`validate_item(item, filename, content)` checks one item and returns a `DossierItemResult`: valid, or the
list of French messages naming the sheet, row, column or dimension at fault. Items are independent: a bad
logo does not undo valid sales tables. Text items (e-mails, names, ICS) come as UTF-8 bytes.

The sales tables (CSV `;` UTF-8 with sections, or XLSX with one sheet per table) are described by `TABLES`
and documented in docs/decisions.md; `template_xlsx()` and `template_csv()` give a filled-in example that
passes the checks. `SalesTables.plan_specs()` and `.article_specs()` are the `Plan` and `CatalogueArticle`
rows the platform creation makes from them.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from email_validator import EmailNotValidError, validate_email
from PIL import Image

from domain.enums import ArticleKind, PlanType, SubscriptionKind
from domain.errors import ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_sepa_ics
from domain.money import InvalidAmount, Money, gb_to_bytes

__all__ = [
    "DOSSIER_ITEMS",
    "ITEM_LABELS_FR",
    "MAX_FILE_BYTES",
    "ArticleSpec",
    "DossierItemResult",
    "HandsetOfferPrice",
    "HandsetRow",
    "MinuteGrid",
    "MinuteRateRow",
    "OptionRow",
    "PlanSpec",
    "SalesTables",
    "SalesTablesInvalid",
    "SubscriptionRow",
    "missing_items",
    "parse_sales_tables",
    "template_csv",
    "template_xlsx",
    "validate_item",
]

# --- items -----------------------------------------------------------------------------------------------

SALES_TABLES = "sales_tables"
LOGO = "logo"
FOOTER_BANNER = "footer_banner"
ARCEP_FORM = "arcep_form"
ACCOUNTING_EMAIL = "accounting_email"
TECHNICAL_EMAIL = "technical_email"
CONTACT_NAME = "contact_name"
SEPA_ICS = "sepa_ics"
BRAND_NAME = "brand_name"

ITEM_LABELS_FR: dict[str, str] = {
    SALES_TABLES: "Tables de ventes",
    LOGO: "Logo",
    FOOTER_BANNER: "Bandeau de bas de facture",
    ARCEP_FORM: "Formulaire ARCEP",
    ACCOUNTING_EMAIL: "Adresse e-mail de la comptabilité",
    TECHNICAL_EMAIL: "Adresse e-mail technique",
    CONTACT_NAME: "Nom du contact technique",
    SEPA_ICS: "ICS (norme SEPA)",
    BRAND_NAME: "Nom de la marque mobile",
}
DOSSIER_ITEMS: tuple[str, ...] = tuple(ITEM_LABELS_FR)
FILE_ITEMS = frozenset({SALES_TABLES, LOGO, FOOTER_BANNER, ARCEP_FORM})

MAX_FILE_BYTES = 5 * 1024 * 1024  # the API's upload limit (Settings.max_upload_body_bytes leaves room for the form)
IMAGE_SIZES: dict[str, tuple[int, int]] = {LOGO: (95, 95), FOOTER_BANNER: (760, 95)}
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_TEXT_LENGTH = {CONTACT_NAME: 200, BRAND_NAME: 100}
MAX_ISSUES = 100  # a badly wrong file: the first hundred problems are enough to start with


@dataclass(frozen=True)
class DossierItemResult:
    """One item's check. `errors` are complete French sentences, each naming where the problem is."""

    item: str
    valid: bool
    errors: tuple[str, ...] = ()
    value: str | None = None  # text items: the normalised value (e-mail in lower case, compact ICS)
    filename: str | None = None
    media_type: str | None = None  # file items: image/png, image/jpeg, application/pdf, text/csv, …xlsx
    size_bytes: int = 0
    sales_tables: SalesTables | None = None

    @property
    def label(self) -> str:
        return ITEM_LABELS_FR[self.item]


def missing_items(valid_items: Iterable[str]) -> list[str]:
    """The items still to provide, in the dossier's order."""
    have = set(valid_items)
    return [item for item in DOSSIER_ITEMS if item not in have]


def validate_item(item: str, filename: str, content: bytes) -> DossierItemResult:
    """Checks one dossier item. An unknown item name is the caller's error (`ValidationFailed` on `item`)."""
    if item not in ITEM_LABELS_FR:
        raise ValidationFailed("item", f"élément inconnu « {item} » (attendu : {', '.join(DOSSIER_ITEMS)})")
    if item in FILE_ITEMS:
        return _validate_file(item, filename, content)
    return _validate_text(item, content)


def _invalid(item: str, *errors: str, filename: str | None = None, size: int = 0) -> DossierItemResult:
    return DossierItemResult(item=item, valid=False, errors=tuple(errors), filename=filename, size_bytes=size)


def _validate_file(item: str, filename: str, content: bytes) -> DossierItemResult:
    label = ITEM_LABELS_FR[item]
    size = len(content)
    if size == 0:
        return _invalid(item, f"{label} : le fichier « {filename} » est vide.", filename=filename)
    if size > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // (1024 * 1024)
        return _invalid(
            item, f"{label} : fichier trop lourd ({_size_fr(size)}, {limit} Mo au plus).", filename=filename, size=size
        )
    if item in IMAGE_SIZES:
        return _validate_image(item, filename, content)
    if item == ARCEP_FORM:
        if not content.startswith(b"%PDF-"):
            return _invalid(
                item, f"{label} : le fichier « {filename} » n'est pas un PDF.", filename=filename, size=size
            )
        return DossierItemResult(item, True, filename=filename, media_type="application/pdf", size_bytes=size)
    try:
        tables = parse_sales_tables(content, filename)
    except SalesTablesInvalid as exc:
        return _invalid(item, *exc.errors, filename=filename, size=size)
    media_type = XLSX_MEDIA_TYPE if _is_zip(content) else "text/csv"
    return DossierItemResult(item, True, filename=filename, media_type=media_type, size_bytes=size, sales_tables=tables)


def _size_fr(size: int) -> str:
    return f"{Decimal(size) / (1024 * 1024):.1f} Mo".replace(".", ",")


def _validate_image(item: str, filename: str, content: bytes) -> DossierItemResult:
    label = ITEM_LABELS_FR[item]
    width, height = IMAGE_SIZES[item]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                kind, (got_w, got_h) = image.format, image.size
                image.verify()  # truncated or corrupt data raises here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return _invalid(
            item,
            f"{label} : le fichier « {filename} » n'est pas une image lisible (JPG ou PNG attendu).",
            filename=filename,
            size=len(content),
        )
    errors = []
    if kind not in IMAGE_FORMATS:
        errors.append(f"{label} : format {kind} non accepté (JPG ou PNG attendu).")
    if (got_w, got_h) != (width, height):
        errors.append(f"{label} : dimensions {got_w} × {got_h} pixels, {width} × {height} pixels attendues exactement.")
    if errors:
        return _invalid(item, *errors, filename=filename, size=len(content))
    return DossierItemResult(
        item, True, filename=filename, media_type=IMAGE_FORMATS[str(kind)], size_bytes=len(content)
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _validate_text(item: str, content: bytes) -> DossierItemResult:
    label = ITEM_LABELS_FR[item]
    try:
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        return _invalid(item, f"{label} : texte illisible (UTF-8 attendu).")
    if not text:
        return _invalid(item, f"{label} : valeur absente.")
    if item in (ACCOUNTING_EMAIL, TECHNICAL_EMAIL):
        try:
            email = validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            return _invalid(item, f"{label} : « {text} » n'est pas une adresse e-mail valide ({exc}).")
        return DossierItemResult(item, True, value=email.lower())
    if item == SEPA_ICS:
        try:
            return DossierItemResult(item, True, value=normalize_sepa_ics(text))
        except InvalidIdentifier as exc:
            return _invalid(item, f"{label} : « {text} » invalide, {exc.reason}.")
    if _CONTROL.search(text):
        return _invalid(item, f"{label} : caractères de contrôle (retour à la ligne, tabulation) interdits.")
    text = " ".join(text.split())
    if len(text) < 2 or len(text) > MAX_TEXT_LENGTH[item]:
        return _invalid(item, f"{label} : entre 2 et {MAX_TEXT_LENGTH[item]} caractères attendus ({len(text)} reçus).")
    if not any(ch.isalpha() for ch in text):
        return _invalid(item, f"{label} : « {text} » ne contient aucune lettre.")
    return DossierItemResult(item, True, value=text)


# --- sales tables: format ------------------------------------------------------------------------------

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SUBSCRIPTIONS, OPTIONS, MINUTE_GRIDS, HANDSETS = "abonnements", "options", "grilles_minutes", "terminaux"
GRID_COUNT = 5
BARE = "NU"  # the handset's price without any offer (seed 002: « ne pas oublier le tarif NU »)
MAX_ROWS_PER_TABLE = 2000
MAX_SHEET_ROWS = 20 * MAX_ROWS_PER_TABLE
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,20}")


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        SUBSCRIPTIONS,
        ("code", "libelle", "type", "operateur", "engagement_mois", "prix_sans_mobile"),
        ("formule", "donnees_go", "validite_jours", "prix_avec_mobile"),
    ),
    TableSpec(OPTIONS, ("code", "libelle", "periodicite", "prix_seul"), ("prix_avec_materiel",)),
    TableSpec(MINUTE_GRIDS, ("zone", "destination", *(f"grille_{n}" for n in range(1, GRID_COUNT + 1)))),
    TableSpec(HANDSETS, ("code", "modele", "offre", "prix"), ("engagement_mois",)),
)
TABLES_BY_NAME = {spec.name: spec for spec in TABLES}

PLAN_TYPES = {"prepaye": PlanType.PREPAID, "abonnement": PlanType.SUBSCRIPTION, "paygo": PlanType.PAYGO}
SUBSCRIPTION_KINDS = {
    "forfait_mensuel": SubscriptionKind.MONTHLY,
    "illimite": SubscriptionKind.UNLIMITED,
    "pool_statique": SubscriptionKind.STATIC_POOL,
    "pool_dynamique": SubscriptionKind.DYNAMIC_POOL,
    "paiement_au_mo": SubscriptionKind.PAY_PER_MB,
}
PERIODICITIES = {"mensuelle": ArticleKind.PERIODIC_OPTION, "ponctuelle": ArticleKind.ONE_OFF_OPTION}
ZONES = ("nationale", "internationale")
MAX_COMMITMENT_MONTHS = 48
DEFAULT_VALIDITY_DAYS = 30
MINUTE_RATE_DECIMALS = 4  # per-minute rates go below the cent (0,0390 €/min)


@dataclass(frozen=True)
class SubscriptionRow:
    """A line of `abonnements`: one offer at one commitment, priced without and (optionally) with a handset."""

    row: int
    code: str
    label: str
    plan_type: PlanType
    subscription_kind: SubscriptionKind | None
    carrier: str
    data_allowance_bytes: int
    validity_days: int
    commitment_months: int  # 0: sans engagement
    price_without_handset: Money
    price_with_handset: Money | None


@dataclass(frozen=True)
class OptionRow:
    row: int
    code: str
    label: str
    kind: ArticleKind
    price_alone: Money
    price_with_hardware: Money  # seed 002: usually the same as alone; the same when left empty


@dataclass(frozen=True)
class MinuteRateRow:
    """A destination's price per minute in each of the 5 grids (exact decimal euros, up to 4 decimals)."""

    row: int
    zone: Literal["nationale", "internationale"]
    destination: str
    prices: tuple[Decimal, ...]


@dataclass(frozen=True)
class MinuteGrid:
    number: int  # 1 to 5: the grid chosen for a customer at activation
    national: dict[str, Decimal]
    international: dict[str, Decimal]


@dataclass(frozen=True)
class HandsetOfferPrice:
    offer_code: str
    commitment_months: int
    price: Money


@dataclass(frozen=True)
class HandsetRow:
    code: str
    model: str
    bare_price: Money
    offer_prices: tuple[HandsetOfferPrice, ...]


@dataclass(frozen=True)
class PlanSpec:
    """A `Plan` to create: `Plan(org_id=…, **spec.model_kwargs())`. `key` is stable across uploads of the same
    table (offer code, commitment, with or without handset) and is kept in the plan's tags, so creating the
    plans twice can find those already made."""

    key: str
    name: str
    plan_type: PlanType
    subscription_kind: SubscriptionKind | None
    price_minor: int
    currency: str
    data_allowance_bytes: int
    validity_days: int
    carrier: str
    tags: tuple[str, ...]

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plan_type": self.plan_type,
            "subscription_kind": self.subscription_kind,
            "price_minor": self.price_minor,
            "currency": self.currency,
            "data_allowance_bytes": self.data_allowance_bytes,
            "validity_days": self.validity_days,
            "carrier": self.carrier,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class ArticleSpec:
    """A `CatalogueArticle` to create: `CatalogueArticle(org_id=…, **spec.model_kwargs())`; `code` is unique
    per organisation (the table's unique constraint)."""

    code: str
    label: str
    kind: ArticleKind
    sale_price_minor: int
    currency: str

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "label": self.label,
            "kind": self.kind,
            "sale_price_minor": self.sale_price_minor,
            "currency": self.currency,
        }


def _commitment_fr(months: int) -> str:
    return "sans engagement" if months == 0 else f"engagement {months} mois"


@dataclass(frozen=True)
class SalesTables:
    subscriptions: tuple[SubscriptionRow, ...]
    options: tuple[OptionRow, ...]
    minute_rates: tuple[MinuteRateRow, ...]
    handsets: tuple[HandsetRow, ...]

    def plan_specs(self) -> list[PlanSpec]:
        """One plan per subscription row without handset, and one more per row priced with a handset."""
        specs = []
        for s in self.subscriptions:
            variants = [(False, s.price_without_handset)]
            if s.price_with_handset is not None:
                variants.append((True, s.price_with_handset))
            for with_handset, price in variants:
                key = f"{s.code}:{s.commitment_months}m:{'mobile' if with_handset else 'seul'}"
                name = f"{s.label} – {_commitment_fr(s.commitment_months)}" + (" – avec mobile" if with_handset else "")
                tags = [f"dossier:{key}", f"engagement:{s.commitment_months}m"]
                if with_handset:
                    tags.append("avec-mobile")
                specs.append(
                    PlanSpec(
                        key=key,
                        name=name[:200],
                        plan_type=s.plan_type,
                        subscription_kind=s.subscription_kind,
                        price_minor=price.amount_minor,
                        currency=price.currency,
                        data_allowance_bytes=s.data_allowance_bytes,
                        validity_days=s.validity_days,
                        carrier=s.carrier,
                        tags=tuple(tags),
                    )
                )
        return specs

    def article_specs(self) -> list[ArticleSpec]:
        """Options (and their price with hardware when it differs), handsets at their bare price, and each
        handset's price with an offer."""
        specs = []
        for o in self.options:
            specs.append(ArticleSpec(o.code, o.label, o.kind, o.price_alone.amount_minor, o.price_alone.currency))
            if o.price_with_hardware != o.price_alone:
                specs.append(
                    ArticleSpec(
                        f"{o.code}.materiel",
                        f"{o.label} (avec matériel)"[:200],
                        o.kind,
                        o.price_with_hardware.amount_minor,
                        o.price_with_hardware.currency,
                    )
                )
        for h in self.handsets:
            specs.append(
                ArticleSpec(h.code, f"{h.model} (nu)"[:200], ArticleKind.HARDWARE, h.bare_price.amount_minor, "EUR")
            )
            for p in h.offer_prices:
                specs.append(
                    ArticleSpec(
                        f"{h.code}.{p.offer_code}.{p.commitment_months}m",
                        f"{h.model} avec {p.offer_code}, {_commitment_fr(p.commitment_months)}"[:200],
                        ArticleKind.HARDWARE,
                        p.price.amount_minor,
                        p.price.currency,
                    )
                )
        return specs

    def minute_grids(self) -> list[MinuteGrid]:
        grids = []
        for index in range(GRID_COUNT):
            national = {r.destination: r.prices[index] for r in self.minute_rates if r.zone == "nationale"}
            international = {r.destination: r.prices[index] for r in self.minute_rates if r.zone == "internationale"}
            grids.append(MinuteGrid(index + 1, national, international))
        return grids


class SalesTablesInvalid(ValidationFailed):
    """The sales tables were refused; `errors` lists every problem found (French, each with its place)."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("sales_tables", errors[0] if len(errors) == 1 else f"{len(errors)} erreurs")
        self.errors = tuple(errors)


# --- sales tables: reading -----------------------------------------------------------------------------


def _normalise_name(text: str) -> str:
    """`Prix sans mobile` → `prix_sans_mobile`, `Libellé` → `libelle`: headers and sheet names as people type them."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", plain.strip().lower()).strip("_")


@dataclass
class _Table:
    """A table as read from the file: its header (normalised) and its rows, each with its place in the file."""

    spec: TableSpec
    where: str  # « feuille abonnements » / « section #abonnements »
    header: list[str]
    rows: list[tuple[int, list[object]]]
    is_xlsx: bool

    def cell_place(self, row: int, column: str) -> str:
        if self.is_xlsx:
            letter = _column_letter(self.header.index(column))
            return f"{self.where}, cellule {letter}{row} (colonne {column})"
        return f"{self.where}, ligne {row}, colonne {column}"


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _is_zip(content: bytes) -> bool:
    return content.startswith(b"PK\x03\x04")


def _read_xlsx(content: bytes) -> dict[str, tuple[list[object], list[tuple[int, list[object]]]]]:
    from openpyxl import load_workbook  # heavy import: only when a workbook comes

    sheets: dict[str, tuple[list[object], list[tuple[int, list[object]]]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # openpyxl's notes on features it skips (data validation…)
        try:
            workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        except Exception as exc:  # any failure of the parser on an uploaded file: the file is unreadable
            raise SalesTablesInvalid([f"Tables de ventes : classeur XLSX illisible ({type(exc).__name__})."]) from exc
        try:
            for sheet in workbook.worksheets:
                rows = sheet.iter_rows(values_only=True)
                header = list(next(rows, ()))
                body: list[tuple[int, list[object]]] = []
                for number, values in enumerate(rows, start=2):
                    if any(v not in (None, "") for v in values):
                        body.append((number, list(values)))
                    # Rows beyond the limit (even blank ones, a bloated sheet) are not read at all.
                    if len(body) > MAX_ROWS_PER_TABLE or number > MAX_SHEET_ROWS:
                        raise SalesTablesInvalid(
                            [f"Tables de ventes, feuille « {sheet.title} » : plus de {MAX_ROWS_PER_TABLE} lignes."]
                        )
                sheets.setdefault(_normalise_name(str(sheet.title)), (header, body))
        finally:
            workbook.close()
    return sheets


def _read_csv(content: bytes) -> dict[str, tuple[list[object], list[tuple[int, list[object]]]]]:
    """A `;` file of sections: a line `#abonnements` opens a table, the next line is its header."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SalesTablesInvalid(["Tables de ventes : le fichier CSV doit être encodé en UTF-8."]) from exc
    sections: dict[str, tuple[list[object], list[tuple[int, list[object]]]]] = {}
    current: tuple[list[object], list[tuple[int, list[object]]]] | None = None
    expecting_header = False
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    try:
        for values in reader:
            line = reader.line_num
            cells = [v.strip() for v in values]
            if not any(cells):
                continue
            if cells[0].startswith("#") and not any(cells[1:]):
                current = ([], [])
                sections.setdefault(_normalise_name(cells[0][1:]), current)
                expecting_header = True
            elif current is None:
                raise SalesTablesInvalid(
                    [
                        f"Tables de ventes : ligne {line}, une section (par exemple « #{SUBSCRIPTIONS} ») "
                        "doit ouvrir le fichier."
                    ]
                )
            elif expecting_header:
                current[0].extend(cells)
                expecting_header = False
            elif len(current[1]) <= MAX_ROWS_PER_TABLE:
                current[1].append((line, list(cells)))
    except csv.Error as exc:
        raise SalesTablesInvalid([f"Tables de ventes : fichier CSV illisible ({exc})."]) from exc
    return sections


def _tables(content: bytes, filename: str) -> tuple[dict[str, _Table], list[str]]:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if _is_zip(content):
        raw, is_xlsx, kind = _read_xlsx(content), True, "feuille"
    elif extension == "xlsx":
        raise SalesTablesInvalid([f"Tables de ventes : « {filename} » n'est pas un classeur XLSX lisible."])
    elif extension == "csv":
        raw, is_xlsx, kind = _read_csv(content), False, "section"
    else:
        raise SalesTablesInvalid(
            [f"Tables de ventes : format de « {filename} » non accepté (.xlsx ou .csv séparé par « ; » attendu)."]
        )
    tables: dict[str, _Table] = {}
    errors = []
    for spec in TABLES:
        where = f"{kind} « {spec.name} »" if is_xlsx else f"section « #{spec.name} »"
        if spec.name not in raw:
            expected = ", ".join(t.name for t in TABLES)
            errors.append(f"Tables de ventes : {where} absente ({kind}s attendues : {expected}).")
            continue
        header_cells, rows = raw[spec.name]
        header = [_normalise_name(str(h)) if h is not None else "" for h in header_cells]
        missing = [c for c in spec.required if c not in header]
        if missing:
            errors.append(
                f"Tables de ventes, {where} : colonne(s) absente(s) {', '.join(missing)} "
                f"(colonnes attendues : {', '.join(spec.columns)})."
            )
            continue
        if len(rows) > MAX_ROWS_PER_TABLE:
            errors.append(f"Tables de ventes, {where} : plus de {MAX_ROWS_PER_TABLE} lignes.")
            continue
        if not rows:
            errors.append(f"Tables de ventes, {where} : aucune ligne après l'en-tête.")
            continue
        tables[spec.name] = _Table(spec, where, header, rows, is_xlsx)
    return tables, errors


# --- sales tables: checking ----------------------------------------------------------------------------


@dataclass
class _Rows:
    """Reads typed cells of one table, collecting an error per bad cell."""

    table: _Table
    errors: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[int, _Cells]]:
        for number, values in self.table.rows:
            yield number, _Cells(self, number, values)

    def error(self, number: int, column: str, reason: str) -> None:
        self.errors.append(f"Tables de ventes, {self.table.cell_place(number, column)} : {reason}.")


@dataclass
class _Cells:
    rows: _Rows
    number: int
    values: list[object]
    ok: bool = True

    def raw(self, column: str) -> object:
        header = self.rows.table.header
        index = header.index(column) if column in header else -1
        value = self.values[index] if 0 <= index < len(self.values) else None
        return value.strip() if isinstance(value, str) else value

    def fail(self, column: str, reason: str) -> None:
        self.ok = False
        self.rows.error(self.number, column, reason)

    def text(self, column: str, *, required: bool = True, max_length: int = 200) -> str:
        value = self.raw(column)
        text = (
            ""
            if value is None
            else (str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))
        )
        text = " ".join(text.split())
        if not text and required:
            self.fail(column, "valeur absente")
        elif len(text) > max_length:
            self.fail(column, f"{max_length} caractères au plus ({len(text)} reçus)")
        return text

    def code(self, column: str = "code") -> str:
        text = self.text(column)
        if text and not CODE_PATTERN.fullmatch(text):
            self.fail(column, f"code « {text} » invalide (1 à 20 lettres, chiffres, _ ou - sans espace)")
        return text

    def choice(self, column: str, choices: dict[str, Any], *, required: bool = True) -> Any:
        text = self.text(column, required=required)
        if not text:
            return None
        key = _normalise_name(text)
        if key not in choices:
            self.fail(column, f"« {text} » inconnu (valeurs possibles : {', '.join(choices)})")
            return None
        return choices[key]

    def integer(self, column: str, *, default: int | None, low: int, high: int) -> int:
        value = self.raw(column)
        if value is None or value == "":
            if default is None:
                self.fail(column, "valeur absente")
                return low
            return default
        try:
            number = _decimal(value)
        except ValueError:
            self.fail(column, f"« {value} » n'est pas un nombre entier")
            return low
        if number != number.to_integral_value() or not low <= number <= high:
            self.fail(column, f"nombre entier de {low} à {high} attendu (reçu {value})")
            return low
        return int(number)

    def money(self, column: str, *, required: bool = True, minimum_minor: int = 0) -> Money | None:
        value = self.raw(column)
        if value is None or value == "":
            if required:
                self.fail(column, "prix absent")
            return None
        try:
            money = Money.parse(_decimal(value))
        except (ValueError, InvalidAmount) as exc:
            reason = exc.reason if isinstance(exc, InvalidAmount) else "montant décimal attendu, ex. 9,99"
            self.fail(column, f"prix « {value} » invalide ({reason})")
            return None
        if money.amount_minor < minimum_minor:
            self.fail(column, f"prix {money.format_fr()} inférieur au minimum {Money(minimum_minor).format_fr()}")
            return None
        return money

    def rate(self, column: str) -> Decimal:
        value = self.raw(column)
        if value is None or value == "":
            self.fail(column, "prix par minute absent")
            return Decimal(0)
        try:
            rate = _decimal(value)
        except ValueError:
            self.fail(column, f"prix par minute « {value} » invalide (montant décimal attendu, ex. 0,039)")
            return Decimal(0)
        exponent = rate.as_tuple().exponent
        if rate < 0 or (isinstance(exponent, int) and exponent < -MINUTE_RATE_DECIMALS):
            self.fail(
                column, f"prix par minute « {value} » invalide (positif, {MINUTE_RATE_DECIMALS} décimales au plus)"
            )
            return Decimal(0)
        return rate

    def data_bytes(self, column: str) -> int:
        value = self.raw(column)
        if value is None or value == "":
            return 0
        try:
            return gb_to_bytes(_decimal(value))
        except (ValueError, InvalidAmount) as exc:
            reason = exc.reason if isinstance(exc, InvalidAmount) else "nombre de Go attendu, ex. 5 ou 0,5"
            self.fail(column, f"volume « {value} » invalide ({reason})")
            return 0


def _decimal(value: object) -> Decimal:
    """A cell's number: text with a decimal comma or point, or a spreadsheet number (a float keeps its shortest
    decimal form, `9.99` and not its binary expansion). Grouping spaces are allowed (`1 299,00`)."""
    if isinstance(value, bool):
        raise ValueError("booléen")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise ValueError(type(value).__name__)
    text = value.replace("\u00a0", "").replace("\u202f", "").replace(" ", "").removesuffix("€")
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
        raise ValueError(value)
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(value) from exc


def _check_subscriptions(table: _Table, errors: list[str]) -> list[SubscriptionRow]:
    rows = _Rows(table)
    found: list[SubscriptionRow] = []
    seen: dict[tuple[str, int], int] = {}
    labels: dict[str, tuple[str, int]] = {}
    for number, cells in rows:
        code, label = cells.code(), cells.text("libelle")
        plan_type: PlanType | None = cells.choice("type", PLAN_TYPES)
        kind: SubscriptionKind | None = cells.choice("formule", SUBSCRIPTION_KINDS, required=False)
        if plan_type is PlanType.SUBSCRIPTION and kind is None and not cells.text("formule", required=False):
            kind = SubscriptionKind.MONTHLY
        elif plan_type is not None and plan_type is not PlanType.SUBSCRIPTION and kind is not None:
            cells.fail("formule", "formule réservée au type abonnement (laisser vide)")
        carrier = cells.text("operateur", max_length=50)
        data = cells.data_bytes("donnees_go")
        validity = cells.integer("validite_jours", default=DEFAULT_VALIDITY_DAYS, low=1, high=3660)
        commitment = cells.integer("engagement_mois", default=None, low=0, high=MAX_COMMITMENT_MONTHS)
        # Seed 000: « Le prix doit être d'au moins 1,0 lors de la création d'un forfait » (plans.price_at_least_one).
        alone = cells.money("prix_sans_mobile", minimum_minor=100)
        with_handset = cells.money("prix_avec_mobile", required=False, minimum_minor=100)
        if code and cells.ok:
            if (code, commitment) in seen:
                cells.fail(
                    "engagement_mois", f"offre {code} déjà décrite pour cet engagement (ligne {seen[code, commitment]})"
                )
            elif code in labels and labels[code][0] != label:
                cells.fail("libelle", f"libellé différent de celui de l'offre {code} à la ligne {labels[code][1]}")
        if not cells.ok or plan_type is None or alone is None:
            continue
        seen[code, commitment] = number
        labels.setdefault(code, (label, number))
        found.append(
            SubscriptionRow(
                number, code, label, plan_type, kind, carrier, data, validity, commitment, alone, with_handset
            )
        )
    errors.extend(rows.errors)
    return found


def _check_options(table: _Table, errors: list[str]) -> list[OptionRow]:
    rows = _Rows(table)
    found: list[OptionRow] = []
    seen: dict[str, int] = {}
    for number, cells in rows:
        code, label = cells.code(), cells.text("libelle")
        kind: ArticleKind | None = cells.choice("periodicite", PERIODICITIES)
        alone = cells.money("prix_seul")
        with_hardware = cells.money("prix_avec_materiel", required=False) or alone
        if code in seen and cells.ok:
            cells.fail("code", f"option {code} déjà décrite à la ligne {seen[code]}")
        if not cells.ok or kind is None or alone is None or with_hardware is None:
            continue
        seen[code] = number
        found.append(OptionRow(number, code, label, kind, alone, with_hardware))
    errors.extend(rows.errors)
    return found


def _check_minute_grids(table: _Table, errors: list[str]) -> list[MinuteRateRow]:
    rows = _Rows(table)
    found: list[MinuteRateRow] = []
    seen: dict[tuple[str, str], int] = {}
    zones = {zone: zone for zone in ZONES}
    for number, cells in rows:
        zone = cells.choice("zone", zones)
        destination = cells.text("destination", max_length=100)
        prices = tuple(cells.rate(f"grille_{n}") for n in range(1, GRID_COUNT + 1))
        key = (str(zone), destination.casefold())
        if zone and destination and key in seen:
            cells.fail("destination", f"destination « {destination} » déjà tarifée à la ligne {seen[key]}")
        if not cells.ok or zone is None:
            continue
        seen[key] = number
        found.append(MinuteRateRow(number, zone, destination, prices))
    errors.extend(rows.errors)
    for zone in ZONES:
        if not rows.errors and not any(r.zone == zone for r in found):
            errors.append(f"Tables de ventes, {table.where} : aucune destination de zone « {zone} ».")
    return found


def _check_handsets(table: _Table, subscriptions: list[SubscriptionRow] | None, errors: list[str]) -> list[HandsetRow]:
    """`subscriptions` None: that table has errors, so offers are not looked up (no error echoing another)."""
    rows = _Rows(table)
    with_handset = {(s.code, s.commitment_months) for s in subscriptions or () if s.price_with_handset is not None}
    bare_rows: set[str] = set()  # codes with a NU line, valid or not: a bad NU line is not also a missing one
    models: dict[str, tuple[str, int]] = {}
    bare: dict[str, Money] = {}
    offers: dict[str, list[HandsetOfferPrice]] = {}
    seen: dict[tuple[str, str, int], int] = {}
    for number, cells in rows:
        code, model = cells.code(), cells.text("modele")
        offer = cells.text("offre")
        price = cells.money("prix", minimum_minor=0)
        is_bare = offer.upper() == BARE
        commitment = -1
        if is_bare:
            bare_rows.add(code)
            if cells.text("engagement_mois", required=False):
                cells.fail("engagement_mois", "à laisser vide pour le tarif NU")
        else:
            commitment = cells.integer("engagement_mois", default=None, low=0, high=MAX_COMMITMENT_MONTHS)
            if offer and cells.ok and subscriptions is not None and (offer, commitment) not in with_handset:
                cells.fail(
                    "offre",
                    f"aucune offre {offer} ({_commitment_fr(commitment)}) "
                    f"avec prix_avec_mobile dans « {SUBSCRIPTIONS} »",
                )
        if code and model and code in models and models[code][0] != model:
            cells.fail("modele", f"modèle différent de celui du terminal {code} à la ligne {models[code][1]}")
        key = (code, BARE if is_bare else offer, commitment)
        if code and offer and cells.ok and key in seen:
            cells.fail("offre", f"prix du terminal {code} pour cette offre déjà donné à la ligne {seen[key]}")
        if not cells.ok or price is None:
            continue
        seen[key] = number
        models.setdefault(code, (model, number))
        if is_bare:
            bare[code] = price
        else:
            offers.setdefault(code, []).append(HandsetOfferPrice(offer, commitment, price))
    errors.extend(rows.errors)
    for code, (_, first_row) in models.items():
        if code not in bare_rows:
            errors.append(
                f"Tables de ventes, {table.where} : terminal {code} (ligne {first_row}) sans tarif NU "
                f"(une ligne avec offre « {BARE} » et le prix du terminal seul)."
            )
    return [
        HandsetRow(code, model, bare[code], tuple(offers.get(code, ())))
        for code, (model, _) in models.items()
        if code in bare
    ]


def parse_sales_tables(content: bytes, filename: str) -> SalesTables:
    """The four sales tables of a `.xlsx` workbook or a `;`-separated `.csv` of sections; raises
    `SalesTablesInvalid` with every problem found (sheet or section, row, column)."""
    tables, errors = _tables(content, filename)
    errors_before_subscriptions = len(errors)
    subscriptions = _check_subscriptions(tables[SUBSCRIPTIONS], errors) if SUBSCRIPTIONS in tables else []
    options = _check_options(tables[OPTIONS], errors) if OPTIONS in tables else []
    rates = _check_minute_grids(tables[MINUTE_GRIDS], errors) if MINUTE_GRIDS in tables else []
    known_offers = subscriptions if SUBSCRIPTIONS in tables and len(errors) == errors_before_subscriptions else None
    handsets = _check_handsets(tables[HANDSETS], known_offers, errors) if HANDSETS in tables else []
    if errors:
        shown = errors[:MAX_ISSUES]
        if len(errors) > MAX_ISSUES:
            shown.append(f"… et {len(errors) - MAX_ISSUES} autres erreurs.")
        raise SalesTablesInvalid(shown)
    return SalesTables(tuple(subscriptions), tuple(options), tuple(rates), tuple(handsets))


# --- templates -----------------------------------------------------------------------------------------

TEMPLATE_ROWS: dict[str, list[list[str]]] = {
    SUBSCRIPTIONS: [
        ["MOB5", "Mobile 5 Go", "abonnement", "Orange", "0", "9,99", "forfait_mensuel", "5", "30", ""],
        ["MOB5", "Mobile 5 Go", "abonnement", "Orange", "12", "7,99", "forfait_mensuel", "5", "30", "14,99"],
        ["MOB5", "Mobile 5 Go", "abonnement", "Orange", "24", "6,99", "forfait_mensuel", "5", "30", "12,99"],
        ["PRE20", "Prépayé 20 Go", "prepaye", "Orange", "0", "15,00", "", "20", "30", ""],
    ],
    OPTIONS: [
        ["INTL", "Appels internationaux", "mensuelle", "5,00", ""],
        ["ASSUR", "Assurance mobile", "mensuelle", "6,99", "4,99"],
        ["ESIM", "Changement de SIM", "ponctuelle", "10,00", ""],
    ],
    MINUTE_GRIDS: [
        ["nationale", "Fixes et mobiles France", "0", "0,02", "0,039", "0,05", "0,08"],
        ["nationale", "Numéros spéciaux", "0,15", "0,15", "0,20", "0,20", "0,25"],
        ["internationale", "Union européenne", "0,10", "0,12", "0,15", "0,20", "0,25"],
        ["internationale", "Amérique du Nord", "0,15", "0,20", "0,25", "0,30", "0,40"],
    ],
    HANDSETS: [
        ["SMA15", "Samsung Galaxy A15", "NU", "199,00", ""],
        ["SMA15", "Samsung Galaxy A15", "MOB5", "49,00", "12"],
        ["SMA15", "Samsung Galaxy A15", "MOB5", "1,00", "24"],
    ],
}


def _template_tables() -> Iterator[tuple[TableSpec, list[str], list[list[str]]]]:
    for spec in TABLES:
        yield spec, list(spec.columns), TEMPLATE_ROWS[spec.name]


def template_csv() -> bytes:
    """The CSV template: `;`, UTF-8 with BOM, one `#table` section per table, with example rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    for spec, header, rows in _template_tables():
        writer.writerow([f"#{spec.name}"])
        writer.writerow(header)
        writer.writerows(rows)
        writer.writerow([])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


README_FR = [
    "Tables de ventes : une feuille par table, la première ligne donne les noms de colonnes.",
    "Prix en euros TTC avec virgule décimale (9,99). Les lignes d'exemple sont à remplacer.",
    "abonnements : une ligne par offre et par engagement (0 = sans engagement) ; prix_avec_mobile vide si "
    "l'offre n'est pas vendue avec un terminal. type : prepaye, abonnement ou paygo ; formule (abonnement) : "
    + ", ".join(SUBSCRIPTION_KINDS)
    + ".",
    "options : periodicite mensuelle ou ponctuelle ; prix_avec_materiel vide = même prix que seul.",
    "grilles_minutes : prix par minute de chaque destination dans les 5 grilles (4 décimales au plus) ; "
    "zone nationale ou internationale.",
    "terminaux : une ligne NU (prix du terminal seul, engagement vide) par terminal, puis une ligne par offre "
    "et engagement de la feuille abonnements ayant un prix_avec_mobile.",
]


def template_xlsx() -> bytes:
    """The XLSX template: one sheet per table with example rows, and a « lisez-moi » sheet (ignored on upload)."""
    from openpyxl import Workbook

    workbook = Workbook()
    readme = workbook.active
    assert readme is not None
    readme.title = "lisez-moi"
    for line in README_FR:
        readme.append([line])
    for spec, header, rows in _template_tables():
        sheet = workbook.create_sheet(spec.name)
        sheet.append(header)
        for row in rows:
            sheet.append([_template_cell(column, value) for column, value in zip(header, row, strict=True)])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


_TEXT_COLUMNS = frozenset(
    {"code", "libelle", "type", "operateur", "formule", "periodicite", "zone", "destination", "modele", "offre"}
)


def _template_cell(column: str, value: str) -> object:
    """Numbers as spreadsheet numbers (as an integrator's own file would have them), texts as text."""
    if column in _TEXT_COLUMNS or value == "":
        return value or None
    number = Decimal(value.replace(",", "."))
    return int(number) if number == number.to_integral_value() and "," not in value else float(number)
