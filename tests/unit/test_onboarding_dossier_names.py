"""The worker's adapter to `domain.onboarding_dossier`: every item of the workflow's dossier is known to it (an
unknown one made the check activity retry for ever), and the sales tables become the catalogue import."""

from __future__ import annotations

from activities.onboarding import ModuleDossierChecks
from domain.onboarding_contracts import DOSSIER_VALUE_ITEMS
from domain.onboarding_dossier import parse_sales_tables, template_xlsx


def test_every_value_item_is_checked_by_the_dossier_module() -> None:
    checks = ModuleDossierChecks()
    assert checks.check_item("technical_contact", "", b"Camille Technique") == (True, [])
    for item in DOSSIER_VALUE_ITEMS:
        valid, errors = checks.check_item(item, "", b"")
        assert not valid and errors and not any("inconnu" in error for error in errors), (item, errors)


def test_the_template_tables_become_the_catalogue_import() -> None:
    tables = parse_sales_tables(template_xlsx(), "tables.xlsx")
    catalogue = ModuleDossierChecks().catalogue(template_xlsx(), "tables.xlsx")
    assert [plan.name for plan in catalogue.plans] == [spec.name for spec in tables.plan_specs()]
    assert [article.code for article in catalogue.articles] == [spec.code for spec in tables.article_specs()]
    assert catalogue.plans and catalogue.articles
    assert all(plan.price_minor > 0 and plan.plan_type in ("subscription", "prepaid") for plan in catalogue.plans)
