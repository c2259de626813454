"""A newcomer's first minutes, timed: `make run`, then in Chromium log in to the portal as the demo admin, open
an active demo line, recharge it by card with the demo card and wait for the recharge to complete; then check
the mail sink (the top-up's receipt and invoice mails), the invoice PDF download and the wallet page (the demo
funding of 50,00 €). `make run` is stopped with SIGTERM to its process group (what Ctrl-C does with SIGINT).

    .venv/bin/python -m bench.make_run_walkthrough [--chromium /usr/bin/chromium]

Prints each step with the seconds since `make run` started; exits non-zero on the first failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect

from infra.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent
PORTAL = "http://127.0.0.1:8000"
SINK = "http://127.0.0.1:8105"
READY = "simflow est prêt"
LOGIN = re.compile(r"Connexion\s+(\S+@\S+) / (\S+)")


class Walkthrough:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, what: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {what}", flush=True)


def wait_ready(process: subprocess.Popen[str], run: Walkthrough) -> tuple[str, str]:
    """Reads `make run`'s output until its ready line; the demo admin's login printed there."""
    login: tuple[str, str] | None = None
    assert process.stdout is not None
    for line in process.stdout:
        print(f"    | {line.rstrip()}", flush=True)
        found = LOGIN.search(line)
        if found:
            login = (found.group(1), found.group(2))
        if READY in line:
            run.step("make run: prêt")
        if login is not None and "Ctrl-C" in line:
            return login
    raise SystemExit(f"make run ended before it was ready (code {process.wait()})")


async def browse(email: str, password: str, chromium: str, run: Walkthrough) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True)
        page = await browser.new_page(base_url=PORTAL)
        await page.goto("/portal/login")
        await page.get_by_label("Adresse e-mail").fill(email)
        await page.get_by_label("Mot de passe").fill(password)
        await page.get_by_role("button", name="Se connecter").click()
        await expect(page).to_have_url(re.compile(r"/portal/home$"))
        run.step("portail : connecté")
        await page.goto("/portal/lines?status=active")
        first = page.locator("tr[data-line-id] a").first
        await expect(first).to_be_visible(timeout=60_000)
        await first.click()
        await expect(page).to_have_url(re.compile(r"/portal/lines/[0-9a-f]{32}"))
        run.step(f"ligne ouverte : {page.url}")
        await page.locator('#recharge-form input[name="data_gb"]').fill("1")
        await page.locator('#recharge-form select[name="payment_method"]').select_option("card")
        await page.locator("#recharge-submit").click()
        await expect(page).to_have_url(re.compile(r"/portal/recharges/[0-9a-f]{32}$"))
        await expect(page.locator('#recharge-detail[data-status="completed"]')).to_have_count(1, timeout=60_000)
        run.step("recharge par carte : terminée")

        await page.goto("/portal/invoices")
        link = page.get_by_role("link", name="Télécharger").first
        pdf = await page.request.get(str(await link.get_attribute("href")))
        assert pdf.ok and (await pdf.body()).startswith(b"%PDF"), "invoice PDF"
        run.step(f"facture PDF téléchargée ({len(await pdf.body())} octets)")

        company = await page.evaluate(
            "() => fetch('/api/v1/companies').then(r => r.json()).then(b => b.items.find(c => c.name === "
            "'Transports Dupont').id)"
        )
        await page.goto(f"/portal/companies/{company}/wallet")
        body = (await page.locator("main").inner_text()).replace("\u202f", " ").replace("\u00a0", " ")
        assert "50,00 €" in body, body
        run.step("page portefeuille : approvisionnement de 50,00 € affiché")
        await browser.close()


async def mails(run: Walkthrough) -> None:
    """The relay polls every few seconds: the receipt and the invoice mail arrive shortly after completion."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            subjects = [m["subject"] for m in (await http.get(f"{SINK}/messages")).json()]
            receipt = "Recharge effectuée" in subjects
            invoice = any(s.startswith("Votre facture") for s in subjects)
            if receipt and invoice:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"mail sink: {subjects}")
            await asyncio.sleep(0.5)
        page = (await http.get(f"{SINK}/")).text
        assert "Recharge effectuée" in page
    run.step(f"page des mails : {subjects}")


def stop(process: subprocess.Popen[str], run: Walkthrough) -> None:
    """SIGTERM to `make run`'s process group, then: its output drained (as a terminal would), the group gone,
    and every port of the stack closed (its processes run in their own sessions: `simflow dev` stops them)."""
    os.killpg(process.pid, signal.SIGTERM)
    assert process.stdout is not None
    for line in process.stdout:
        print(f"    | {line.rstrip()}", flush=True)
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            raise AssertionError("make run's process group still has members")
        time.sleep(0.2)
    open_ports = [f"{name}:{port}" for name, port in DEFAULT_PORTS.items() if _listening(port)]
    assert not open_ports, f"still listening after the stop: {open_ports}"
    run.step(f"make run arrêté (code {process.returncode}), aucun processus restant, aucun port ouvert")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    run = Walkthrough()
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: SIGTERM reaches make and `simflow dev`
    )
    try:
        email, password = wait_ready(process, run)
        asyncio.run(browse(email, password, args.chromium, run))
        asyncio.run(mails(run))
    finally:
        stop(process, run)
    sys.exit(0)


if __name__ == "__main__":
    main()
