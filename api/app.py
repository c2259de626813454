"""FastAPI application factory: `uvicorn api.app:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import portal
from api.deps import AppState
from api.guard import access_guard, install_security
from api.limits import BodySizeLimitMiddleware
from api.portal import admin as portal_admin
from api.portal import bulk as portal_bulk
from api.portal import home as portal_home
from api.portal import imports as portal_imports
from api.portal import invoices as portal_invoices
from api.portal import lines as portal_lines
from api.portal import onboardings as portal_onboardings
from api.portal import password_reset as portal_password_reset
from api.portal import payment_methods as portal_payment_methods
from api.portal import pools as portal_pools
from api.portal import recharges as portal_recharges
from api.portal import renewals as portal_renewals
from api.portal import selfcare
from api.portal import two_factor as portal_two_factor
from api.portal import wallets as portal_wallets
from api.problems import install_problem_handlers
from api.routes import (
    api_keys,
    audit,
    auth,
    billing,
    bulk,
    companies,
    end_users,
    health,
    lines,
    numbers,
    offers,
    onboardings,
    organisations,
    payment_methods,
    pools,
    recharges,
    sim_inventory,
    sims,
    snaic,
    staff,
    stripe_webhooks,
    subscriptions,
    wallets,
    webhooks,
)
from domain.enums import StaffRole
from domain.models import StaffUser
from domain.security import hash_password
from infra.db import create_engine, create_sessionmaker
from infra.migrate import DatabaseUnreachable, await_database
from infra.secret_settings import UnsafeSecrets, require_safe_secrets
from infra.settings import Settings, get_settings

log = structlog.get_logger()

STATIC_DIR = Path(__file__).parent / "static"


async def ensure_bootstrap_admin(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """The first platform admin comes from SIMFLOW_BOOTSTRAP_ADMIN_EMAIL / _PASSWORD, created once. API replicas
    start together: the one whose insert loses the race on the unique email finds the admin there and goes on."""
    email = settings.bootstrap_admin_email.strip().lower()
    try:
        async with sessionmaker.begin() as session:
            exists = await session.execute(select(StaffUser.id).where(StaffUser.email == email))
            if exists.first() is None:
                session.add(
                    StaffUser(
                        email=email,
                        full_name="Administrateur plateforme",
                        password_hash=hash_password(settings.bootstrap_admin_password.get_secret_value()),
                        role=StaffRole.PLATFORM_ADMIN,
                    )
                )
                await session.flush()
                log.info("auth.bootstrap_admin_created", email=email)
    except IntegrityError:
        async with sessionmaker() as session:
            if (await session.execute(select(StaffUser.id).where(StaffUser.email == email))).first() is None:
                raise
        log.info("auth.bootstrap_admin_created_by_another_replica", email=email)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; refuses (`UnsafeSecrets`, naming each variable) a missing, short or published secret.
    Without `settings` it is the process's factory (`uvicorn api.app:create_app --factory`, the image's
    command): the refusal then ends the process with that message alone."""
    if settings is None:
        settings = get_settings()
        try:
            require_safe_secrets(settings, "api")
        except UnsafeSecrets as refused:
            raise SystemExit(str(refused)) from None
    else:
        require_safe_secrets(settings, "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The bootstrap admin needs the database: wait for it, bounded, then fail naming it (compose restarts
        # the replica); never a bare connection error on a replica restarted while PostgreSQL restarts.
        try:
            await await_database(
                settings.database_url,
                settings.api_database_wait_s,
                log=lambda line: log.warning("api.database_not_ready", detail=line),
                job="api",
                setting="SIMFLOW_API_DATABASE_WAIT_S",
            )
        except DatabaseUnreachable as unreachable:
            log.error("api.database_unreachable", detail=str(unreachable))
            raise
        engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        sessionmaker = create_sessionmaker(engine)
        app.state.simflow = AppState(settings=settings, engine=engine, sessionmaker=sessionmaker)
        await ensure_bootstrap_admin(sessionmaker, settings)
        try:
            yield
        finally:
            await app.state.simflow.aclose()
            await engine.dispose()

    app = FastAPI(
        title="simflow",
        version="0.1.0",
        description="Moteur d'opérations pour opérateurs mobiles en marque blanche.",
        lifespan=lifespan,
        # Access control of every route, present and future: see api/guard.py. It ends (and writes its
        # audit entry) inside the request's transaction, before the response is sent.
        dependencies=[Depends(access_guard, scope="function")],
    )
    install_problem_handlers(app)
    for module in (health, auth, organisations, companies, end_users, offers, sims, snaic, recharges, stripe_webhooks):
        app.include_router(module.router)
    for module in (lines, subscriptions, numbers, bulk, sim_inventory):  # SIM lifecycle
        app.include_router(module.router)
    app.include_router(pools.router)  # pools renew at pool level (seed 000)
    app.include_router(portal_admin.router)  # before portal.router: `/portal/companies/new` is not a company id
    app.include_router(payment_methods.router)  # saved cards
    app.include_router(wallets.router)
    app.include_router(onboardings.router)  # integrator onboarding (seed 002)
    app.include_router(portal.router)
    app.include_router(portal_recharges.router)
    app.include_router(portal_bulk.router)  # SIM lifecycle
    app.include_router(portal_imports.router)
    app.include_router(portal_password_reset.router)  # forgotten password (outbox relay)
    app.include_router(portal_invoices.router)  # invoices and credit notes
    app.include_router(billing.router)  # transactions, invoices, credit notes
    app.include_router(portal_home.router)  # dashboard, needs-attention queue
    app.include_router(portal_lines.router)  # lines, line actions, activation
    app.include_router(portal_two_factor.router)  # a staff member's own 2FA
    app.include_router(portal_two_factor.selfcare_router)  # an end user's own 2FA
    app.include_router(portal_pools.router)  # pools of a company, their members
    app.include_router(portal_renewals.router)  # subscriptions: renewals, reminders, dunning
    app.include_router(portal_payment_methods.router)  # saved cards
    app.include_router(portal_wallets.router)
    app.include_router(portal_onboardings.router)  # onboarding board, checklist
    app.include_router(selfcare.router)  # end users' self-care space
    for security_router in (api_keys.router, staff.router, audit.router, webhooks.router, webhooks.events_router):
        app.include_router(security_router)
    app.add_middleware(BodySizeLimitMiddleware)  # inside the request context (request id), before everything else
    install_security(app)
    STATIC_DIR.mkdir(exist_ok=True)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
