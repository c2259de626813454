"""Read-your-writes: a request's transaction is committed (or has failed) before its answer leaves, so the
client's next request sees what it was told exists, and a write the database refuses never answers 2xx.
Concurrent creates of one unique value answer 409 naming the field, never 500. Served by uvicorn over real
HTTP, on the session database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.deps import get_session
from domain.models import Organisation
from infra.db import is_sqlite
from infra.settings import Settings
from tests.api._support import STRONG_PASSWORD, VALID_SIRET, assert_problem
from tests.api.conftest import Tenant
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login
from tests.e2e.topup_support import ApiServer

CLIENTS = 20
ROUNDS = 200


@pytest.fixture(scope="module")
def api_server(settings: Settings) -> Iterator[ApiServer]:
    with ApiServer(settings) as server:
        yield server


@pytest_asyncio.fixture
async def http(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=CLIENTS * 2, max_keepalive_connections=CLIENTS * 2)
    async with httpx.AsyncClient(base_url=api_server.url, timeout=60, limits=limits) as client:
        yield client


@pytest_asyncio.fixture
async def admin(http: httpx.AsyncClient) -> dict[str, str]:
    return await login(http, ADMIN_EMAIL, ADMIN_PASSWORD)


def _slug(prefix: str = "ryw") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_an_organisation_is_usable_by_the_very_next_request(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """200 times, 20 clients at once: create an organisation, then at once create an article in it."""
    statuses: Counter[tuple[int, int]] = Counter()
    failures: list[str] = []

    async def one_client(rounds: int) -> None:
        for _ in range(rounds):
            slug = _slug()
            created = await http.post(
                "/api/v1/organisations", json={"name": f"Org {slug}", "slug": slug}, headers=admin
            )
            assert created.status_code == 201, created.text
            article = {"org_id": created.json()["id"], "code": "RYW", "label": "Option", "kind": "one_off_option"}
            used = await http.post(
                "/api/v1/catalogue/articles", json=article | {"sale_price_minor": 100}, headers=admin
            )
            statuses[(created.status_code, used.status_code)] += 1
            if used.status_code != 201:
                failures.append(f"{used.status_code} {used.text[:120]}")

    await asyncio.gather(*(one_client(ROUNDS // CLIENTS) for _ in range(CLIENTS)))
    assert sum(statuses.values()) == ROUNDS
    assert not failures, f"{len(failures)}/{ROUNDS} next requests failed, e.g. {failures[:3]}; {dict(statuses)}"


def _yield_dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        if inspect.isasyncgenfunction(sub.call) or inspect.isgeneratorfunction(sub.call):
            yield sub
        yield from _yield_dependencies(sub)


def _route_dependants(settings: Settings) -> Iterator[tuple[str, Dependant]]:
    """Each API route and portal page with the dependencies it runs (the application's included)."""
    for context in iter_route_contexts(create_app(settings).routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        effective = context._route_context  # the route as included, with the application's dependencies
        dependant = effective.dependant if effective is not None else None
        yield str(context.path), dependant or context.original_route.dependant


def test_every_route_ends_its_yield_dependencies_before_the_response(settings: Settings) -> None:
    """The session (and whatever else a route opens with `yield`) closes before the response is sent, on
    every API route and portal page: a request-scoped one would commit after the client has its answer."""
    routes = list(_route_dependants(settings))
    assert len(routes) > 50
    late = set()
    for path, dependant in routes:
        yielding = list(_yield_dependencies(dependant))
        assert any(d.call is get_session for d in yielding), path  # the guard opens it on every route
        late.update(f"{path}: {getattr(d.call, '__name__', d.call)}" for d in yielding if d.scope != "function")
    assert not late, sorted(late)


# --- a write refused at commit time ----------------------------------------------------------------------

REFUSED_PREFIX = "refused-at-commit-"


@pytest_asyncio.fixture
async def refusal_at_commit(db: async_sessionmaker[AsyncSession], settings: Settings) -> AsyncIterator[None]:
    """The database refuses, only when the transaction commits, an organisation whose slug starts with
    REFUSED_PREFIX, as a unique violation on `slug`. PostgreSQL: a deferred constraint trigger (checked at
    COMMIT). SQLite has no deferred triggers: the refusal hits the organisation's invoice counter, which the
    route leaves to the final flush."""
    if is_sqlite(settings.database_url):
        create = [
            f"""CREATE TRIGGER refuse_at_commit BEFORE INSERT ON invoice_counters
            WHEN (SELECT slug FROM organisations WHERE id = NEW.org_id) LIKE '{REFUSED_PREFIX}%'
            BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: organisations.slug'); END"""
        ]
        drop = ["DROP TRIGGER IF EXISTS refuse_at_commit"]
    else:
        create = [
            """CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION 'duplicate slug' USING ERRCODE = 'unique_violation', CONSTRAINT = 'uq_organisations_slug';
            END $$""",
            f"""CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON organisations
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.slug LIKE '{REFUSED_PREFIX}%')
            EXECUTE FUNCTION refuse_at_commit()""",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS refuse_at_commit ON organisations",
            "DROP FUNCTION IF EXISTS refuse_at_commit()",
        ]
    async with db.begin() as session:
        for statement in create:
            await session.execute(text(statement))
    yield
    async with db.begin() as session:
        for statement in drop:
            await session.execute(text(statement))


@pytest.mark.usefixtures("refusal_at_commit")
async def test_a_write_refused_at_commit_never_answers_2xx(
    http: httpx.AsyncClient, admin: dict[str, str], db: async_sessionmaker[AsyncSession]
) -> None:
    slug = _slug(REFUSED_PREFIX.rstrip("-"))
    response = await http.post("/api/v1/organisations", json={"name": "Refusée", "slug": slug}, headers=admin)
    await asyncio.sleep(0.5)  # whatever runs after the answer has run by now
    async with db() as session:
        stored = (await session.execute(select(Organisation.id).where(Organisation.slug == slug))).first()
    assert stored is None
    assert_problem(response, 409, "slug")


# --- concurrent creates of one unique value -----------------------------------------------------------


async def _race(send: object, attempts: int) -> list[httpx.Response]:
    assert callable(send)
    return list(await asyncio.gather(*(send() for _ in range(attempts))))


def _assert_one_winner(responses: list[httpx.Response], field: str) -> None:
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1, (statuses, [r.text[:200] for r in responses if r.status_code != 409])
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, field)


async def test_concurrent_organisations_with_one_slug_answer_409_naming_slug(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for _ in range(5):
        slug = _slug("race")
        body = {"name": f"Org {slug}", "slug": slug}
        _assert_one_winner(
            await _race(lambda body=body: http.post("/api/v1/organisations", json=body, headers=admin), 6), "slug"
        )


async def test_concurrent_articles_with_one_code_answer_409_naming_code(
    http: httpx.AsyncClient, admin: dict[str, str], tenant: Tenant
) -> None:
    headers = await login(http, tenant.org_staff_email, STRONG_PASSWORD)
    for _ in range(5):
        body = {"code": f"C{uuid.uuid4().hex[:8]}", "label": "Option", "kind": "one_off_option", "sale_price_minor": 1}
        _assert_one_winner(
            await _race(lambda body=body: http.post("/api/v1/catalogue/articles", json=body, headers=headers), 6),
            "code",
        )


async def test_concurrent_staff_with_one_email_answer_409_naming_email(
    http: httpx.AsyncClient, admin: dict[str, str], tenant: Tenant
) -> None:
    for _ in range(3):
        body = {
            "email": f"race-{uuid.uuid4().hex[:10]}@test.simflow",
            "full_name": "Course",
            "role": "org_staff",
            "org_id": tenant.org_id,
            "permissions": [],
            "password": STRONG_PASSWORD,
        }
        _assert_one_winner(
            await _race(lambda body=body: http.post("/api/v1/staff", json=body, headers=admin), 4), "email"
        )


async def test_concurrent_companies_with_one_siret_answer_409_naming_siret(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    slug = _slug("siret")
    org = await http.post("/api/v1/organisations", json={"name": f"Org {slug}", "slug": slug}, headers=admin)
    assert org.status_code == 201, org.text
    body = {"org_id": org.json()["id"], "name": "Entreprise", "siret": VALID_SIRET}
    _assert_one_winner(await _race(lambda: http.post("/api/v1/companies", json=body, headers=admin), 6), "siret")
