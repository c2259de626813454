"""A new company becomes a CFAST customer account (1000) with its billing point (5000) and its mobile
site (9000). Each push is an update (MAJ) record; ids that CFAST already holds are fetched, not recreated.
The sequence (`ensure_cfast_hierarchy`) is the one a SIM activation runs for a company CFAST does not know
yet (seed 003).

Workflow id: `cfast-customer/{org}/{company}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

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
    )
    from domain.enums import BusinessStatus, ExternalSystem
    from domain.errors import ErrorCode
    from workflows import _policies as policies
    from workflows import _saga as saga
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS

# Runs started with this patch record and save as local activities (the saga kit); runs started before it
# used regular activities.
SAGA_KIT_PATCH = "cfast-customer-saga-kit"

# The three steps: MAJ operation and suffix of the idempotency key.
CFAST_STEPS = (
    ("create_customer", "create_customer"),
    ("create_billing_point", "create_billing_point"),
    ("create_site", "create_site"),
)
# What SIM activations started before the saga kit called them.
ACTIVATION_STEPS_BEFORE_KIT = (
    ("cfast_ensure_customer", "cfast_customer"),
    ("cfast_ensure_billing_point", "cfast_billing_point"),
    ("cfast_ensure_site", "cfast_site"),
)

# (MAJ operation, activity, request) → the call's result, recorded.
ExternalStep = Callable[[str, str, object], Awaitable[ExternalCallResult]]


def workflow_id(org_id: str, company_id: str) -> str:
    return f"cfast-customer/{org_id}/{company_id}"


def _no_progress(status: BusinessStatus, details: str) -> None:
    return None


async def ensure_cfast_hierarchy(
    external: ExternalStep,
    save: Callable[[SaveCfastIds], Awaitable[object]],
    key_base: str,
    company: CfastCustomerInput,
    *,
    known: CfastCustomerResult | None = None,
    progress: Callable[[BusinessStatus, str], None] = _no_progress,
    steps: tuple[tuple[str, str], ...] = CFAST_STEPS,
) -> CfastCustomerResult:
    """The company's customer, billing point and site: ids known in our database (`known`) are used as they
    are, missing ones are fetched or created and saved."""
    (customer_step, customer_key), (point_step, point_key), (site_step, site_key) = steps
    customer_id = known.customer_id if known is not None else ""
    if not customer_id:
        progress(BusinessStatus.CREATING_CUSTOMER, f"Compte client CFAST pour {company.customer_name}")
        customer = await external(
            customer_step,
            names.CFAST_ENSURE_CUSTOMER,
            EnsureCfastCustomer(
                idempotency_key=f"{key_base}:{customer_key}",
                customer_name=company.customer_name,
                customer_reference=company.customer_reference,
                siret=company.siret,
                vat_number=company.vat_number,
            ),
        )
        customer_id = customer.object_id
    progress(BusinessStatus.CREATING_BILLING_POINT, f"Site de facturation « {company.billing_site_label} »")
    billing_point = await external(
        point_step,
        names.CFAST_ENSURE_BILLING_POINT,
        EnsureCfastBillingPoint(
            idempotency_key=f"{key_base}:{point_key}",
            customer_id=customer_id,
            label=company.billing_site_label,
            address=company.billing_address,
            known_billing_point_id=(known.billing_point_id or None) if known is not None else None,
        ),
    )
    progress(BusinessStatus.CREATING_SITE, f"Parc « {company.parc_label} »")
    site = await external(
        site_step,
        names.CFAST_ENSURE_SITE,
        EnsureCfastSite(
            idempotency_key=f"{key_base}:{site_key}",
            billing_point_id=billing_point.object_id,
            label=company.parc_label,
            parc_type=company.parc_type,
            known_site_id=(known.site_id or None) if known is not None else None,
        ),
    )
    ids = CfastCustomerResult(customer_id=customer_id, billing_point_id=billing_point.object_id, site_id=site.object_id)
    await save(
        SaveCfastIds(
            org_id=company.org_id,
            company_id=company.company_id,
            billing_site_id=company.billing_site_id,
            parc_id=company.parc_id,
            **ids.model_dump(),
        )
    )
    return ids


@workflow.defn
class CfastCustomerWorkflow:
    def __init__(self) -> None:
        self.status = BusinessStatus.STARTING

    @workflow.query
    def business_status(self) -> str:
        return self.status

    def _set_status(self, status: BusinessStatus, details: str) -> None:
        self.status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status)])
        workflow.set_current_details(details)

    async def _database(self, activity: str, arg: object, *, local: bool) -> None:
        if local:
            await saga.local_step(activity, arg)
        else:
            await saga.call(activity, arg, timeout=policies.DATABASE_TIMEOUT, retry=policies.DATABASE_RETRY)

    @workflow.run
    async def run(self, data: CfastCustomerInput) -> CfastCustomerResult:
        wf_id = workflow.info().workflow_id
        local = workflow.patched(SAGA_KIT_PATCH)
        scope = saga.MajScope(org_id=data.org_id, company_id=data.company_id)

        async def external(step: str, activity: str, request: object) -> ExternalCallResult:
            async def recorder(**fields: Any) -> None:
                await saga.record(scope, f"{wf_id}:{step}", ExternalSystem.CFAST, step, local=local, **fields)

            return await saga.external(recorder, activity, request, ExternalCallResult)

        async def save(ids: SaveCfastIds) -> None:
            await self._database(names.COMPANY_SAVE_CFAST_IDS, ids, local=local)

        try:
            result = await ensure_cfast_hierarchy(external, save, wf_id, data, progress=self._set_status)
        except ActivityError as err:
            reason = saga.reason_of(err)
            self._set_status(BusinessStatus.FAILED, f"Échec CFAST : {reason}")
            await self._database(
                names.COMPANY_MARK_CFAST_FAILED,
                MarkCfastFailed(org_id=data.org_id, company_id=data.company_id, reason=reason),
                local=local,
            )
            raise ApplicationError(
                f"CFAST customer creation failed: {reason}", type=ErrorCode.CUSTOMER_SYNC_FAILED
            ) from err
        self._set_status(BusinessStatus.SYNCED, f"Client CFAST {result.customer_id} prêt")
        return result
