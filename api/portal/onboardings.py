"""Portal pages of integrator onboarding (seed 002): the platform's board and each onboarding's staff page, and
the integrator's own checklist (dossier uploads, template, card payments).

Every action calls the API handler of api/routes/onboardings.py (the same Update of `onboarding/{org}`); a
refusal (wrong stage, invalid input) comes back as the page with its French reason and changes nothing. Card
payments go from the page's script (static/portal/onboarding.js) to the API with the session cookie.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select

from api.cards import stripe_answers
from api.deps import SessionDep, SettingsDep, StateDep
from api.portal.payment_methods import card_page_csp
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalForbidden, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.routes import onboardings as onboardings_api
from domain.authz import Action, Principal, TenantChain, authorize
from domain.errors import DomainError
from domain.models import Onboarding, Organisation
from domain.onboarding_contracts import (
    DOSSIER_FILE_ITEMS,
    DOSSIER_ITEMS,
    DOSSIER_LABELS_FR,
    INTEGRATOR_STAGES,
    MANUAL_STAGES,
    STAGE_LABELS_FR,
    STAGES,
)
from domain.onboarding_dossier import template_xlsx
from domain.services.onboardings import accepts_documents, get_onboarding

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

STATUS_LABELS_FR = {
    "in_progress": "En cours",
    "needs_attention": "À traiter",
    "completed": "Terminée",
    "cancelled": "Annulée",
}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def next_action(onboarding: Onboarding) -> str:
    """What the onboarding waits for, and from whom."""
    if onboarding.status in ("completed", "cancelled"):
        return "—"
    if onboarding.needs_attention:
        return f"À traiter : {onboarding.attention_reason or 'voir l’historique'}"
    who = "Intégrateur" if onboarding.stage in INTEGRATOR_STAGES else "Plateforme"
    return f"{who} : {STAGE_LABELS_FR.get(onboarding.stage, onboarding.stage)}"


def _steps(onboarding: Onboarding) -> list[dict[str, str]]:
    """The ten stages with their state: done, current, to come (all done once GO; none current when cancelled)."""
    current = len(STAGES) if onboarding.status == "completed" else STAGES.index(onboarding.stage)
    steps = []
    for index, stage in enumerate(STAGES):
        if index < current:
            state = "done"
        elif index == current and onboarding.status != "cancelled":
            state = "current"
        else:
            state = "todo"
        steps.append({"stage": stage, "label": STAGE_LABELS_FR[stage], "state": state})
    return steps


def _progress_percent(onboarding: Onboarding) -> int:
    done = sum(1 for step in _steps(onboarding) if step["state"] == "done")
    return done * 100 // len(STAGES)


async def _visible(session: SessionDep, principal: Principal, onboarding_id: str) -> Onboarding:
    try:
        onboarding = await get_onboarding(session, onboarding_id[:64])
        authorize(principal, Action.READ, TenantChain(onboarding.org_id), "intégration")
    except DomainError as err:
        raise PortalNotFound("Cette intégration n'existe pas ou n'est pas accessible avec votre compte.") from err
    return onboarding


def _require_platform(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise PortalForbidden("Le suivi des intégrations est réservé au personnel de la plateforme.")


# --- the platform's board --------------------------------------------------------------------------


async def _board(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    problem: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    rows = (
        await session.execute(
            select(Onboarding, Organisation.name)
            .join(Organisation, Organisation.id == Onboarding.org_id)
            .order_by(Onboarding.status == "cancelled", Onboarding.stage_since)
        )
    ).all()
    context = {
        "rows": [
            {"onboarding": onboarding, "org_name": name, "next_action": next_action(onboarding)}
            for onboarding, name in rows
        ],
        "stage_labels": STAGE_LABELS_FR,
        "status_labels": STATUS_LABELS_FR,
        "problem": problem,
        "form": form or {},
    }
    status = 422 if problem else 200
    return page(
        request, settings, principal, "portal/onboardings/board.html", context, nav="onboardings", status_code=status
    )


@router.get("/onboardings")
async def onboarding_board(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    _require_platform(principal)
    return await _board(request, principal, session, settings)


@router.post("/onboardings", dependencies=[CsrfChecked])
async def onboarding_start(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep, state: StateDep
) -> Response:
    _require_platform(principal)
    submitted = await request.form()
    form = {key: str(value) for key, value in submitted.items() if key != "csrf_token" and isinstance(value, str)}
    try:
        body = onboardings_api.OnboardingCreate.model_validate(
            {
                "name": form.get("name", ""),
                "slug": form.get("slug", ""),
                "contact_email": form.get("contact_email", ""),
                "contact_name": form.get("contact_name", ""),
                "deposit_minor": _cents(form.get("deposit_eur", ""), "deposit_eur"),
                "balance_minor": _cents(form.get("balance_eur", ""), "balance_eur"),
            }
        )
        created = await onboardings_api.create_onboarding(body, principal, session, state)
    except ValidationError as err:
        problem = " ; ".join(f"{'.'.join(map(str, e['loc']))} : {e['msg']}" for e in err.errors())
        return await _board(request, principal, session, settings, problem=problem, form=form)
    except DomainError as err:
        problem = f"{err.field} : {err.reason}" if err.field else err.reason
        return await _board(request, principal, session, settings, problem=problem, form=form)
    return RedirectResponse(f"/portal/onboardings/{created.id}", status_code=303)


def _cents(text: str, field: str) -> int:
    """An amount typed in euros (`1500`, `1 500,50`) → cents; pydantic names the field when it is not one."""
    cleaned = text.replace(" ", "").replace("\u202f", "").replace(",", ".")
    try:
        return round(float(cleaned) * 100)
    except ValueError:
        raise ValidationError.from_exception_data(
            "OnboardingCreate",
            [{"type": "float_parsing", "loc": (field,), "input": text}],
        ) from None


# --- one onboarding: staff page and actions ----------------------------------------------------------


def _detail_context(onboarding: Onboarding, org: Organisation | None) -> dict[str, Any]:
    return {
        "onboarding": onboarding,
        "org": org,
        "steps": _steps(onboarding),
        "percent": _progress_percent(onboarding),
        "next_action": next_action(onboarding),
        "stage_labels": STAGE_LABELS_FR,
        "status_labels": STATUS_LABELS_FR,
        "dossier_labels": DOSSIER_LABELS_FR,
        "dossier_items": DOSSIER_ITEMS,
        "file_items": DOSSIER_FILE_ITEMS,
        "manual_stages": MANUAL_STAGES,
    }


async def _staff_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    onboarding: Onboarding,
    *,
    problem: str | None = None,
    notice: str | None = None,
) -> Response:
    await session.refresh(onboarding)
    org = await session.get(Organisation, onboarding.org_id)
    context = {**_detail_context(onboarding, org), "problem": problem, "notice": notice}
    status = 409 if problem else 200
    return page(
        request, settings, principal, "portal/onboardings/detail.html", context, nav="onboardings", status_code=status
    )


@router.get("/onboardings/{onboarding_id}")
async def onboarding_detail(
    onboarding_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    onboarding = await _visible(session, principal, onboarding_id)
    if not principal.is_platform_admin:
        return RedirectResponse(f"/portal/onboardings/{onboarding.id}/checklist", status_code=303)
    return await _staff_page(request, principal, session, settings, onboarding)


@router.post("/onboardings/{onboarding_id}/actions", dependencies=[CsrfChecked])
async def onboarding_action(
    onboarding_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
) -> Response:
    """Staff actions: a step done, a bank transfer, the dossier review, the platform retry, the cancellation."""
    _require_platform(principal)
    onboarding = await _visible(session, principal, onboarding_id)
    form = {key: str(value) for key, value in (await request.form()).items() if isinstance(value, str)}
    action = form.get("action", "")
    api = onboardings_api
    try:
        if action == "step":
            body = api.StepIn.model_validate({"stage": form.get("stage", ""), "note": form.get("note", "")})
            await api.complete_step(onboarding.id, body, principal, session, state)
        elif action == "transfer":
            transfer = api.TransferIn.model_validate(
                {
                    "kind": form.get("kind", ""),
                    "amount_minor": _cents(form.get("amount_eur", ""), "amount_eur"),
                    "reference": form.get("reference", ""),
                }
            )
            await api.record_transfer(onboarding.id, transfer, principal, session, state)
        elif action == "review":
            review = api.ReviewIn.model_validate(
                {
                    "approved": form.get("decision") == "approve",
                    "rejected_items": [k.removeprefix("reject_") for k in form if k.startswith("reject_")],
                    "note": form.get("note", ""),
                }
            )
            await api.review_dossier(onboarding.id, review, principal, session, state)
        elif action == "platform-retry":
            await api.retry_platform(onboarding.id, principal, session, state)
        elif action == "cancel":
            cancel = api.CancelIn.model_validate({"reason": form.get("reason", "")})
            await api.cancel_onboarding(onboarding.id, cancel, principal, session, state)
        else:
            raise PortalNotFound("Action inconnue.")
    except ValidationError as err:
        problem = " ; ".join(f"{'.'.join(map(str, e['loc']))} : {e['msg']}" for e in err.errors())
        return await _staff_page(request, principal, session, settings, onboarding, problem=problem)
    except DomainError as err:
        return await _staff_page(request, principal, session, settings, onboarding, problem=err.reason)
    return RedirectResponse(f"/portal/onboardings/{onboarding.id}", status_code=303)


# --- the integrator's checklist ---------------------------------------------------------------------


async def _checklist(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    onboarding: Onboarding,
    *,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
) -> Response:
    await session.refresh(onboarding)
    org = await session.get(Organisation, onboarding.org_id)
    context = {
        **_detail_context(onboarding, org),
        "errors": errors or {},
        "notice": notice,
        "stripe_js_url": settings.stripe_js_url,
        "publishable_key": settings.stripe_publishable_key,
        "accepts_documents": accepts_documents(onboarding),
        "can_pay": {
            kind: onboarding.status == "in_progress" and onboarding.stage == stage
            for kind, stage in (("deposit", "deposit_paid"), ("balance", "balance_paid"))
        },
    }
    headers = {"Content-Security-Policy": card_page_csp(settings)}
    status = 422 if errors else 200
    return page(
        request,
        settings,
        principal,
        "portal/onboardings/checklist.html",
        context,
        nav="onboardings",
        status_code=status,
        headers=headers,
    )


@router.get("/onboardings/{onboarding_id}/checklist")
async def onboarding_checklist(
    onboarding_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    onboarding = await _visible(session, principal, onboarding_id)
    return await _checklist(request, principal, session, settings, onboarding)


@router.get("/onboarding")
async def own_onboarding(principal: PortalPrincipalDep, session: SessionDep) -> Response:
    """The integrator's entry point: its organisation's checklist; the platform's board for platform staff."""
    if principal.is_platform_admin:
        return RedirectResponse("/portal/onboardings", status_code=303)
    found = (
        await session.execute(select(Onboarding.id).where(Onboarding.org_id == principal.org_id))
    ).scalar_one_or_none()
    if found is None or principal.company_id is not None:
        raise PortalNotFound("Aucune intégration en cours pour votre organisation.")
    return RedirectResponse(f"/portal/onboardings/{found}/checklist", status_code=303)


