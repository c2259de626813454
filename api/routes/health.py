"""Health. `GET /healthz`: public liveness of this API process, nothing about the other parts (no address,
no error text). `GET /api/v1/health`: the report on the database, Temporal, the worker (task-queue
pollers) and each external system, for platform admins (api/guard.py), computed at most once per
`health_cache_s` (no round of checks, hence no Stripe call, per request)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.deps import AppState, StateDep

router = APIRouter(tags=["Supervision"])

CHECK_TIMEOUT_S = 3.0


async def _timed(name: str, check: Any) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
        result: dict[str, Any] = {"status": "ok", **(detail or {})}
    except Exception as exc:  # a health check reports every failure rather than raising
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return name, result


class Liveness(BaseModel):
    status: str = "ok"


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """The API process answers. Public, so it says nothing else: the state of the other parts is in the
    report (`GET /api/v1/health`), which needs a platform admin."""
    return Liveness()


@router.get(
    "/api/v1/health",
    responses={503: {"description": "Au moins un composant en erreur (rapport dans le corps)"}},
)
async def health_report(state: StateDep) -> JSONResponse:
    """Database, Temporal, worker pollers, CFAST, SNAIC, OCS, Stripe: `ok`, or `degraded` with 503 naming
    the components in error. Reused for `health_cache_s` seconds."""
    status_code, body = await state.health_report.get(state.settings.health_cache_s, lambda: _check_all(state))
    return JSONResponse(body, status_code=status_code)


async def _check_all(state: AppState) -> tuple[int, dict[str, Any]]:
    settings = state.settings

    async def database() -> dict[str, Any]:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"backend": state.engine.dialect.name}

    async def temporal() -> dict[str, Any]:
        client = await state.temporal()
        await client.service_client.check_health()
        return {"address": settings.temporal_address, "namespace": settings.temporal_namespace}

    async def worker() -> dict[str, Any]:
        client = await state.temporal()
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        now = datetime.now(UTC)
        recent = [
            p
            for p in response.pollers
            if (now - p.last_access_time.ToDatetime(tzinfo=UTC)).total_seconds() < settings.worker_heartbeat_stale_s
        ]
        if not recent:
            raise RuntimeError(f"no worker polling task queue {settings.task_queue!r}")
        return {"pollers": len(recent), "task_queue": settings.task_queue}

    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:

        def http_check(url: str, **kwargs: Any) -> Any:
            async def check() -> dict[str, Any]:
                response = await http.get(url, **kwargs)
                response.raise_for_status()
                return {"url": url.split("?")[0]}

            return check

        async def ocs() -> dict[str, Any]:
            response = await http.post(settings.ocs_url, json={"method": "APIerSv1.Ping", "params": [{}], "id": 1})
            response.raise_for_status()
            if response.json().get("result") != "Pong":
                raise RuntimeError(f"unexpected answer {response.text[:100]}")
            return {"url": settings.ocs_url}

        checks = {
            "database": database,
            "temporal": temporal,
            "worker": worker,
            "cfast": http_check(f"{settings.cfast_url}{settings.cfast_health_path}"),
            "snaic": http_check(f"{settings.snaic_url}{settings.snaic_health_path}"),
            "ocs": ocs,
            "stripe": http_check(
                f"{settings.stripe_api_base}/v1/customers?limit=1",
                headers={"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"},
            ),
        }
        results = dict(await asyncio.gather(*(_timed(name, check) for name, check in checks.items())))
    healthy = all(r["status"] == "ok" for r in results.values())
    return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", "checks": results}
