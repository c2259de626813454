"""The staff portal's daily work in a real headless Chromium (Debian's), against the whole stack: the API
under uvicorn, the worker on a Temporal dev server, the simulators and localstripe. Activation followed
live, recharges and the MAJ history, termination with a grace period and its cancellation, and a top-up
resolved from the home page's needs-attention queue. Screenshots of the pages go to `var/screenshots/`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright, expect
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError

from bench.topup_world import STAFF_PASSWORD, build_world, provision_line
from domain.enums import LineStatus
from domain.models import Line, TopUp, UpdateRecord
from infra.settings import Settings
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.e2e.lifecycle_support import add_fault, clear_faults, db_all, db_one, make_tenant
from tests.e2e.topup_support import ApiServer, serve_api, wait_terminal
from workflows._search import BUSINESS_STATUS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("worker"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


@pytest.fixture(scope="module")
def live_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest.fixture(autouse=True)
def clean_faults(cfast_url: str, snaic_url: str, ocs_base_url: str, stripe_url: str) -> Iterator[None]:
    yield
    for url in (cfast_url, snaic_url, ocs_base_url, stripe_url):
        httpx.delete(f"{url}/_sim/faults", timeout=5).raise_for_status()


@pytest_asyncio.fixture
async def page(live_api: ApiServer) -> AsyncIterator[Page]:
    """A Chromium tab logged in as the platform administrator, on the 1366 px screen of an office laptop."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(base_url=live_api.url, viewport={"width": 1366, "height": 900})
        tab = await context.new_page()
        tab.set_default_timeout(20_000)
        await tab.goto("/portal/login")
        await tab.get_by_label("Adresse e-mail").fill(ADMIN_EMAIL)
        await tab.get_by_label("Mot de passe").fill(ADMIN_PASSWORD)
        await tab.get_by_role("button", name="Se connecter").click()
        await expect(tab).to_have_url(re.compile(r"/portal/home$"))  # the landing page after login
        try:
            yield tab
        finally:
            await browser.close()


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def test_activate_a_sim_and_watch_it_become_active(
    page: Page,
    settings: Settings,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    iccid = tenant.iccids[0]
    await page.goto(f"/portal/sims/{iccid}")
    await page.locator("#sim-activate").click()
    await expect(page.get_by_role("heading", name=re.compile("Activer la SIM"))).to_be_visible()
    await page.locator("#activation-company").select_option(tenant.company_id)
    await page.locator("#activation-plan").select_option(tenant.plan_id)
    await shot(page, "activation-form")
    await page.locator("#activation-submit").click()
    await expect(page).to_have_url(re.compile(r"/portal/lines/[0-9a-f]{32}/activation$"))
    progress = page.locator("#activation-progress")
    await expect(progress).to_have_attribute("data-status", "active", timeout=60_000)  # htmx polling
    await expect(progress).to_contain_text("Ligne active")
    await shot(page, "activation-done")
    line_id = page.url.rsplit("/", 2)[-2]
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    assert line.status is LineStatus.ACTIVE and line.msisdn.startswith("+336")

    # The line list finds it by ICCID (filters in the URL), and its page shows its tabs.
    await page.goto(f"/portal/lines?q={iccid}")
    await expect(page.locator("#line-table tbody tr")).to_have_count(1)
    await expect(page.locator(f'tr[data-line-id="{line_id}"]')).to_have_attribute("data-status", "active")
    await shot(page, "lines")
    await page.locator(f'tr[data-line-id="{line_id}"] a').first.click()
    await page.locator("#tab-ocs").click()
    await expect(page.locator("#ocs-data-left")).to_have_text(re.compile(r"^[1-9][0-9]* Mo$"))
    await page.locator("#tab-workflows").click()
    await expect(page.locator("#line-workflows")).to_contain_text("SimActivationWorkflow", timeout=30_000)
    await shot(page, "line-workflows")


async def test_recharge_two_lines_and_open_the_maj_history(page: Page, settings: Settings) -> None:
    world = await build_world(settings)
    lines = [await provision_line(world), await provision_line(world)]
    for line_id in lines:
        await page.goto(f"/portal/lines/{line_id}")
        await page.locator('#recharge-form input[name="data_gb"]').fill("2")
        await page.locator('#recharge-form select[name="payment_method"]').select_option("card")
        await page.locator("#recharge-submit").click()
        await expect(page).to_have_url(re.compile(r"/portal/recharges/[0-9a-f]{32}$"))
        await expect(page.locator("body")).to_contain_text("Terminée", timeout=60_000)
    await shot(page, "recharge-detail")
    await page.goto(f"/portal/lines/{lines[1]}?tab=maj")
    rows = page.locator("tr[data-maj-id]")
    await expect(rows.first).to_be_visible()
    await expect(page.locator('section[data-tab="maj"]')).to_contain_text("OCS")
    await shot(page, "line-maj")
    for line_id in lines:
        topups = await db_all(settings, select(TopUp).where(TopUp.line_id == line_id))
        assert [(t.status, t.quantity) for t in topups] == [("completed", 2)]
        records = await db_all(settings, select(UpdateRecord).where(UpdateRecord.line_id == line_id))
        assert records, "a recharge leaves its MAJ records"
    assert await rows.count() == len(
        await db_all(settings, select(UpdateRecord).where(UpdateRecord.line_id == lines[1]))
    )


async def test_terminate_with_seven_days_of_grace_then_cancel(page: Page, settings: Settings) -> None:
    world = await build_world(settings)
    line_id = await provision_line(world)
    await page.goto(f"/portal/lines/{line_id}")
    await page.locator("#grace-days").select_option("7")
    await page.locator('#termination-form input[name="reason"]').fill("Départ du salarié")
    await page.locator("#terminate-submit").click()
    for _ in range(50):  # the workflow schedules the termination as its first step
        if await page.locator("#termination-pending").count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await expect(page.locator("#termination-pending")).to_be_visible()
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    assert line.termination_scheduled_for is not None
    days = (line.termination_scheduled_for - datetime.now(UTC).replace(tzinfo=None)).total_seconds() / 86400
    assert 6.9 <= days <= 7.0
    await shot(page, "line-termination-scheduled")

    await page.locator("#cancel-termination-submit").click()
    await expect(page.locator("#line-notice")).to_contain_text("Résiliation annulée")
    await expect(page.locator("#termination-form")).to_be_visible()
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    assert line.status is LineStatus.ACTIVE and line.termination_scheduled_for is None


async def test_resolve_a_needs_attention_topup_from_the_home_queue(
    page: Page, settings: Settings, live_api: ApiServer, ocs_base_url: str, stripe_url: str
) -> None:
    world = await build_world(settings)
    line_id = await provision_line(world)
    # OCS refuses the credit and Stripe the refund: the top-up waits for a person.
    for url, op in ((ocs_base_url, "APIerSv1.SetBalance"), (stripe_url, "create_refund")):
        httpx.post(f"{url}/_sim/faults", json={"op": op, "mode": "reject", "times": 1}, timeout=5).raise_for_status()
    async with httpx.AsyncClient(base_url=live_api.url, timeout=60) as http:
        token = await http.post("/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        started = await http.post(
            f"/api/v1/lines/{line_id}/recharges",
            json={"data_gb": 1, "payment_method": "card"},
            headers={**headers, "Idempotency-Key": f"attention-{line_id}"},
        )
        recharge_id = started.json()["recharge_id"]
        final = await wait_terminal(http, headers, recharge_id)
        assert final["status"] == "needs_attention", final
    httpx.delete(f"{stripe_url}/_sim/faults", timeout=5).raise_for_status()

    await page.goto("/portal/home")
    row = page.locator(f'#attention-table tr[data-recharge-id="{recharge_id}"]')
    await expect(row).to_contain_text("Recharge : remboursement en échec")
    await expect(row.locator("a.temporal-link")).to_have_attribute("href", re.compile("/workflows/topup"))
    await shot(page, "home-attention")
    await row.locator('select[name="action"]').select_option("retry_refund")
    await row.locator('input[name="note"]').fill("Stripe de nouveau disponible")
    await row.get_by_role("button", name="Valider").click()
    await expect(page.locator("#home-notice")).to_contain_text("Recharge traitée")
    await expect(page.locator(f'tr[data-recharge-id="{recharge_id}"]')).to_have_count(0)
    topup = await db_one(settings, select(TopUp).where(TopUp.id == recharge_id))
    assert topup.status == "refunded" and topup.payment_status == "refunded"
    await shot(page, "home")


async def test_resolve_an_activation_whose_compensation_failed_from_the_home_queue(
    page: Page,
    settings: Settings,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
    cfast_url: str,
    snaic_url: str,
) -> None:
    """CFAST refuses the service line and SNAIC the termination that would undo the supplier line: the
    activation page explains the failure, the home queue offers the workflow's `resolve_compensation`."""
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    add_fault(cfast_url, "create_service", "reject")
    add_fault(snaic_url, "terminate_line", "reject")
    await page.goto(f"/portal/sims/{tenant.iccids[0]}/activation")
    await page.locator("#activation-company").select_option(tenant.company_id)
    await page.locator("#activation-plan").select_option(tenant.plan_id)
    await page.locator("#activation-submit").click()
    progress = page.locator("#activation-progress")
    await expect(progress).to_have_attribute("data-live", "no", timeout=60_000)
    await expect(progress).to_contain_text("Activation échouée")
    for _ in range(50):  # the last compensations end just after the line is marked obsolete
        if await page.locator("#activation-attention").count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await expect(page.locator("#activation-attention")).to_contain_text("snaic_cancel_line")
    await shot(page, "activation-failed")
    line_id = page.url.rsplit("/", 2)[-2]
    workflow_id = f"sim-activation/{tenant.org_id}/{tenant.iccids[0]}"

    row = page.locator(f'#attention-table tr[data-workflow-id="{workflow_id}"]')
    for _ in range(100):  # Temporal's visibility lags a little behind the workflow
        await page.goto("/portal/home")
        if await row.count():
            break
        await asyncio.sleep(0.3)
    await expect(row).to_contain_text("Activation : annulation incomplète")
    await expect(row).to_contain_text("snaic_cancel_line")
    clear_faults(snaic_url)
    await row.locator('select[name="action"]').select_option("retry")
    await row.locator('input[name="note"]').fill("SNAIC de nouveau disponible")
    await row.get_by_role("button", name="Valider").click()
    await expect(page.locator("#home-notice")).to_contain_text("Réponse transmise")
    handle = temporal_client.get_workflow_handle(workflow_id)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)
    assert (await handle.describe()).typed_search_attributes.get(BUSINESS_STATUS) == "failed"
    line = await db_one(settings, select(Line).where(Line.id == line_id))
    assert line.status is LineStatus.OBSOLETE


