"""Bulk operations on selected SIMs `bulk/{org}/{bulk_id}` (seed 000 "Opérations en masse").

- Network operations run one child workflow per SIM, at most `max_concurrency` at a time: activate
  (`sim-activation/{org}/{iccid}`), suspend / resume / change plan (`line-op/…`), cancel SIM
  (`deprovision/{org}/{line}`; a SIM without line is cancelled in the database).
- Refresh usage reads each SIM's OCS account (same bound), the first usage turning the SIM `active`.
- Database-only edits (note, tags, rules, company, imported details, SMS) run in chunks of 100.

The `progress` query feeds the portal's live view; per-SIM results are written to the database in
batches (the exportable CSV report). Pages of `page_size` SIMs continue-as-new to keep histories short.
The `cancel` signal stops launching new items; items already running finish (and compensate if they fail).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from domain.enums import BulkItemStatus, BusinessStatus
    from domain.errors import ErrorCode
    from domain.lifecycle_contracts import (
        ActivationContext,
        BulkEdit,
        BulkFinish,
        BulkItemInput,
        BulkItemResult,
        BulkOperationInput,
        BulkProgress,
        BulkResultsRecord,
        BulkTarget,
        BulkTargetList,
        BulkTargets,
        DeprovisioningInput,
        LineOperationInput,
        LineSnapshot,
        LoadActivation,
        LoadLine,
        OcsAccountRequest,
        OcsUsage,
        RecordUsage,
        SimActivationInput,
        plan_balance_id,
    )
    from domain.usage_contracts import ocs_shows_usage
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._line_saga import CfastHierarchy
    from workflows._saga import reason_of
    from workflows._search import BUSINESS_STATUS, initial_attributes

from workflows.deprovisioning import DeprovisioningWorkflow
from workflows.deprovisioning import workflow_id as deprovision_workflow_id
from workflows.line_operations import LineOperationWorkflow
from workflows.line_operations import workflow_id as line_operation_workflow_id
from workflows.sim_activation import SimActivationWorkflow
from workflows.sim_activation import workflow_id as activation_workflow_id

DB_KINDS = frozenset(
    {"edit_note", "set_tags", "set_rules", "assign_company", "unassign_company", "import_details", "send_sms"}
)
CHILD_KINDS = frozenset({"activate", "suspend", "resume", "change_plan", "cancel_sim"})
EDIT_CHUNK = 100
FLUSH_EVERY = 50


def workflow_id(org_id: str, bulk_id: str) -> str:
    return f"bulk/{org_id}/{bulk_id}"


@workflow.defn
class BulkOperationWorkflow(CfastHierarchy):
    def __init__(self) -> None:
        super().__init__()
        self.data: BulkOperationInput | None = None
        self.succeeded = 0
        self.failed = 0
        self.skipped = 0
        self.running = 0
        self.cancelled = False
        self.finished = False
        self._buffer: list[BulkItemResult] = []
        self._flush_lock = asyncio.Lock()

    # --- messages ----------------------------------------------------------------------------------

    @workflow.query
    def progress(self) -> BulkProgress:
        data = self.data
        total = len(data.items) if data else 0
        done = self.succeeded + self.failed + self.skipped
        if self.finished:
            status = BusinessStatus.CANCELLED if self.cancelled else BusinessStatus.COMPLETED
        else:
            status = BusinessStatus.CANCELLING if self.cancelled else BusinessStatus.RUNNING
        return BulkProgress(
            bulk_id=data.bulk_id if data else "",
            kind=data.kind if data else "",
            total=total,
            done=done,
            succeeded=self.succeeded,
            failed=self.failed,
            skipped=self.skipped,
            running=self.running,
            status=status,
            cancelled=self.cancelled,
        )

    @workflow.signal
    def cancel(self) -> None:
        """Stops launching new items; running ones finish."""
        self.cancelled = True

    # --- run ---------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: BulkOperationInput) -> BulkProgress:
        self.data = data
        self._org_id, self._company_id = data.org_id, data.company_id
        self.succeeded, self.failed, self.skipped = data.succeeded, data.failed, data.skipped
        self.cancelled = self.cancelled or data.cancelled
        if data.kind not in DB_KINDS | CHILD_KINDS | {"refresh_usage"}:
            raise ApplicationError(
                f"unknown bulk operation {data.kind}", type=ErrorCode.BULK_INVALID_KIND, non_retryable=True
            )
        page = data.items[data.offset : data.offset + data.page_size]
        self._report_progress()
        if data.kind in DB_KINDS:
            await self._run_edits(data, page)
        else:
            await self._run_items(data, page)
        await self._flush()
        next_offset = data.offset + len(page)
        if next_offset < len(data.items) and not self.cancelled:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                data.model_copy(
                    update={
                        "offset": next_offset,
                        "succeeded": self.succeeded,
                        "failed": self.failed,
                        "skipped": self.skipped,
                        "cancelled": self.cancelled,
                    }
                )
            )
        # Items never started (cancelled) are reported as skipped by `finish`.
        self.skipped += len(data.items) - next_offset
        status = BusinessStatus.CANCELLED if self.cancelled else BusinessStatus.COMPLETED
        await self._db(
            names.BULK_FINISH,
            BulkFinish(
                bulk_id=data.bulk_id,
                status=status,
                succeeded=self.succeeded,
                failed=self.failed,
                skipped=self.skipped,
            ),
        )
        self.finished = True
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        workflow.set_current_details(self._summary())
        return self.progress()

    def _summary(self) -> str:
        p = self.progress()
        return f"{p.done}/{p.total} traitées — {p.succeeded} réussies, {p.failed} en échec, {p.skipped} ignorées"

    def _report_progress(self) -> None:
        self.status = BusinessStatus.CANCELLING if self.cancelled else BusinessStatus.RUNNING
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(self.status)])
        workflow.set_current_details(self._summary())

    def _add(self, result: BulkItemResult) -> None:
        if result.status is BulkItemStatus.SUCCEEDED:
            self.succeeded += 1
        elif result.status is BulkItemStatus.FAILED:
            self.failed += 1
        else:
            self.skipped += 1
        self._buffer.append(result)

    async def _flush(self) -> None:
        async with self._flush_lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            assert self.data is not None
            await self._db(names.BULK_RECORD_RESULTS, BulkResultsRecord(bulk_id=self.data.bulk_id, results=batch))
            self._report_progress()

    # --- database-only edits -----------------------------------------------------------------------

    async def _run_edits(self, data: BulkOperationInput, page: list[BulkItemInput]) -> None:
        for start in range(0, len(page), EDIT_CHUNK):
            chunk = page[start : start + EDIT_CHUNK]
            if self.cancelled:
                for item in chunk:
                    self._add(
                        BulkItemResult(iccid=item.iccid, status=BulkItemStatus.SKIPPED, detail="opération annulée")
                    )
                continue
            record = await self._db(
                names.BULK_APPLY_EDITS,
                BulkEdit(
                    bulk_id=data.bulk_id,
                    org_id=data.org_id,
                    company_id=data.company_id,
                    kind=data.kind,
                    params=data.params,
                    items=chunk,
                    requested_by=data.requested_by,
                ),
                BulkResultsRecord,
            )
            for result in record.results:
                self._add(result)
            await self._flush()

    # --- one workflow (or usage read) per SIM ------------------------------------------------------

    async def _run_items(self, data: BulkOperationInput, page: list[BulkItemInput]) -> None:
        targets = await self._db(
            names.BULK_RESOLVE_TARGETS,
            BulkTargets(bulk_id=data.bulk_id, org_id=data.org_id, kind=data.kind, iccids=[i.iccid for i in page]),
            BulkTargetList,
        )
        if data.kind == "activate" and data.offset == 0:
            await self._prepare_company(data)
        params_by_iccid = {item.iccid: item.params for item in page}
        semaphore = asyncio.Semaphore(max(1, min(data.max_concurrency, 500)))

        async def one(target: BulkTarget) -> None:
            async with semaphore:
                if self.cancelled:
                    result = BulkItemResult(
                        iccid=target.iccid, status=BulkItemStatus.SKIPPED, detail="opération annulée"
                    )
                elif target.problem is not None:
                    result = BulkItemResult(iccid=target.iccid, status=BulkItemStatus.SKIPPED, detail=target.problem)
                else:
                    self.running += 1
                    try:
                        result = await self._item(data, target, {**data.params, **params_by_iccid[target.iccid]})
                    finally:
                        self.running -= 1
                self._add(result)
                if len(self._buffer) >= FLUSH_EVERY:
                    await self._flush()

        await asyncio.gather(*(one(t) for t in targets.targets))

    async def _prepare_company(self, data: BulkOperationInput) -> None:
        """Bulk activation for a company: its CFAST hierarchy is ensured once, before the children run
        (so they never race to create it)."""
        company_id = str(data.params.get("company_id") or data.company_id or "")
        plan_id = str(data.params.get("plan_id") or "")
        if not company_id or not plan_id:
            return
        try:
            ctx = await self._db(
                names.INVENTORY_LOAD_ACTIVATION,
                LoadActivation(line_id="", company_id=company_id, plan_id=plan_id, org_id=data.org_id),
                ActivationContext,
            )
            self._company_id = company_id
            await self._ensure_cfast_hierarchy(ctx, company_id)
        except ActivityError as err:
            workflow.logger.warning("CFAST hierarchy not ensured before bulk activation: %s", reason_of(err))

    async def _item(self, data: BulkOperationInput, target: BulkTarget, params: dict[str, object]) -> BulkItemResult:
        try:
            if data.kind == "refresh_usage":
                return await self._refresh_usage(data, target)
            return await self._child(data, target, params)
        except WorkflowAlreadyStartedError:
            return BulkItemResult(
                iccid=target.iccid, status=BulkItemStatus.FAILED, detail="une opération est déjà en cours"
            )
        except (ChildWorkflowError, ActivityError, ApplicationError) as err:
            return BulkItemResult(iccid=target.iccid, status=BulkItemStatus.FAILED, detail=reason_of(err))

    async def _child(self, data: BulkOperationInput, target: BulkTarget, params: dict[str, object]) -> BulkItemResult:
        if data.kind == "activate":
            company_id = str(params.get("company_id") or target.company_id or data.company_id or "")
            plan_id = str(params.get("plan_id") or "")
            if not company_id or not plan_id:
                return BulkItemResult(
                    iccid=target.iccid, status=BulkItemStatus.FAILED, detail="entreprise et forfait requis"
                )
            line_id = workflow.uuid4().hex
            child_id = activation_workflow_id(data.org_id, target.iccid)
            activation = await workflow.execute_child_workflow(
                SimActivationWorkflow.run,
                SimActivationInput(
                    org_id=data.org_id,
                    company_id=company_id,
                    line_id=line_id,
                    iccid=target.iccid,
                    plan_id=plan_id,
                    end_user_id=str(params.get("end_user_id") or "") or None,  # input only: same commands
                    requested_by=data.requested_by,
                    snaic_sla_s=data.snaic_sla_s,
                    snaic_poll_s=data.snaic_poll_s,
                    bulk_id=data.bulk_id,
                ),
                id=child_id,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=initial_attributes(
                    org_id=data.org_id, company_id=company_id, iccid=target.iccid, status=BusinessStatus.STARTING
                ),
                static_summary=f"Activation de la SIM {target.iccid} (opération en masse)",
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
            return BulkItemResult(
                iccid=target.iccid,
                status=BulkItemStatus.SUCCEEDED,
                detail=f"ligne {activation.msisdn} prête",
                workflow_id=child_id,
                line_id=line_id,
            )
        assert target.line_id is not None or data.kind == "cancel_sim"
        company_id = target.company_id or data.company_id or ""
        if data.kind == "cancel_sim":
            if target.line_id is None:
                edit = await self._db(
                    names.BULK_APPLY_EDITS,
                    BulkEdit(
                        bulk_id=data.bulk_id,
                        org_id=data.org_id,
                        company_id=data.company_id,
                        kind="cancel_sim",
                        items=[BulkItemInput(iccid=target.iccid)],
                        requested_by=data.requested_by,
                    ),
                    BulkResultsRecord,
                )
                return edit.results[0]
            child_id = deprovision_workflow_id(data.org_id, target.line_id)
            grace = params.get("grace_days", 0)
            result = await workflow.execute_child_workflow(
                DeprovisioningWorkflow.run,
                DeprovisioningInput(
                    org_id=data.org_id,
                    company_id=company_id,
                    line_id=target.line_id,
                    grace_days=int(grace) if isinstance(grace, int | str) else 0,
                    requested_by=data.requested_by,
                    reason="opération en masse",
                    request_id=data.bulk_id,
                    snaic_sla_s=data.snaic_sla_s,
                    snaic_poll_s=data.snaic_poll_s,
                    bulk_id=data.bulk_id,
                ),
                id=child_id,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=initial_attributes(
                    org_id=data.org_id, company_id=company_id, iccid=target.iccid, status=BusinessStatus.STARTING
                ),
                static_summary=f"Résiliation de la SIM {target.iccid} (opération en masse)",
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
            return BulkItemResult(
                iccid=target.iccid,
                status=BulkItemStatus.SUCCEEDED
                if result.status == BusinessStatus.TERMINATED
                else BulkItemStatus.FAILED,
                detail=f"ligne {result.status}",
                workflow_id=child_id,
                line_id=target.line_id,
            )
        new_plan = params.get("plan_id")
        child_id = line_operation_workflow_id(data.org_id, target.line_id or "", data.kind, data.bulk_id)
        operation = await workflow.execute_child_workflow(
            LineOperationWorkflow.run,
            LineOperationInput(
                org_id=data.org_id,
                company_id=company_id,
                line_id=target.line_id or "",
                operation=data.kind,
                plan_id=str(new_plan) if new_plan else None,
                requested_by=data.requested_by,
                snaic_sla_s=data.snaic_sla_s,
                snaic_poll_s=data.snaic_poll_s,
                bulk_id=data.bulk_id,
            ),
            id=child_id,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_attributes(
                org_id=data.org_id, company_id=company_id, iccid=target.iccid, status=BusinessStatus.STARTING
            ),
            static_summary=f"{data.kind} de la SIM {target.iccid} (opération en masse)",
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
        )
        return BulkItemResult(
            iccid=target.iccid,
            status=BulkItemStatus.SUCCEEDED,
            detail=operation.detail,
            workflow_id=child_id,
            line_id=target.line_id,
        )

    async def _refresh_usage(self, data: BulkOperationInput, target: BulkTarget) -> BulkItemResult:
        if target.line_id is None:
            return BulkItemResult(
                iccid=target.iccid, status=BulkItemStatus.SKIPPED, detail="aucune ligne : pas d'utilisation"
            )
        line = await self._db(
            names.INVENTORY_LOAD_LINE, LoadLine(line_id=target.line_id, org_id=data.org_id), LineSnapshot
        )
        if not line.ocs_account:
            return BulkItemResult(iccid=target.iccid, status=BulkItemStatus.SKIPPED, detail="ligne sans compte OCS")
        usage: OcsUsage = await workflow.execute_activity(
            names.PROV_OCS_READ_USAGE,
            OcsAccountRequest(
                account=line.ocs_account,
                request_id=f"{workflow.info().workflow_id}:usage:{target.iccid}",
                balance_id=plan_balance_id(line.plan_id) if line.plan_id else None,
            ),
            result_type=OcsUsage,
            start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
            retry_policy=policies.EXTERNAL_CALL_RETRY,
        )
        if not usage.exists:
            return BulkItemResult(iccid=target.iccid, status=BulkItemStatus.FAILED, detail="compte OCS introuvable")
        used = ocs_shows_usage(usage.plan_balance_bytes, line.plan_allowance_bytes)
        remaining_days = None
        if usage.plan_expires_at is not None:
            remaining_days = max(0, (usage.plan_expires_at - workflow.now()) // timedelta(days=1))
        activated = await self._db(
            names.INVENTORY_RECORD_USAGE,
            RecordUsage(
                iccid=target.iccid,
                org_id=data.org_id,
                actor=data.requested_by,
                remaining_bytes=usage.data_remaining_bytes,
                remaining_days=remaining_days,
                used=used,
            ),
            bool,
        )
        mb = usage.data_remaining_bytes // (1024 * 1024)
        return BulkItemResult(
            iccid=target.iccid,
            status=BulkItemStatus.SUCCEEDED,
            detail=f"{mb} Mo restants" + (" — première utilisation : SIM active" if activated else ""),
            line_id=target.line_id,
        )
