"""Demo data of the embedded default, loaded through the public API (the same path users take).

Loaded once: a second start finds the demo organisation and leaves everything as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from PIL import Image, ImageDraw
from sqlalchemy import select

from domain.identifiers import iccid_with_check_digit
from domain.models import Organisation
from domain.money import Money
from domain.services import billing
from domain.wallet_contracts import FUNDING_TERMINAL_STATUSES
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings

DEMO_ORG_SLUG = "demo-telecom"
DEMO_SIM_COUNT = 50
DEMO_ACTIVE_LINES = 3
DEMO_WALLET_FUNDING_MINOR = 5_000  # 50,00 €
DEMO_BILLING_EMAIL = "compta@transports-dupont.example"
DEMO_END_USER_EMAIL = "jeanne.dupont@transports-dupont.example"


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


async def add_demo_card(http: httpx.AsyncClient, headers: dict[str, str], settings: Settings, company_id: str) -> None:
    """A saved test card (Visa 4242) on a demo company, the way the portal saves one: our API's SetupIntent,
    confirmed with Stripe's test card `pm_card_visa` (what Stripe.js does in the browser), recorded by our
    API, which makes it the company's default card."""
    base = f"/api/v1/companies/{company_id}/payment-methods"
    intent = await http.post(f"{base}/setup-intent", headers=headers)
    intent.raise_for_status()
    setup_intent_id = intent.json()["setup_intent_id"]
    async with httpx.AsyncClient(timeout=settings.http_timeout_s) as stripe:  # Stripe itself, not our API
        confirmed = await stripe.post(
            f"{settings.stripe_api_base}/v1/setup_intents/{setup_intent_id}/confirm",
            data={"payment_method": "pm_card_visa"},
            headers={"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"},
        )
    confirmed.raise_for_status()
    recorded = await http.post(base, json={"setup_intent_id": setup_intent_id}, headers=headers)
    recorded.raise_for_status()


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
        company = await post(
            "/api/v1/companies",
            {
                "org_id": org_id,
                "name": "Transports Dupont",
                "siret": "44306184100047",
                "vat_number": "FR64443061841",
                # Receipts and invoices are mailed here: they show on the mail sink's page.
                "billing_email": DEMO_BILLING_EMAIL,
            },
        )
        await add_demo_card(http, headers, settings, company["id"])
        await post("/api/v1/companies", {"org_id": org_id, "name": "Amazon Band", "is_virtual": True})
        plan = await post(
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
        end_user_id = await add_demo_end_user(post, settings, company["id"])
        active = await activate_demo_lines(post, org_id, company["id"], plan["id"], end_user_id=end_user_id)
        wallet = await fund_demo_wallet(http, headers, company["id"])
    await load_demo_invoice(settings, org_id, company["id"])
    return (
        f"démo chargée : 1 organisation, 2 entreprises, 2 forfaits, 1 option, {imported.json()['accepted']} SIM, "
        f"{active} activation(s) lancée(s), portefeuille {wallet}"
    )


def _demo_logo() -> bytes:
    """A 95 × 95 logo (seed 002's format), drawn here so the repository carries no binary."""
    image = Image.new("RGB", (95, 95), (24, 70, 140))
    ImageDraw.Draw(image).text((28, 42), "DEMO", fill=(255, 255, 255))  # the default font is ASCII
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def load_demo_invoice(settings: Settings, org_id: str, company_id: str) -> None:
    """The organisation's invoice header and footer (seed 002), and one invoice for the demo company."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            org = await session.get(Organisation, org_id)
            assert org is not None
            org.legal_name = "Démo Télécom SAS"
            org.address = "61 rue de Lyon, 75012 Paris"
            org.vat_number = "FR23732829320"
            org.customer_service_phone = "09 67 40 91 57 (prix d'un appel local)"
            org.customer_service_email = "service-client@demo-telecom.test"
            org.logo = _demo_logo()
            transaction = await billing.record_transaction(
                session,
                org_id=org_id,
                company_id=company_id,
                reference=f"demo:{company_id}:setup",
                description="Frais de mise en service — 5 lignes",
                retail=Money(4_990),
                wholesale=Money(1_500),
            )
            await billing.issue_invoice(
                session,
                org_id=org_id,
                company_id=company_id,
                reference=f"demo:{company_id}:invoice",
                transactions=[transaction],
                title="Facture de démonstration",
            )
    finally:
        await engine.dispose()


Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def demo_end_user_password(settings: Settings) -> str:
    """The demo end user's password, derived from this directory's secrets key: the same at every start (the
    banner prints it), never published, and within the password rule."""
    key = settings.secrets_key.get_secret_value().encode()
    return "Demo-" + hmac.new(key, b"simflow-demo-end-user", hashlib.sha256).hexdigest()[:12] + "!A1"


async def add_demo_end_user(post: Post, settings: Settings, company_id: str) -> str:
    """An end user of the demo company with a self-care login (`/self-care`); the first demo line is theirs."""
    user = await post(
        "/api/v1/end-users",
        {
            "company_id": company_id,
            "email": DEMO_END_USER_EMAIL,
            "full_name": "Jeanne Dupont",
            "password": demo_end_user_password(settings),
        },
    )
    return str(user["id"])


async def activate_demo_lines(
    post: Post, org_id: str, company_id: str, plan_id: str, *, end_user_id: str | None = None
) -> int:
    """A number range, then DEMO_ACTIVE_LINES SIMs activated through the API: the real activation workflow
    (SNAIC, OCS, CFAST simulators) runs them once the worker is up, so the portal opens on live lines. The
    first line goes to `end_user_id` (the self-care demo login)."""
    await post(
        "/api/v1/number-ranges",
        {"org_id": org_id, "label": "Plage démo 06", "first_msisdn": "+33601000000", "last_msisdn": "+33601000999"},
    )
    iccids = [line.split(";")[0] for line in demo_sim_csv().splitlines()[1:]]
    for n, iccid in enumerate(iccids[1 : 1 + DEMO_ACTIVE_LINES]):  # the first SIM stays blank, to try by hand
        owner = {"end_user_id": end_user_id} if n == 0 and end_user_id else {}
        await post(f"/api/v1/sims/{iccid}/activation", {"company_id": company_id, "plan_id": plan_id, **owner})
    return DEMO_ACTIVE_LINES


async def fund_demo_wallet(http: httpx.AsyncClient, headers: dict[str, str], company_id: str) -> str:
    """A wallet for the demo company, funded by card through the real funding workflow (50,00 €)."""
    created = await http.post(f"/api/v1/companies/{company_id}/wallet", json={}, headers=headers)
    if created.status_code != 409:
        created.raise_for_status()
    wallet = (await http.get(f"/api/v1/companies/{company_id}/wallet", headers=headers)).raise_for_status().json()
    started = await http.post(
        f"/api/v1/wallets/{wallet['id']}/fundings",
        json={"amount_minor": DEMO_WALLET_FUNDING_MINOR},
        headers={**headers, "Idempotency-Key": f"demo-wallet-{company_id}"},
    )
    started.raise_for_status()
    funding = started.json()
    for _ in range(300):  # the worker runs the funding: charge, then ledger credit
        if funding["status"] in FUNDING_TERMINAL_STATUSES:
            break
        await asyncio.sleep(0.1)
        url = f"/api/v1/wallets/{wallet['id']}/fundings/{funding['funding_id']}"
        funding = (await http.get(url, headers=headers)).raise_for_status().json()
    return "approvisionné" if funding["status"] == "succeeded" else f"approvisionnement {funding['status']}"
