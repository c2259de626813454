"""The line page's subscription actions through the portal (session cookie, CSRF) on the real stack (Temporal
dev server, worker, localstripe): the auto-renew switch, and "Renouveler maintenant" submitted twice from the
same rendered form — a double click — pays one period once."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from infra.settings import Settings
from tests.e2e.test_portal_bulk import csrf, staff  # noqa: F401 - `staff` is a fixture
from tests.e2e.test_subscription_api import PRICE_MINOR, card_paying_line, charges_of, transactions_of

pytestmark = pytest.mark.usefixtures("worker")
BATCH_RE = re.compile(r'id="renew-now-form".*?name="batch" value="([0-9a-f]{32})"', re.S)


def renew_form_batch(html: str) -> str:
    match = BATCH_RE.search(html)
    assert match, "no 'Renouveler maintenant' form on the line page"
    return match.group(1)


async def test_auto_renew_switch_and_double_submitted_renew_now_pay_once(
    staff: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
    localstripe_url: str,
) -> None:
    world, line_id = await card_paying_line(settings)
    workflow_id = f"subscription/{world.org_id}/{line_id}"
    page = await staff.get(f"/portal/lines/{line_id}")
    assert page.status_code == 200, page.text
    assert 'id="line-subscription"' in page.text and 'id="subscription-opening"' in page.text

    switched = await staff.post(
        f"/portal/lines/{line_id}/auto-renew", data={"csrf_token": csrf(page.text), "mode": "prompt"}
    )
    assert switched.status_code == 303, switched.text
    page = await staff.get(switched.headers["location"])
    assert "Mode de renouvellement enregistré." in page.text
    assert 'data-mode="prompt"' in page.text and 'data-period="0"' in page.text

    # A double click: the same rendered form posted twice at once, then once more.
    form = {"csrf_token": csrf(page.text), "batch": renew_form_batch(page.text)}
    clicks = await asyncio.gather(*(staff.post(f"/portal/lines/{line_id}/renewals", data=form) for _ in range(2)))
    # Both clicks send the Update; the one the workflow takes second joins the renewal in flight. Each is answered
    # with the paid renewal: the request that wrote the key "renewed", the other "replayed", whatever their order.
    outcomes = [(c.status_code, c.headers.get("location", c.text[:300])) for c in clicks]
    assert [c.status_code for c in clicks] == [303, 303], outcomes
    notices = sorted("done=renewed" in c.headers["location"] for c in clicks)
    assert notices == [False, True], outcomes
    assert all(
        "done=renewed" in c.headers["location"] or "done=renewal_replayed" in c.headers["location"] for c in clicks
    )
    again = await staff.post(f"/portal/lines/{line_id}/renewals", data=form)
    assert again.status_code == 303 and "done=renewal_replayed" in again.headers["location"]

    page = await staff.get(again.headers["location"])
    assert "été débité de nouveau" in page.text and 'data-period="1"' in page.text
    assert [pi["amount"] for pi in charges_of(settings, localstripe_url, workflow_id)] == [PRICE_MINOR]
    transactions = await transactions_of(settings, workflow_id)
    assert [t.reference for t in transactions] == [f"{workflow_id}:period-1:charge"]

    listing = await staff.get("/portal/renewals", params={"company_id": world.company_id})
    assert f'data-line-id="{line_id}"' in listing.text and 'data-reminder="10"' in listing.text
