"""HTTP plumbing for top-up tests: the API served by uvicorn (so SNAIC callbacks reach it) and polling."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import uvicorn

from api.app import create_app
from domain.enums import TOPUP_TERMINAL_STATUSES
from infra.processes import free_port
from infra.settings import Settings


class ApiServer:
    """The real app under uvicorn in a thread: reachable over HTTP by the simulators' callbacks."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        for _ in range(200):
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.05)
        raise RuntimeError("API server did not start")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_api(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    with ApiServer(settings) as server:
        config = {
            "callback_url": f"{server.url}/api/v1/snaic/callback",
            "callback_secret": settings.snaic_callback_secret.get_secret_value(),
            "callbacks_enabled": True,
            "completion_delay_ms": 20,
        }
        httpx.post(f"{snaic_url}/_sim/config", json=config, timeout=5).raise_for_status()
        yield server
        httpx.delete(f"{snaic_url}/_sim/config", timeout=5).raise_for_status()


async def wait_terminal(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    recharge_id: str,
    timeout_s: float = 60,
    until: tuple[str, ...] = TOPUP_TERMINAL_STATUSES,
) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await client.get(f"/api/v1/recharges/{recharge_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        if body["status"] in until:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"recharge {recharge_id} still {body['status']} after {timeout_s} s")
        await asyncio.sleep(0.1)
