"""The portal's bulk operations and SIM import, through the real pages (CSRF, session cookie), with the
workflows running on Temporal: selection → parameters → live progress → CSV report; export; import with
its error report."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client

from domain.enums import LineStatus
from domain.models import Line
from infra.settings import Settings
from tests.api._support import random_iccid, random_imsi
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.e2e.lifecycle_support import Tenant, create_company, db_all, make_tenant
from tests.e2e.topup_support import ApiServer, serve_api

pytestmark = pytest.mark.usefixtures("worker")
CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1)


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest_asyncio.fixture
async def staff(app_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own (cookie jar) on the same app, logged in to the portal."""
    async with httpx.AsyncClient(transport=app_client._transport, base_url="http://simflow.test") as client:
        form = await client.get("/portal/login")
        response = await client.post(
            "/portal/login",
            data={
                "email": ADMIN_EMAIL,
                "password": ADMIN_PASSWORD,
                "csrf_token": csrf(form.text),
                "next": "/portal/sims",
            },
        )
        assert response.status_code == 303, response.text
        yield client


async def test_bulk_activation_from_the_portal_with_live_progress_and_report(
    live_api: ApiServer,
    staff: httpx.AsyncClient,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
) -> None:
    tenant: Tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=3)
    listing = await staff.get("/portal/sims", params={"q": tenant.iccids[0][-8:]})
    assert 'id="bulk-operation"' in listing.text and "Opérations en masse" in listing.text
    token = csrf(listing.text)
    prepared = await staff.post(
        "/portal/bulk/new", data={"csrf_token": token, "kind": "activate", "iccid": tenant.iccids}
    )
    assert prepared.status_code == 200, prepared.text
    assert f'value="{tenant.company_id}"' in prepared.text and f'value="{tenant.plan_id}"' in prepared.text
    assert prepared.text.count('name="iccid"') == 3

    started = await staff.post(
        "/portal/bulk",
        data={
            "csrf_token": csrf(prepared.text),
            "kind": "activate",
            "company_id": tenant.company_id,
            "plan_id": tenant.plan_id,
            "iccid": tenant.iccids,
        },
    )
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.startswith("/portal/bulk/")
    detail = await staff.get(location)
    assert detail.status_code == 200 and "Activer" in detail.text and "Voir dans Temporal" in detail.text
    progress = detail.text
    for _ in range(300):
        progress = (await staff.get(f"{location}/progress", headers={"HX-Request": "true"})).text
        if 'data-live="no"' in progress:
            break
        assert 'hx-trigger="every 1s"' in progress  # polled while running
        await asyncio.sleep(0.1)
    assert 'data-status="completed"' in progress, progress
    assert '<span data-counter="succeeded">3</span>' in progress
    assert progress.count('data-item-status="succeeded"') == 3

    report = await staff.get(f"{location}/report.csv")
    assert report.status_code == 200 and report.text.count("réussie") == 3
    listing = await staff.get("/portal/bulk")
    assert location.rsplit("/", 1)[1] in listing.text

    export = await staff.post("/portal/bulk/export", data={"csrf_token": token, "iccid": tenant.iccids})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    header, *rows = export.content.decode("utf-8-sig").strip().splitlines()
    assert header.split(";")[0] == "ICCID" and "Statut" in header.split(";")
    assert sorted(r.split(";")[0] for r in rows) == sorted(tenant.iccids)
    assert all("Prête à l'activation" in r for r in rows)


