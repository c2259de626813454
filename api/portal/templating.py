"""Jinja2 environment of the server-rendered pages: French filters and the Temporal link helpers.

Templates live in `api/templates/`. Pages are rendered with `render(request, name, context)`, which makes
the app's settings available to the `temporal_url` global (so the `temporal_link` macro of
`portal/_macros.html` works in any template, imported with or without context).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from domain.enums import (
    SIM_STATUS_LABELS_FR,
    SIM_TYPE_LABELS_FR,
    CfastSyncStatus,
    ExternalSystem,
    LineStatus,
    MajStatus,
    ParcType,
    SimStatus,
    SimType,
    StaffRole,
)
from domain.money import Money, format_data_fr
from infra.settings import Settings
from infra.temporal import workflow_ui_url

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
DISPLAY_TZ = ZoneInfo("Europe/Paris")

CFAST_STATUS_LABELS_FR: dict[CfastSyncStatus, str] = {
    CfastSyncStatus.SYNCED: "Synchronisée",
    CfastSyncStatus.PENDING: "En attente",
    CfastSyncStatus.FAILED: "En échec",
}
MAJ_STATUS_LABELS_FR: dict[MajStatus, str] = {MajStatus.OK: "Succès", MajStatus.ERROR: "Erreur"}
SYSTEM_LABELS: dict[ExternalSystem, str] = {
    ExternalSystem.CFAST: "CFAST",
    ExternalSystem.SNAIC: "SNAIC",
    ExternalSystem.OCS: "OCS",
    ExternalSystem.STRIPE: "Stripe",
}
PARC_TYPE_LABELS_FR: dict[ParcType, str] = {
    ParcType.FIXED: "Fixe",
    ParcType.INTERNET: "Internet",
    ParcType.MOBILE: "Mobile",
    ParcType.CYBERSECURITY: "Cybersécurité",
}
LINE_STATUS_LABELS_FR: dict[LineStatus, str] = {
    LineStatus.UNDER_CONSTRUCTION: "En construction",
    LineStatus.ACTIVE: "Active",
    LineStatus.INACTIVE: "Inactive",
    LineStatus.SUSPENDED: "Suspendue",
    LineStatus.TERMINATED: "Résiliée",
    LineStatus.OBSOLETE: "Obsolète",
}
ROLE_LABELS_FR: dict[StaffRole, str] = {
    StaffRole.PLATFORM_ADMIN: "Administrateur plateforme",
    StaffRole.ORG_STAFF: "Personnel de l'organisation",
    StaffRole.COMPANY_STAFF: "Personnel de l'entreprise",
}

_current_settings: ContextVar[Settings | None] = ContextVar("portal_render_settings", default=None)


# --- filters ---------------------------------------------------------------------------------------


def format_datetime_fr(value: datetime | date | None) -> str:
    """`21/11/2026 14:05` in Paris time (naive values are UTC, as SQLite returns them); `—` for none."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(DISPLAY_TZ).strftime("%d/%m/%Y %H:%M")
    return value.strftime("%d/%m/%Y")


def format_money_fr(amount_minor: int | None, currency: str = "EUR") -> str:
    return "—" if amount_minor is None else Money(amount_minor, currency).format_fr()


def format_data(n_bytes: int | None) -> str:
    return "—" if n_bytes is None else format_data_fr(n_bytes)


def _label(labels: Mapping[Any, str], value: object) -> str:
    if value is None:
        return "—"
    return labels.get(value, str(getattr(value, "value", value)))


def sim_status_fr(value: SimStatus | str | None) -> str:
    return _label(SIM_STATUS_LABELS_FR, SimStatus(value) if isinstance(value, str) else value)


def sim_type_fr(value: SimType | str | None) -> str:
    return _label(SIM_TYPE_LABELS_FR, SimType(value) if isinstance(value, str) else value)


def yes_no_na(value: bool | None) -> str:
    """Seed 000 "En session": Oui / Non / N/A when the integration does not report it."""
    return "N/A" if value is None else ("Oui" if value else "Non")


_SIM_STATUS_VALUES = frozenset(s.value for s in SimStatus)
_SIM_TYPE_VALUES = frozenset(t.value for t in SimType)


