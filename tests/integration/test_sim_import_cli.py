"""`simflow import-sims FILE`: a 10,000-row operator order file through the real command (rich progress bar),
with rejected rows in an error report; the duration is measured (printed, and written to
var/bench/sim_import_10000.json)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from domain.enums import SimStatus
from domain.models import Organisation, SimCard, SimChange, SimImport
from infra.db import create_engine, create_sessionmaker
from tests.api._support import bad_luhn, random_iccid, random_imsi

ROOT = Path(__file__).resolve().parents[2]


async def _org(database_url: str) -> Organisation:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            slug = f"cli-{uuid.uuid4().hex[:8]}"
            org = Organisation(name=f"Intégrateur {slug}", slug=slug)
            session.add(org)
        return org
    finally:
        await engine.dispose()


async def _count(database_url: str, query):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return (await session.execute(query)).scalar_one()
    finally:
        await engine.dispose()


@pytest.mark.timeout(600)
async def test_import_10000_rows_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    org = await _org(database_url)
    rows = ["iccid;imsi;puk1;puk2;carrier;esim;activation_code"]
    good = 10_000
    iccids = [random_iccid() for _ in range(good)]
    for n, iccid in enumerate(iccids):
        esim = n % 10 == 0
        code = f"LPA:1$smdp.example.test$CODE{n:05d}" if esim else ""
        rows.append(f"{iccid};{random_imsi()};12345678;87654321;Orange;{'1' if esim else '0'};{code}")
    bad = [
        f"{bad_luhn(random_iccid())};{random_imsi()};;;Orange;0;",  # Luhn
        f"{iccids[0]};{random_imsi()};;;Orange;0;",  # duplicate in the file
        f"{random_iccid()};{random_imsi()};;;Vodafun;0;",  # unknown carrier
        f"{random_iccid()};123;;;Orange;0;",  # IMSI
        f"{random_iccid()};{random_imsi()};;;Orange;0;LPA:1$x$y",  # activation code on a physical SIM
    ]
    rows.extend(bad)
    path = tmp_path / "commande.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    env = {**os.environ, "SIMFLOW_DATABASE_URL": database_url, "COLUMNS": "120"}
    completed = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "simflow"), "import-sims", str(path), "--org", org.slug],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    match = re.search(r"(\d+) lignes en ([\d.]+) s", out)
    assert match, out
    assert int(match.group(1)) == good + len(bad)
    seconds = float(match.group(2))
    assert f"{good} acceptées" in out and f"{len(bad)} rejetées" in out, out

    assert await _count(database_url, select(func.count()).select_from(SimCard).where(SimCard.org_id == org.id)) == good
    blank = select(func.count()).select_from(SimCard).where(SimCard.org_id == org.id, SimCard.status == SimStatus.BLANK)
    assert await _count(database_url, blank) == good
    esims = select(func.count()).select_from(SimCard).where(SimCard.org_id == org.id, SimCard.is_esim.is_(True))
    assert await _count(database_url, esims) == good // 10
    journal = (
        select(func.count())
        .select_from(SimChange)
        .join(SimCard, SimCard.id == SimChange.sim_id)
        .where(SimCard.org_id == org.id)
    )
    assert await _count(database_url, journal) == good
    assert await _count(database_url, select(SimImport.rejected).where(SimImport.org_id == org.id)) == len(bad)

    report = path.with_name(path.name + ".erreurs.csv")
    lines = list(csv.DictReader(report.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert {line["champ"] for line in lines} == {"iccid", "carrier", "imsi", "activation_code"}
    assert sorted(int(line["ligne"]) for line in lines) == list(range(good + 2, good + 2 + len(bad)))

    bench = ROOT / "var" / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "sim_import_10000.json").write_text(
        json.dumps({"rows": good + len(bad), "seconds": seconds, "database": database_url.split(":", 1)[0]}) + "\n",
        encoding="utf-8",
    )
    print(f"\nimport of {good + len(bad)} rows: {seconds:.1f} s")

    # Importing the same file again: every row is a duplicate, nothing is added.
    again = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "simflow"), "import-sims", str(path), "--org", org.slug],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert again.returncode == 0 and "0 acceptées" in again.stdout, again.stdout
    assert await _count(database_url, select(func.count()).select_from(SimCard).where(SimCard.org_id == org.id)) == good


async def test_unknown_organisation_is_refused(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "commande.csv"
    path.write_text(f"iccid;imsi;puk1;puk2;carrier;esim\n{random_iccid()};{random_imsi()};;;Orange;0\n")
    completed = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "simflow"), "import-sims", str(path), "--org", "nope"],
        env={**os.environ, "SIMFLOW_DATABASE_URL": database_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2 and "organisation introuvable" in completed.stdout, completed.stdout
