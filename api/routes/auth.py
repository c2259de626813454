"""Token endpoint (OAuth2 password flow) for staff and end users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import SessionDep, SettingsDep, issue_token
from api.login import authenticate
from api.schemas import TokenResponse

router = APIRouter(prefix="/api/v1/auth", tags=["Authentification"])


@router.post("/token", response_model=TokenResponse)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    who = await authenticate(session, form.username, form.password)
    return TokenResponse(
        access_token=issue_token(settings, who.kind, who.subject_id), expires_in=settings.jwt_ttl_minutes * 60
    )