def journal_value_fr(field: str, value: str | None) -> str:
    """Journal values are stored as identifiers; statuses and types are shown with their French label."""
    if value is None or value == "":
        return "—"
    if field == "status" and value in _SIM_STATUS_VALUES:
        return SIM_STATUS_LABELS_FR[SimStatus(value)]
    if field == "sim_type" and value in _SIM_TYPE_VALUES:
        return SIM_TYPE_LABELS_FR[SimType(value)]
    return value


JOURNAL_FIELD_LABELS_FR = {
    "status": "Statut",
    "company_id": "Entreprise",
    "end_user_id": "Utilisateur final",
    "plan_id": "Forfait",
    "pool_id": "Pool",
    "tags": "Étiquettes",
    "note": "Note",
    "imei": "IMEI",
    "sim_type": "Type de SIM",
    "in_session": "En session",
}


def journal_field_fr(field: str) -> str:
    return JOURNAL_FIELD_LABELS_FR.get(field, field)


def pretty_json(value: object) -> str:
    if value in (None, {}, []):
        return "—"
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


# --- Temporal links --------------------------------------------------------------------------------


def _settings_from(context: jinja2.runtime.Context | None) -> Settings:
    settings = _current_settings.get()
    if settings is None and context is not None:
        request = context.get("request")
        if isinstance(request, Request):
            settings = request.app.state.simflow.settings
    if settings is None:
        raise RuntimeError("temporal_url used outside api.portal.templating.render()")
    return settings


@jinja2.pass_context
def _temporal_url_global(context: jinja2.runtime.Context, workflow_id: str) -> str:
    return workflow_ui_url(_settings_from(context), workflow_id)


def temporal_search_url(settings: Settings, query: str) -> str:
    """The Temporal UI's workflow list filtered by a visibility query, e.g. `Iccid="8933…"`."""
    base = f"{settings.temporal_ui_url}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows"
    return f"{base}?{urlencode({'query': query})}"


@jinja2.pass_context
def _temporal_search_url_global(context: jinja2.runtime.Context, query: str) -> str:
    return temporal_search_url(_settings_from(context), query)


def line_query(settings: Settings, msisdn: str) -> str:
    """The visibility query of a line's workflows: by the keyed hash of its number, never the number itself."""
    return f'MsisdnHash="{settings.msisdn_hash(msisdn)}"'


@jinja2.pass_context
def _temporal_line_query_global(context: jinja2.runtime.Context, msisdn: str) -> str:
    return line_query(_settings_from(context), msisdn)


# --- environment and rendering ---------------------------------------------------------------------


def _build_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        dt_fr=format_datetime_fr,
        money_fr=format_money_fr,
        data_fr=format_data,
        sim_status_fr=sim_status_fr,
        sim_type_fr=sim_type_fr,
        yes_no_na=yes_no_na,
        cfast_status_fr=lambda v: _label(CFAST_STATUS_LABELS_FR, v),
        maj_status_fr=lambda v: _label(MAJ_STATUS_LABELS_FR, v),
        system_label=lambda v: _label(SYSTEM_LABELS, v),
        parc_type_fr=lambda v: _label(PARC_TYPE_LABELS_FR, v),
        line_status_fr=lambda v: _label(LINE_STATUS_LABELS_FR, v),
        role_fr=lambda v: _label(ROLE_LABELS_FR, v),
        journal_field_fr=journal_field_fr,
        pretty_json=pretty_json,
    )
    env.globals.update(
        temporal_url=_temporal_url_global,
        temporal_search_url=_temporal_search_url_global,
        temporal_line_query=_temporal_line_query_global,
        journal_value_fr=journal_value_fr,
        new_form_batch=lambda: uuid.uuid4().hex,  # one per rendered form: its submissions are idempotent
    )
    return env


env = _build_env()


@contextmanager
def _rendering_with(settings: Settings) -> Iterator[None]:
    token = _current_settings.set(settings)
    try:
        yield
    finally:
        _current_settings.reset(token)


def render_html(request: Request, name: str, context: Mapping[str, Any]) -> str:
    settings: Settings = request.app.state.simflow.settings
    with _rendering_with(settings):
        # The organisation's brand and logo in the header of staff pages (set with the portal principal).
        branding = getattr(request.state, "portal_branding", None)
        return env.get_template(name).render({"request": request, "branding": branding, **context})


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    return HTMLResponse(render_html(request, name, context), status_code=status_code, headers=headers)