async def test_suspend_resume_and_change_plan_from_the_line_page(
    page: Page,
    settings: Settings,
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    temporal_client: Client,
) -> None:
    tenant = await make_tenant(app_client, admin_headers, temporal_client, sims=1)
    accepted = await app_client.post(
        f"/api/v1/sims/{tenant.iccids[0]}/activation",
        json={"company_id": tenant.company_id, "plan_id": tenant.plan_id},
        headers=admin_headers,
    )
    assert accepted.status_code == 202, accepted.text
    await temporal_client.get_workflow_handle(accepted.json()["workflow_id"]).result()
    line_id = accepted.json()["line_id"]

    async def line_status(expected: LineStatus) -> Line:
        for _ in range(150):
            line = await db_one(settings, select(Line).where(Line.id == line_id))
            if line.status is expected:
                return line
            await asyncio.sleep(0.2)
        raise AssertionError(f"line still {line.status}, expected {expected}")

    await page.goto(f"/portal/lines/{line_id}")
    await page.locator("#suspend-submit").click()
    await expect(page.locator("#line-notice")).to_contain_text("Suspension demandée")
    await line_status(LineStatus.SUSPENDED)
    await page.goto(f"/portal/lines/{line_id}")
    await page.locator("#resume-submit").click()
    await expect(page.locator("#line-notice")).to_contain_text("Réactivation demandée")
    await line_status(LineStatus.ACTIVE)
    await page.goto(f"/portal/lines/{line_id}")
    await page.locator('#plan-change-form select[name="plan_id"]').select_option(tenant.plan2_id)
    await page.locator("#plan-change-submit").click()
    await expect(page.locator("#line-notice")).to_contain_text("Changement de forfait demandé")
    for _ in range(150):
        line = await line_status(LineStatus.ACTIVE)
        if line.plan_id == tenant.plan2_id:
            break
        await asyncio.sleep(0.2)
    assert line.plan_id == tenant.plan2_id
    await page.goto(f"/portal/lines/{line_id}?tab=journal")
    await expect(page.locator("#line-journal")).to_contain_text("suspended")
    await shot(page, "line-journal")
