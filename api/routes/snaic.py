"""SNAIC pushes order results here; each is routed to the workflow that placed the order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import StateDep
from api.problems import problem
from domain.contracts import SNAIC_ORDER_SIGNAL, SnaicOrderUpdate, workflow_id_of_snaic_reference
from domain.errors import ErrorCode
from integrations.snaic import SnaicCallback, verify_callback_signature

router = APIRouter(prefix="/api/v1/snaic", tags=["Fournisseur SNAIC"])


@router.post("/callback", status_code=202)
async def snaic_callback(request: Request, state: StateDep) -> JSONResponse:
    body = await request.body()
    signature = request.headers.get("X-Snaic-Signature", "")
    if not verify_callback_signature(body, signature, state.settings.snaic_callback_secret.get_secret_value()):
        return problem(401, "signature SNAIC absente ou invalide", code=ErrorCode.SNAIC_INVALID_SIGNATURE)
    try:
        callback = SnaicCallback.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "reason": e["msg"]} for e in exc.errors()]
        return problem(
            422,
            f"corps de rappel invalide : {exc.error_count()} erreur(s)",
            code=ErrorCode.VALIDATION_FAILED,
            errors=errors,
        )
    if not callback.reference:
        # An order we did not place through a workflow: acknowledged, nothing to route.
        return JSONResponse({"routed": False}, status_code=202)
    update = SnaicOrderUpdate(
        order_id=callback.order_id,
        line_id=callback.line_id,
        status=callback.status,
        reason=callback.reason,
        reference=callback.reference,
    )
    client = await state.temporal()
    handle = client.get_workflow_handle(workflow_id_of_snaic_reference(callback.reference))
    try:
        await handle.signal(SNAIC_ORDER_SIGNAL, update)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # The workflow already finished (it polled the result): nothing is waiting for this callback.
        return JSONResponse({"routed": False}, status_code=202)
    return JSONResponse({"routed": True}, status_code=202)
