"""S8: the audit log — one row per privileged action and authentication event with actor, tenant chain,
target, result and request id; append-only and hash-chained (verifier command and endpoint, tampering
detected); read access scoped to the reader's tenant; no secret in logs or audit rows."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import select, text
from temporalio.testing import ActivityEnvironment

from activities.webhooks import AuditActivities
from domain.audit import AuditEntry, ChainReport, record, verify_chain
from domain.models import AuditLog
from domain.security import API_KEY_PATTERN
from domain.security_contracts import AuditRecordInput
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.api._security_support import (
    Db,
    Headers,
    add_api_key,
    add_end_user,
    add_staff_member,
    bearer,
    code_at,
    steady_totp_moment,
    token_response,
)
from tests.api._support import STRONG_PASSWORD, assert_problem
from tests.api.conftest import Tenant
from tests.conftest import LOG_DIR, migrate

ROOT = Path(__file__).resolve().parents[2]
SECRET_PATTERNS = [
    API_KEY_PATTERN,
    re.compile(r"sfk_[a-z0-9]{4}"),
    re.compile(r"(sk|rk)_(live|test)_"),
    re.compile("whsec_"),
]


async def _rows(db: Db, request_id: str) -> list[AuditLog]:
    async with db() as session:
        query = select(AuditLog).where(AuditLog.request_id == request_id).order_by(AuditLog.id)
        return list((await session.execute(query)).scalars())


def _rid() -> dict[str, str]:
    return {"X-Request-ID": f"test-{uuid.uuid4().hex}"}


async def test_each_privileged_action_is_audited_once(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, admin_headers: Headers
) -> None:
    email, staff_id = await add_staff_member(db, org_id=tenant.org_id)
    headers = await bearer(app_client, email)
    actions: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/api-keys", {"name": "k", "scope": "read_only"}, "api_key.created"),
        (
            "POST",
            "/api/v1/plans",
            {"name": "Forfait", "plan_type": "prepaid", "price_minor": 900, "carrier": "Orange"},
            "POST /api/v1/plans",
        ),
        (
            "POST",
            "/api/v1/staff",
            {
                "email": f"audit-{uuid.uuid4().hex[:8]}@test.simflow",
                "full_name": "X",
                "role": "org_staff",
                "permissions": ["sim_card:read"],
                "password": STRONG_PASSWORD,
            },
            "staff.created",
        ),
    ]
    for method, path, body, action in actions:
        rid = _rid()
        response = await app_client.request(method, path, json=body, headers={**headers, **rid})
        assert response.status_code == 201, response.text
        assert response.headers["x-request-id"] == rid["X-Request-ID"]
        rows = await _rows(db, rid["X-Request-ID"])
        assert len(rows) == 1, [(r.action, r.result) for r in rows]
        row = rows[0]
        assert (row.action, row.result, row.actor, row.actor_kind) == (action, "ok", email, "staff")
        assert row.org_id == tenant.org_id
        assert row.details["principal_id"] == staff_id
        assert row.details["route"].startswith(f"{method} {path}")
        if action != "POST /api/v1/plans":
            assert row.target and row.target.split(":", 1)[1] == response.json()["id"]

    # Revoking that key, a failed write and a read.
    key_id = (await app_client.get("/api/v1/api-keys", headers=headers)).json()[0]["id"]
    rid = _rid()
    assert (await app_client.delete(f"/api/v1/api-keys/{key_id}", headers={**headers, **rid})).status_code == 204
    assert [r.action for r in await _rows(db, rid["X-Request-ID"])] == ["api_key.revoked"]
    rid = _rid()
    denied = await app_client.delete(f"/api/v1/api-keys/{key_id}", headers={**tenant.company_staff, **rid})
    assert_problem(denied, 404)
    assert await _rows(db, rid["X-Request-ID"]) == []  # a refused request writes nothing
    rid = _rid()
    assert (await app_client.get("/api/v1/sims", headers={**headers, **rid})).status_code == 200
    assert await _rows(db, rid["X-Request-ID"]) == []


async def test_authentication_events_are_audited(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email, staff_id = await add_staff_member(db, org_id=tenant.org_id)
    outcomes = []
    for password in (STRONG_PASSWORD, "Wrong-password-1!"):
        rid = _rid()
        await app_client.post("/api/v1/auth/token", data={"username": email, "password": password}, headers=rid)
        outcomes += [(r.action, r.result, r.target, r.org_id) for r in await _rows(db, rid["X-Request-ID"])]
    rid = _rid()
    await app_client.post("/api/v1/auth/token", data={"username": "ghost@nowhere.fr", "password": "x"}, headers=rid)
    ghost = await _rows(db, rid["X-Request-ID"])
    assert outcomes == [
        ("auth.login", "ok", f"staff:{staff_id}", tenant.org_id),
        ("auth.login", "failure", f"staff:{staff_id}", tenant.org_id),
    ]
    assert [(r.action, r.result, r.actor_kind, r.details["reason"]) for r in ghost] == [
        ("auth.login", "failure", "anonymous", "unknown_account")
    ]


async def test_audit_rows_are_append_only(db: Db) -> None:
    async with db() as session:
        exists = (await session.execute(select(AuditLog.id).limit(1))).scalar()
    if exists is None:
        async with db.begin() as session:
            await record(session, AuditEntry(actor="test", action="test.seed"))
    for statement in ("UPDATE audit_log SET actor = 'intruder'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with db.begin() as session:
                await session.execute(text(statement))


async def test_chain_verifies_and_concurrent_appends_keep_it(
    app_client: httpx.AsyncClient, db: Db, admin_headers: Headers, settings: Settings, tenant: Tenant
) -> None:
    async def append(i: int) -> None:
        async with db.begin() as session:
            await record(session, AuditEntry(actor=f"worker-{i}", action="test.concurrent", org_id=tenant.org_id))

    await asyncio.gather(*(append(i) for i in range(20)))
    verified = await app_client.get("/api/v1/audit-log/verification", headers=admin_headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True, verified.json()
    assert verified.json()["rows"] >= 20
    assert_problem(await app_client.get("/api/v1/audit-log/verification", headers=tenant.org_staff), 403)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "simflow_cli", "audit-verify", "--database-url", settings.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "chain intact" in done.stdout


async def test_tampering_is_detected(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tamper.db'}"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:
        for i in range(5):
            async with sessionmaker.begin() as session:
                await record(
                    session, AuditEntry(actor=f"a{i}", action="money.charge", details={"amount_minor": 100 * i})
                )
        async with sessionmaker() as session:
            assert (await verify_chain(session)).ok
        async with sessionmaker.begin() as session:
            await session.execute(text("DROP TRIGGER audit_log_append_only_update"))
            await session.execute(text("DROP TRIGGER audit_log_append_only_delete"))
            await session.execute(text("UPDATE audit_log SET details = '{\"amount_minor\": 1}' WHERE id = 3"))
        async with sessionmaker() as session:
            report = await verify_chain(session)
        assert not report.ok and report.first_bad_id == 3 and "modified" in (report.reason or "")
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "simflow_cli", "audit-verify", "--database-url", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 1 and "BROKEN" in cli.stderr
        async with sessionmaker.begin() as session:  # restore, then remove the last row
            await session.execute(text("UPDATE audit_log SET details = '{\"amount_minor\": 200}' WHERE id = 3"))
        async with sessionmaker() as session:
            assert (await verify_chain(session)).ok
        async with sessionmaker.begin() as session:
            await session.execute(text("DELETE FROM audit_log WHERE id = 5"))
        async with sessionmaker() as session:
            tail = await verify_chain(session)
        assert not tail.ok and "removed" in (tail.reason or "")
        async with sessionmaker.begin() as session:
            await session.execute(text("DELETE FROM audit_log WHERE id = 2"))
        async with sessionmaker() as session:
            middle = await verify_chain(session)
        assert not middle.ok and middle.first_bad_id == 3
    finally:
        await engine.dispose()


async def test_rows_appended_while_the_chain_is_checked_are_left_to_the_next_check(tmp_path: Path) -> None:
    """Live traffic appends while `audit-verify` reads: the check covers the rows its head counted and reports
    the chain intact (it used to read the head last and call the newer rows 'removed')."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)

    async def append(actor: str) -> None:
        async with sessionmaker.begin() as session:
            await record(session, AuditEntry(actor=actor, action="money.charge", details={"amount_minor": 100}))

    try:
        for i in range(5):
            await append(f"early-{i}")
        async with sessionmaker() as session:
            read = session.execute
            reads = 0

            async def read_then_traffic(*args: Any, **kwargs: Any) -> Any:
                nonlocal reads
                result = await read(*args, **kwargs)
                reads += 1
                if reads in (1, 2):  # after the head, and after the first batch of rows
                    await append(f"late-{reads}")
                return result

            session.execute = read_then_traffic  # type: ignore[method-assign]
            report = await verify_chain(session, batch=2)
        assert report.ok and report.rows == 5, report
        async with sessionmaker() as session:
            assert await verify_chain(session) == ChainReport(True, 7)
    finally:
        await engine.dispose()


