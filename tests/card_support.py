"""Saving a card as the portal page does it: our API's SetupIntent, confirmed against localstripe the way
Stripe.js (localstripe's `localstripe-v3.js`) confirms it from the browser, then recorded by our API."""

from __future__ import annotations

import json
from typing import Any

import httpx


def confirm_card_setup(localstripe_url: str, client_secret: str, number: str, publishable_key: str) -> dict[str, Any]:
    """What `stripe.confirmCardSetup(clientSecret, {payment_method: {card}})` sends from the browser."""
    setup_intent_id = client_secret.split("_secret_")[0]
    body = {
        "key": publishable_key,
        "use_stripe_sdk": True,
        "client_secret": client_secret,
        "payment_method_data": {
            "type": "card",
            "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            "billing_details": {"address": {"postal_code": "75001"}},
        },
    }
    response = httpx.post(
        f"{localstripe_url}/v1/setup_intents/{setup_intent_id}/confirm", content=json.dumps(body), timeout=10
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def save_card(
    client: httpx.AsyncClient, headers: dict[str, str], base_path: str, localstripe_url: str, number: str
) -> dict[str, Any]:
    """`base_path`: `/api/v1/companies/{id}/payment-methods` or the end user's. Returns the recorded card."""
    setup = await client.post(f"{base_path}/setup-intent", headers=headers)
    assert setup.status_code == 201, setup.text
    intent = setup.json()
    confirmed = confirm_card_setup(localstripe_url, intent["client_secret"], number, intent["publishable_key"])
    assert confirmed["status"] == "succeeded", confirmed
    recorded = await client.post(base_path, json={"setup_intent_id": intent["setup_intent_id"]}, headers=headers)
    assert recorded.status_code == 201, recorded.text
    card: dict[str, Any] = recorded.json()
    return card
