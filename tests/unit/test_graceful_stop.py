"""Stopping a container lets its work finish: the worker's and the API's graceful shutdown fit inside the stop
grace period compose gives them (Docker sends SIGTERM, then SIGKILL when that period is over)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def graceful_flag(command: list[str]) -> float:
    assert "--timeout-graceful-shutdown" in command, command
    return float(command[command.index("--timeout-graceful-shutdown") + 1])


def test_worker_lets_running_activities_finish_within_the_stop_grace_period() -> None:
    worker = services()["worker"]
    grace = seconds(worker["stop_grace_period"])
    drain = Settings().worker_graceful_shutdown_s
    assert 0 < drain < grace and grace - drain <= 10, (drain, grace)


def test_api_drains_requests_within_the_stop_grace_period_and_outlasts_a_recharge_wait() -> None:
    api = services()["api"]
    grace = seconds(api.get("stop_grace_period", "10s"))
    dockerfile_cmd = next(
        json.loads(line.removeprefix("CMD "))
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("CMD ")
    )
    settings = Settings()
    for drain in (graceful_flag(api["command"]), graceful_flag(dockerfile_cmd), settings.api_graceful_shutdown_s):
        assert settings.topup_submit_timeout_s < drain < grace, (drain, grace)
