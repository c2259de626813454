"""Demo data of the embedded default, loaded through the public API (the same path users take).

Loaded once: a second start finds the demo organisation and leaves everything as it is.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from domain.identifiers import iccid_with_check_digit
from domain.models import Organisation
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings

DEMO_ORG_SLUG = "demo-telecom"
DEMO_SIM_COUNT = 50


def demo_sim_csv(count: int = DEMO_SIM_COUNT, *, prefix: str = "893320260000", imsi_prefix: str = "2080100") -> str:
    """An operator order file of `count` SIMs with valid ICCIDs (Luhn) and IMSIs."""
    lines = ["iccid;imsi;puk1;puk2;carrier;esim"]
    for n in range(count):
        body = f"{prefix}{n:06d}"  # 18 digits + Luhn = 19
        lines.append(
            f"{iccid_with_check_digit(body)};{imsi_prefix}{n:08d};{12345678 + n};{87654321 - n};Orange;{n % 5 == 0:d}"
        )
    return "\n".join(lines) + "\n"


async def _demo_exists(settings: Settings) -> bool:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await session.execute(select(Organisation.id).where(Organisation.slug == DEMO_ORG_SLUG))
            return found.first() is not None
    finally:
        await engine.dispose()


async def load_demo_data(settings: Settings, api_url: str | None = None) -> str:
    if await _demo_exists(settings):
        return "données de démonstration déjà chargées"
    async with httpx.AsyncClient(base_url=api_url or settings.public_base_url, timeout=30) as http:
        token = await http.post(
            "/api/v1/auth/token",
            data={
                "username": settings.bootstrap_admin_email,
                "password": settings.bootstrap_admin_password.get_secret_value(),
            },
        )
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        async def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
            response = await http.post(path, json=payload, headers=headers)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        org = await post(
            "/api/v1/organisations",
            {"name": "Démo Télécom", "slug": DEMO_ORG_SLUG, "brand_name": "Démo Mobile", "siret": "73282932000074"},
        )
        org_id = org["id"]
        await post(
            "/api/v1/companies",
            {"org_id": org_id, "name": "Transports Dupont", "siret": "44306184100047", "vat_number": "FR64443061841"},
        )
        await post("/api/v1/companies", {"org_id": org_id, "name": "Amazon Band", "is_virtual": True})
        await post(
            "/api/v1/plans",
            {
                "org_id": org_id,
                "name": "Prépayé 5 Go",
                "plan_type": "prepaid",
                "price_minor": 990,
                "data_allowance_mb": 5 * 1024,
                "validity_days": 30,
                "carrier": "Orange",
            },
        )
        await post(
            "/api/v1/plans",
            {
                "org_id": org_id,
                "name": "Abonnement mensuel 20 Go",
                "plan_type": "subscription",
                "subscription_kind": "monthly",
                "price_minor": 1990,
                "data_allowance_mb": 20 * 1024,
                "carrier": "Orange",
                "auto_renew_mode": "on",
            },
        )
        await post(
            "/api/v1/catalogue/articles",
            {
                "org_id": org_id,
                "code": "RECHARGE_DATA_1GO",
                "label": "Recharge DATA 1Go",
                "kind": "one_off_option",
                "sale_price_minor": 50,
                "purchase_price_minor": 20,
                "data_mb": 1024,
                "category": "Actif telecom – Mobile – Orange",
                "carrier": "Orange",
            },
        )
        imported = await http.post(
            "/api/v1/sims/import",
            files={"file": ("commande-sim.csv", demo_sim_csv().encode(), "text/csv")},
            data={"org_id": org_id},
            headers=headers,
        )
        imported.raise_for_status()
    return f"démo chargée : 1 organisation, 2 entreprises, 2 forfaits, 1 option, {imported.json()['accepted']} SIM"