async def test_refused_bulk_operation_shows_the_reason(
    staff: httpx.AsyncClient, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    token = csrf((await staff.get("/portal/sims")).text)
    refused = await staff.post(
        "/portal/bulk",
        data={"csrf_token": token, "kind": "send_sms", "iccid": tenant.iccids[0], "text": ""},
    )
    assert refused.status_code == 422 and "texte du SMS" in refused.text


async def test_import_page_reports_rows_and_offers_the_error_report(
    staff: httpx.AsyncClient, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=0)
    form = await staff.get("/portal/imports")
    assert form.status_code == 200 and 'id="import-form"' in form.text
    good = [random_iccid(), random_iccid()]
    content = "iccid;imsi;puk1;puk2;carrier;esim;activation_code\n"
    content += f"{good[0]};{random_imsi()};12345678;87654321;Orange;0;\n"
    content += f"{good[1]};{random_imsi()};;;Bouygues;1;LPA:1$smdp.example.test$XYZ\n"
    content += f"{random_iccid()};{random_imsi()};;;Inconnu;0;\n"
    result = await staff.post(
        "/portal/imports",
        data={"csrf_token": csrf(form.text), "org_id": tenant.org_id},
        files={"file": ("commande.csv", content.encode(), "text/csv")},
    )
    assert result.status_code == 200, result.text
    assert 'data-accepted="2"' in result.text and 'data-rejected="1"' in result.text
    link = re.search(r'href="(/portal/imports/[^"]+/errors\.csv)"', result.text)
    assert link
    errors = await staff.get(link.group(1))
    assert errors.status_code == 200 and "carrier" in errors.text and "opérateur inconnu" in errors.text
    qr = await app_client.get(f"/api/v1/sims/{good[1]}/esim-qr.svg", headers=admin_headers)
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml" and "<svg" in qr.text
    no_qr = await app_client.get(f"/api/v1/sims/{good[0]}/esim-qr.svg", headers=admin_headers)
    assert no_qr.status_code == 404


async def test_import_details_page_updates_each_sim_from_its_row(
    staff: httpx.AsyncClient, app_client: httpx.AsyncClient, admin_headers: dict[str, str], temporal_client: Client
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=2)
    listing = await staff.get("/portal/bulk")
    assert 'href="/portal/bulk/import-details"' in listing.text
    form = await staff.get("/portal/bulk/import-details")
    assert form.status_code == 200 and 'id="details-form"' in form.text
    first, second = tenant.iccids
    content = "iccid;note;tags;imei\n"
    content += f"{first};Flotte Lyon;lyon,flotte;\n"
    content += f"{second};;paris;\n"
    content += f"{random_iccid()};inconnue;;\n"
    started = await staff.post(
        "/portal/bulk/import-details",
        data={"csrf_token": csrf(form.text)},
        files={"file": ("details.csv", content.encode(), "text/csv")},
    )
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    progress = ""
    for _ in range(300):
        progress = (await staff.get(f"{location}/progress", headers={"HX-Request": "true"})).text
        if 'data-live="no"' in progress:
            break
        await asyncio.sleep(0.1)
    assert '<span data-counter="succeeded">2</span>' in progress, progress
    one = (await app_client.get(f"/api/v1/sims/{first}", headers=admin_headers)).json()
    two = (await app_client.get(f"/api/v1/sims/{second}", headers=admin_headers)).json()
    assert one["note"] == "Flotte Lyon" and sorted(one["tags"]) == ["flotte", "lyon"]
    assert two["note"] is None and two["tags"] == ["paris"]

    empty = await staff.post(
        "/portal/bulk/import-details",
        data={"csrf_token": csrf(form.text)},
        files={"file": ("vide.csv", b"iccid;note\n", "text/csv")},
    )
    assert empty.status_code == 422 and "aucune ligne" in empty.text


async def test_bulk_activation_can_give_every_line_to_one_end_user(
    live_api: ApiServer,
    staff: httpx.AsyncClient,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=2)
    created = await app_client.post(
        "/api/v1/end-users",
        json={
            "company_id": tenant.company_id,
            "email": f"flotte-{tenant.org_id[:8]}@test.simflow",
            "full_name": "Flotte",
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    token = csrf((await staff.get("/portal/sims")).text)
    prepared = await staff.post(
        "/portal/bulk/new", data={"csrf_token": token, "kind": "activate", "iccid": tenant.iccids}
    )
    assert 'id="bulk-end-user"' in prepared.text and f'value="{user_id}"' in prepared.text
    assert f"/portal/sims/{tenant.iccids[0]}/activation" in prepared.text  # per-SIM: number, port-in
    started = await staff.post(
        "/portal/bulk",
        data={
            "csrf_token": csrf(prepared.text),
            "kind": "activate",
            "company_id": tenant.company_id,
            "plan_id": tenant.plan_id,
            "end_user_id": user_id,
            "iccid": tenant.iccids,
        },
    )
    assert started.status_code == 303, started.text
    progress = ""
    for _ in range(300):
        progress = (await staff.get(f"{started.headers['location']}/progress", headers={"HX-Request": "true"})).text
        if 'data-live="no"' in progress:
            break
        await asyncio.sleep(0.1)
    assert '<span data-counter="succeeded">2</span>' in progress, progress
    lines = await db_all(settings, select(Line).where(Line.org_id == tenant.org_id))
    assert sorted((line.status, line.end_user_id) for line in lines) == [(LineStatus.ACTIVE, user_id)] * 2

    # An end user of another company is refused, naming the field; nothing starts.
    other_company = await create_company(app_client, admin_headers, temporal_client, tenant.org_id, name="Autre")
    refused = await staff.post(
        "/portal/bulk",
        data={
            "csrf_token": csrf(prepared.text),
            "kind": "activate",
            "company_id": other_company,
            "plan_id": tenant.plan_id,
            "end_user_id": user_id,
            "iccid": tenant.iccids,
        },
    )
    assert refused.status_code == 422 and "end_user_id" in refused.text
