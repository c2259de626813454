"""Forgotten password in the portal: `/portal/password/forgot` asks for the address and writes the reset mail to
the outbox (sent by the outbox relay), `/portal/password/reset` takes the code from the mail's link and the new
password. Both are open without a session; the logic is the API's (`api.login`).

The link carries the code in its fragment (`#token=…`): browsers never send it to a server, portal.js copies
it into the form. Without script, the code printed in the mail is typed in the same field.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from api.deps import SessionDep, SettingsDep
from api.login import request_password_reset, reset_password_with_token
from api.portal.routes import page
from api.portal.security import LOGIN_PATH, CsrfChecked, PortalRoute
from domain.errors import ValidationFailed
from domain.models import EndUser

router = APIRouter(prefix="/portal/password", route_class=PortalRoute, include_in_schema=False)


@router.get("/forgot")
async def forgot_form(request: Request, settings: SettingsDep) -> Response:
    return page(request, settings, None, "portal/password_forgot.html", {"sent": False, "email": "", "error": None})


@router.post("/forgot", dependencies=[CsrfChecked])
async def forgot_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """The same answer whether the address has an account or not."""
    if "@" not in email:
        context = {"sent": False, "email": email, "error": "Saisissez l'adresse e-mail de votre compte."}
        return page(request, settings, None, "portal/password_forgot.html", context, status_code=400)
    address = request.client.host if request.client else "unknown"
    await request_password_reset(session, settings, request.app.state.simflow.limiter, email, address)
    await session.commit()
    return page(request, settings, None, "portal/password_forgot.html", {"sent": True, "email": email, "error": None})


@router.get("/reset")
async def reset_form(request: Request, settings: SettingsDep) -> Response:
    return page(request, settings, None, "portal/password_reset.html", {"errors": {}})


@router.post("/reset", dependencies=[CsrfChecked])
async def reset_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    confirmation: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    errors: dict[str, str] = {}
    if not token.strip():
        errors["token"] = "Saisissez le code reçu par e-mail (ou ouvrez le lien du message)."
    if not new_password:
        errors["new_password"] = "Saisissez le nouveau mot de passe."
    elif new_password != confirmation:
        errors["confirmation"] = "La confirmation ne correspond pas au nouveau mot de passe."
    account = None
    if not errors:
        try:
            account = await reset_password_with_token(session, settings, token, new_password, channel="portal")
        except ValidationFailed as exc:
            field = exc.field if exc.field in ("token", "new_password") else "new_password"
            errors[field] = exc.reason[:1].upper() + exc.reason[1:] + "."
    if errors:
        await session.rollback()
        return page(request, settings, None, "portal/password_reset.html", {"errors": errors}, status_code=400)
    await session.commit()
    # One reset flow for both kinds of account: an end user goes back to the self-care login.
    login = "/self-care/login" if isinstance(account, EndUser) else LOGIN_PATH
    return RedirectResponse(f"{login}?password_reset=1", status_code=303)
