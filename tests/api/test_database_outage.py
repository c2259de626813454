"""A database outage answers 503 with Retry-After (not 500), with a problem body that names neither the
server nor the error, and the API serves again once the database is back.

The outage is real and private to each test. PostgreSQL: the API reaches the session's database through a
TCP relay that the test cuts (open connections reset, new ones refused) and restores; the shared server is
never touched. SQLite: the API works on its own copy of the session database, whose directory disappears
(the volume is gone) while the pool opens new connections."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from api.deps import AppState
from infra.db import is_sqlite
from infra.processes import free_port
from infra.settings import Settings
from tests.api._security_support import other_app
from tests.api._support import assert_problem
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login

pytestmark = pytest.mark.each_backend


class TcpRelay:
    """Forwards 127.0.0.1:`port` to the database server until `cut()`; `start()` again restores it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listens (again, after a cut) on the same port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.server = None
        for writer in list(self.writers):
            writer.transport.abort()  # the connection dies under the API's pool, as when a server goes away
        self.writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.writers.update((client_writer, server_writer))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        self.writers.difference_update((client_writer, server_writer))


@contextlib.asynccontextmanager
async def relayed(settings: Settings) -> AsyncIterator[tuple[TcpRelay, str]]:
    url = make_url(settings.database_url)
    relay = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    try:
        yield relay, url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    finally:
        if relay.server is not None:
            await relay.cut()


def assert_unavailable(response: httpx.Response, *leaks: str) -> None:
    body = assert_problem(response, 503)
    assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) > 0
    for leak in (*leaks, "Error", "refused", "unable", "sqlite", "asyncpg"):
        assert leak not in response.text, f"{leak!r} leaked in {body}"


async def _requests_during_outage(client: httpx.AsyncClient, admin: dict[str, str], slug: str) -> list[httpx.Response]:
    return [
        await client.get("/api/v1/staff", headers=admin),
        await client.post("/api/v1/organisations", json={"name": "Panne", "slug": slug}, headers=admin),
        await client.post("/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
    ]


async def test_a_database_outage_answers_503_with_retry_after(settings: Settings) -> None:
    if is_sqlite(settings.database_url):
        pytest.skip("a database server outage needs a server: run with SIMFLOW_TEST_BACKEND=postgres")
    async with relayed(settings) as (relay, database_url), other_app(settings, database_url=database_url) as client:
        admin = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert (await client.get("/api/v1/staff", headers=admin)).status_code == 200

        await relay.cut()
        slug = f"outage-{uuid.uuid4().hex[:10]}"
        for response in await _requests_during_outage(client, admin, slug):
            assert_unavailable(response, "127.0.0.1", str(relay.port), str(relay.target[1]), "Connect call")

        await relay.start()
        created = await client.post("/api/v1/organisations", json={"name": "Reprise", "slug": slug}, headers=admin)
        assert created.status_code == 201, created.text


async def test_an_unreachable_sqlite_database_answers_503_with_retry_after(settings: Settings, tmp_path: Path) -> None:
    if not is_sqlite(settings.database_url):
        pytest.skip("the SQLite outage; PostgreSQL has its own above")
    volume = tmp_path / "volume"
    volume.mkdir()
    copy = volume / "simflow.db"
    source_path = make_url(settings.database_url).database
    assert source_path
    with (
        contextlib.closing(sqlite3.connect(source_path)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    app = create_app(settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{copy}"}))
    async with app.router.lifespan_context(app):
        state: AppState = app.state.simflow
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            admin = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
            volume.rename(tmp_path / "elsewhere")
            await state.engine.dispose()  # the open connections go, as when the pool recycles them
            slug = f"outage-{uuid.uuid4().hex[:10]}"
            for response in await _requests_during_outage(client, admin, slug):
                assert_unavailable(response, str(tmp_path), "simflow.db")

            (tmp_path / "elsewhere").rename(volume)
            created = await client.post("/api/v1/organisations", json={"name": "Reprise", "slug": slug}, headers=admin)
            assert created.status_code == 201, created.text