@router.post("/onboardings/{onboarding_id}/documents", dependencies=[CsrfChecked])
async def onboarding_document(
    onboarding_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
    item: Annotated[str, Form(max_length=64)],
    file: Annotated[UploadFile | None, File()] = None,
    value: Annotated[str | None, Form(max_length=320)] = None,
) -> Response:
    """One dossier item; an invalid one is shown with its precise message next to it, the others stay."""
    onboarding = await _visible(session, principal, onboarding_id)
    if file is not None and not file.filename:
        file = None  # a file input left empty
    try:
        await onboardings_api.submit_document(onboarding.id, principal, session, state, item, file, value)
    except DomainError as err:
        return await _checklist(request, principal, session, settings, onboarding, errors={item: err.reason})
    label = DOSSIER_LABELS_FR.get(item, item)
    return await _checklist(request, principal, session, settings, onboarding, notice=f"« {label} » accepté.")


@router.post("/onboardings/{onboarding_id}/training", dependencies=[CsrfChecked])
async def onboarding_training(
    onboarding_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The integrator books its training appointment (the note says when)."""
    onboarding = await _visible(session, principal, onboarding_id)
    body = onboardings_api.StepIn(stage="training_booked", note=note)
    try:
        await onboardings_api.complete_step(onboarding.id, body, principal, session, state)
    except DomainError as err:
        return await _checklist(request, principal, session, settings, onboarding, errors={"training": err.reason})
    return RedirectResponse(f"/portal/onboardings/{onboarding.id}/checklist", status_code=303)


@router.post("/onboardings/{onboarding_id}/setup-intent", dependencies=[CsrfChecked])
async def onboarding_setup_intent(
    onboarding_id: str, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> dict[str, str]:
    """A SetupIntent on the onboarding's customer in the platform's own Stripe account (the one the workflow's
    `charge_card` finds by email and `onboarding_id`): the page confirms the card with Stripe.js, then pays
    with the PaymentMethod it yields. Moves no money."""
    onboarding = await _visible(session, principal, onboarding_id)
    authorize(principal, Action.WRITE, TenantChain(onboarding.org_id), "intégration")
    org = await session.get(Organisation, onboarding.org_id)
    gateway = state.stripe()
    with stripe_answers("setup_intent"):
        customer = await gateway.ensure_customer(
            onboarding.contact_email,
            org.name if org else None,
            {"onboarding_id": onboarding.id},
            f"{onboarding.workflow_id}:card-setup:customer",
        )
        intent = await gateway.create_setup_intent(customer.customer_id, {"onboarding_id": onboarding.id})
    return {"client_secret": intent.client_secret or ""}


@router.get("/onboardings/{onboarding_id}/template.xlsx")
async def onboarding_template(onboarding_id: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    await _visible(session, principal, onboarding_id)
    return Response(
        template_xlsx(),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": 'attachment; filename="tables-de-ventes-modele.xlsx"'},
    )
