"""A new company becomes a CFAST customer through a real workflow: API → Temporal → worker → CFAST simulator."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError

from domain.enums import CfastSyncStatus, MajStatus
from domain.models import Company, UpdateRecord
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.conftest import reset_simulator
from workflows._search import BUSINESS_STATUS, ORG_ID
from workflows.cfast_customer import CfastCustomerWorkflow

pytestmark = pytest.mark.usefixtures("worker")

VALID_SIRET = "73282932000074"
VALID_VAT = "FR44732829320"


async def create_org(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    slug = f"org-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/api/v1/organisations", json={"name": f"Intégrateur {slug}", "slug": slug}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def db_rows(settings: Settings, query):  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.execute(query)).scalars())
    finally:
        await engine.dispose()


async def test_company_creation_creates_cfast_customer_with_update_records(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    cfast_url: str,
) -> None:
    org_id = await create_org(app_client, admin_headers)
    response = await app_client.post(
        "/api/v1/companies",
        json={"org_id": org_id, "name": "Transports Dupont", "siret": "732 829 320 00074", "vat_number": VALID_VAT},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["siret"] == VALID_SIRET
    assert body["workflow_id"] == f"cfast-customer/{org_id}/{body['id']}"
    assert body["workflow_url"].endswith(body["workflow_id"].replace("/", "%2F"))

    result = await temporal_client.get_workflow_handle_for(CfastCustomerWorkflow.run, body["workflow_id"]).result()

    company = (await db_rows(settings, select(Company).where(Company.id == body["id"])))[0]
    assert company.cfast_status is CfastSyncStatus.SYNCED
    assert company.cfast_customer_id == result.customer_id
    records = await db_rows(settings, select(UpdateRecord).where(UpdateRecord.company_id == body["id"]))
    assert [r.operation for r in sorted(records, key=lambda r: r.id)] == [
        "create_customer",
        "create_billing_point",
        "create_site",
    ]
    assert all(r.status is MajStatus.OK for r in records)
    created = next(r for r in records if r.operation == "create_customer")
    assert created.sent["customer_reference"] == company.customer_reference

    customer = httpx.get(f"{cfast_url}/customers", params={"customerReference": company.customer_reference}).json()
    assert customer["customerId"] == result.customer_id

    described = await temporal_client.get_workflow_handle(body["workflow_id"]).describe()
    assert described.typed_search_attributes.get(ORG_ID) == org_id
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "synced"


async def test_existing_cfast_customer_is_fetched_not_duplicated(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    cfast_url: str,
) -> None:
    org_id = await create_org(app_client, admin_headers)
    # CFAST creates the customer but the answer is lost: the retry finds it by reference, no duplicate.
    httpx.post(
        f"{cfast_url}/_sim/faults", json={"op": "create_customer", "mode": "lost_response", "times": 1}
    ).raise_for_status()
    response = await app_client.post(
        "/api/v1/companies", json={"org_id": org_id, "name": "Boulangerie Martin"}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    await temporal_client.get_workflow_handle_for(CfastCustomerWorkflow.run, body["workflow_id"]).result()
    calls = httpx.get(f"{cfast_url}/_sim/calls", params={"op": "create_customer"}).json()
    ours = [c for c in calls if c["request"].get("customerReference") == body["customer_reference"]]
    assert sum(1 for c in ours if c["applied"]) == 1
    records = await db_rows(settings, select(UpdateRecord).where(UpdateRecord.company_id == body["id"]))
    first = next(r for r in records if r.operation == "create_customer")
    assert first.ids_obtained["fetched_existing"] is True


async def test_cfast_rejection_marks_company_failed_with_error_record(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    settings: Settings,
    cfast_url: str,
) -> None:
    org_id = await create_org(app_client, admin_headers)
    httpx.post(
        f"{cfast_url}/_sim/faults", json={"op": "create_billing_point", "mode": "reject", "times": 1}
    ).raise_for_status()
    try:
        response = await app_client.post(
            "/api/v1/companies", json={"org_id": org_id, "name": "Garage Leroy"}, headers=admin_headers
        )
        body = response.json()
        with pytest.raises(WorkflowFailureError):
            await temporal_client.get_workflow_handle_for(CfastCustomerWorkflow.run, body["workflow_id"]).result()
    finally:
        reset_simulator(cfast_url)
    company = (await db_rows(settings, select(Company).where(Company.id == body["id"])))[0]
    assert company.cfast_status is CfastSyncStatus.FAILED
    records = await db_rows(settings, select(UpdateRecord).where(UpdateRecord.company_id == body["id"]))
    failed = [r for r in records if r.status is MajStatus.ERROR]
    assert [r.operation for r in failed] == ["create_billing_point"]
    assert failed[0].error


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "X Corp", "siret": "73282932000075"}, "siret"),
        ({"name": "X Corp", "vat_number": "FR00732829320"}, "vat_number"),
        ({"name": "X"}, "name"),
        ({"name": "X Corp", "cfast_customer_id": "1"}, "cfast_customer_id"),
    ],
)
async def test_bad_company_input_names_the_field_and_changes_nothing(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    payload: dict[str, str],
    field: str,
) -> None:
    org_id = await create_org(app_client, admin_headers)
    response = await app_client.post("/api/v1/companies", json={"org_id": org_id, **payload}, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert any(e["field"] == field for e in response.json()["errors"])
    assert await db_rows(settings, select(Company).where(Company.org_id == org_id)) == []
