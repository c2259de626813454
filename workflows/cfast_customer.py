"""A new company becomes a CFAST customer account (1000) with its billing point (5000) and its mobile
site (9000). Each push is an update (MAJ) record; ids that CFAST already holds are fetched, not recreated.

Workflow id: `cfast-customer/{org}/{company}`.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.contracts import (
        CfastCustomerInput,
        CfastCustomerResult,
        EnsureCfastBillingPoint,
        EnsureCfastCustomer,
        EnsureCfastSite,
        ExternalCallResult,
        MarkCfastFailed,
        SaveCfastIds,
        UpdateRecordInput,
    )
    from domain.enums import ExternalSystem, MajStatus
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS


def workflow_id(org_id: str, company_id: str) -> str:
    return f"cfast-customer/{org_id}/{company_id}"


@workflow.defn
class CfastCustomerWorkflow:
    def __init__(self) -> None:
        self.status = "starting"

    @workflow.query
    def business_status(self) -> str:
        return self.status

    def _set_status(self, status: str, details: str) -> None:
        self.status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        workflow.set_current_details(details)

    async def _record(
        self, data: CfastCustomerInput, step: str, result: ExternalCallResult | None, error: str | None
    ) -> None:
        wf_id = workflow.info().workflow_id
        await workflow.execute_activity(
            names.RECORD_UPDATE,
            UpdateRecordInput(
                reference=f"{wf_id}:{step}",
                org_id=data.org_id,
                company_id=data.company_id,
                workflow_id=wf_id,
                system=ExternalSystem.CFAST,
                operation=step,
                status=MajStatus.ERROR if error else MajStatus.OK,
                sent=result.sent if result else {},
                answer=result.answer if result else {},
                ids_obtained={"id": result.object_id, "fetched_existing": result.fetched_existing} if result else {},
                error=error,
            ),
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )

    async def _step(self, data: CfastCustomerInput, step: str, activity: str, arg: object) -> ExternalCallResult:
        try:
            result: ExternalCallResult = await workflow.execute_activity(
                activity,
                arg,
                result_type=ExternalCallResult,
                start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
                retry_policy=policies.EXTERNAL_CALL_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            await self._record(data, step, None, message)
            raise
        await self._record(data, step, result, None)
        return result

    @workflow.run
    async def run(self, data: CfastCustomerInput) -> CfastCustomerResult:
        wf_id = workflow.info().workflow_id
        try:
            self._set_status("creating_customer", f"Compte client CFAST pour {data.customer_name}")
            customer = await self._step(
                data,
                "create_customer",
                names.CFAST_ENSURE_CUSTOMER,
                EnsureCfastCustomer(
                    idempotency_key=f"{wf_id}:create_customer",
                    customer_name=data.customer_name,
                    customer_reference=data.customer_reference,
                    siret=data.siret,
                    vat_number=data.vat_number,
                ),
            )
            self._set_status("creating_billing_point", f"Site de facturation « {data.billing_site_label} »")
            billing_point = await self._step(
                data,
                "create_billing_point",
                names.CFAST_ENSURE_BILLING_POINT,
                EnsureCfastBillingPoint(
                    idempotency_key=f"{wf_id}:create_billing_point",
                    customer_id=customer.object_id,
                    label=data.billing_site_label,
                    address=data.billing_address,
                ),
            )
            self._set_status("creating_site", f"Parc « {data.parc_label} »")
            site = await self._step(
                data,
                "create_site",
                names.CFAST_ENSURE_SITE,
                EnsureCfastSite(
                    idempotency_key=f"{wf_id}:create_site",
                    billing_point_id=billing_point.object_id,
                    label=data.parc_label,
                    parc_type=data.parc_type,
                ),
            )
        except ActivityError as err:
            reason = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            self._set_status("failed", f"Échec CFAST : {reason}")
            await workflow.execute_activity(
                names.COMPANY_MARK_CFAST_FAILED,
                MarkCfastFailed(org_id=data.org_id, company_id=data.company_id, reason=reason),
                start_to_close_timeout=policies.DATABASE_TIMEOUT,
                retry_policy=policies.DATABASE_RETRY,
            )
            raise ApplicationError(f"CFAST customer creation failed: {reason}", type="CfastSyncFailed") from err

        await workflow.execute_activity(
            names.COMPANY_SAVE_CFAST_IDS,
            SaveCfastIds(
                org_id=data.org_id,
                company_id=data.company_id,
                billing_site_id=data.billing_site_id,
                parc_id=data.parc_id,
                customer_id=customer.object_id,
                billing_point_id=billing_point.object_id,
                site_id=site.object_id,
            ),
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )
        self._set_status("synced", f"Client CFAST {customer.object_id} prêt")
        return CfastCustomerResult(
            customer_id=customer.object_id, billing_point_id=billing_point.object_id, site_id=site.object_id
        )