async def test_a_retry_that_loses_the_race_for_its_reference_leaves_the_chain_intact(tmp_path: Path) -> None:
    """Two attempts of one audited step (same reference): the second sees no row, then finds the first's under
    the lock and appends nothing. The head counted it anyway, and every later check said "rows removed"."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    entry = AuditEntry(actor="workflow", action="topup.charge", reference="wf-1:audit:topup.charge")
    try:
        async with sessionmaker.begin() as session:
            read = session.execute
            reads = 0

            async def first_attempt_commits_meanwhile(*args: Any, **kwargs: Any) -> Any:
                nonlocal reads
                result = await read(*args, **kwargs)
                reads += 1
                if reads == 1:  # after the late attempt's first look found nothing
                    async with sessionmaker.begin() as other:
                        assert await record(other, entry) is not None
                return result

            session.execute = first_attempt_commits_meanwhile  # type: ignore[method-assign]
            assert await record(session, entry) is None
        async with sessionmaker() as session:
            assert await verify_chain(session) == ChainReport(True, 1)
    finally:
        await engine.dispose()


async def test_workflow_audit_rows_are_idempotent(db: Db, settings: Settings, tenant: Tenant) -> None:
    engine = create_engine(settings.database_url)
    try:
        activities = AuditActivities(create_sessionmaker(engine))
        data = AuditRecordInput(
            reference=f"topup/{tenant.org_id}/t1:charge:{uuid.uuid4().hex}",
            action="money.charge",
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            target="topup:t1",
            details={"amount_minor": 50, "currency": "EUR"},
        )
        env = ActivityEnvironment()
        await env.run(activities.record, data)
        await env.run(activities.record, data)  # a retried activity
    finally:
        await engine.dispose()
    async with db() as session:
        rows = list((await session.execute(select(AuditLog).where(AuditLog.reference == data.reference))).scalars())
    assert len(rows) == 1
    assert (rows[0].action, rows[0].org_id, rows[0].actor_kind) == ("money.charge", tenant.org_id, "workflow")


async def test_audit_read_access_is_scoped(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant, admin_headers: Headers
) -> None:
    for who in (tenant, other_tenant):  # each organisation has rows of its own
        await app_client.post(
            "/api/v1/plans",
            json={"name": "F", "plan_type": "prepaid", "price_minor": 500, "carrier": "Orange"},
            headers=who.org_staff,
        )
    org_rows = (await app_client.get("/api/v1/audit-log", params={"limit": 500}, headers=tenant.org_staff)).json()
    assert org_rows["items"] and {r["org_id"] for r in org_rows["items"]} == {tenant.org_id}
    asked_other = await app_client.get(
        "/api/v1/audit-log", params={"org_id": other_tenant.org_id}, headers=tenant.org_staff
    )
    assert asked_other.json()["items"] == []
    company_rows = (
        await app_client.get("/api/v1/audit-log", params={"limit": 500}, headers=tenant.company_staff)
    ).json()
    assert {r["company_id"] for r in company_rows["items"]} <= {tenant.company_id}
    everything = (await app_client.get("/api/v1/audit-log", params={"limit": 500}, headers=admin_headers)).json()
    assert {tenant.org_id, other_tenant.org_id} <= {r["org_id"] for r in everything["items"]} | {None}
    user_email, _ = await add_end_user(db, tenant.org_id, tenant.company_id)
    key, _ = await add_api_key(db, tenant.org_id)
    assert_problem(await app_client.get("/api/v1/audit-log", headers=await bearer(app_client, user_email)), 403)
    assert_problem(await app_client.get("/api/v1/audit-log", headers={"X-API-Key": key}), 403)
    async with db() as session:  # reading is audited
        reads = (await session.execute(select(AuditLog).where(AuditLog.action == "audit.read"))).scalars().all()
    assert any(r.org_id == tenant.org_id for r in reads)
    page = (await app_client.get("/api/v1/audit-log", params={"limit": 1}, headers=admin_headers)).json()
    assert page["next_cursor"]
    following = await app_client.get(
        "/api/v1/audit-log", params={"limit": 1, "cursor": page["next_cursor"]}, headers=admin_headers
    )
    assert following.json()["items"][0]["id"] < page["items"][0]["id"]


async def test_no_secret_is_ever_logged(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """Runs the flows that handle secrets (API keys, TOTP seeds and codes, backup codes, passwords) while
    capturing every log event and the process output, then greps them, the audit log and the test logs."""
    secrets_seen: list[str] = [
        STRONG_PASSWORD,
        settings.stripe_secret_key.get_secret_value(),
        settings.stripe_webhook_secret.get_secret_value(),
        settings.jwt_secret.get_secret_value(),
        settings.secrets_key.get_secret_value(),
    ]
    with structlog.testing.capture_logs() as events:
        email, _ = await add_staff_member(db, org_id=tenant.org_id)
        headers = await bearer(app_client, email)
        created = await app_client.post("/api/v1/api-keys", json={"name": "k", "scope": "read_write"}, headers=headers)
        key = created.json()["key"]
        secrets_seen.append(key)
        await app_client.get("/api/v1/sims", headers={"X-API-Key": key})
        await app_client.get("/api/v1/sims", headers={"X-API-Key": key[:-2] + "xx"})
        await token_response(app_client, email, key)
        rotated = await app_client.post(f"/api/v1/api-keys/{created.json()['id']}/rotation", json={}, headers=headers)
        secrets_seen.append(rotated.json()["key"])
        setup = await app_client.post("/api/v1/auth/2fa/setup", json={"password": STRONG_PASSWORD}, headers=headers)
        secret = setup.json()["secret"]
        secrets_seen.append(secret)
        moment = await steady_totp_moment()
        confirm = await app_client.post(
            "/api/v1/auth/2fa/confirm", json={"code": code_at(secret, moment)}, headers=headers
        )
        secrets_seen += confirm.json()["backup_codes"]
        await token_response(app_client, email, STRONG_PASSWORD, totp=code_at(secret, moment, 1))
        await token_response(app_client, email, STRONG_PASSWORD, totp=confirm.json()["backup_codes"][0])
        await app_client.post("/api/v1/auth/password/forgot", json={"email": email})
    logged = json.dumps(events, default=str)
    captured = capfd.readouterr()
    async with db() as session:
        audit = json.dumps(
            [dict(r) for r in (await session.execute(select(AuditLog.__table__))).mappings()], default=str
        )
    files = "".join(p.read_text(errors="replace") for p in LOG_DIR.glob("*.log")) if LOG_DIR.exists() else ""
    for name, haystack in {"log events": logged, "output": captured.out + captured.err, "audit log": audit}.items():
        for value in secrets_seen:
            assert value not in haystack, f"a secret appears in the {name}"
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(haystack), f"{pattern.pattern} found in the {name}"
    for value in secrets_seen[5:]:
        assert value not in files
    assert not API_KEY_PATTERN.search(files)


def test_log_redaction_scrubs_secret_shaped_values() -> None:
    from infra.logging import _redact

    event = _redact(
        None,
        "info",
        {"event": "x", "note": "key sfk_abcdefghijkl_" + "A" * 43 + " sk_live_abc whsec_def", "api_key": "whatever"},
    )
    assert event["api_key"] == "***"
    assert "sfk_" not in event["note"] and "sk_live" not in event["note"] and "whsec_" not in event["note"]


async def test_a_cursor_above_every_row_id_pages_from_the_newest(app_client: httpx.AsyncClient, tenant: Tenant) -> None:
    """A documented cursor (up to 18 digits) past the 32-bit ids answers the newest page, never a server error
    (PostgreSQL refused the out-of-range parameter with a 500)."""
    import base64

    newest = await app_client.get("/api/v1/audit-log", params={"limit": 3}, headers=tenant.org_staff)
    assert newest.status_code == 200, newest.text
    cursor = base64.urlsafe_b64encode(b"004004004004004004").decode()
    page = await app_client.get("/api/v1/audit-log", params={"limit": 3, "cursor": cursor}, headers=tenant.org_staff)
    assert page.status_code == 200, page.text
    # Reading the log is audited too: the second page starts at or after the first one's newest row.
    assert page.json()["items"][0]["id"] >= newest.json()["items"][0]["id"]
