"""A `CfastCustomerWorkflow` whose command sequence changed without `workflow.patched()`: it creates the site
before the customer. Replaying a committed history with it must fail — proof that the replay test bites."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.contracts import CfastCustomerInput, EnsureCfastSite
    from workflows import _policies as policies
    from workflows import activity_names as names


@workflow.defn(name="CfastCustomerWorkflow")
class ReorderedCfastCustomerWorkflow:
    @workflow.run
    async def run(self, data: CfastCustomerInput) -> None:
        await workflow.execute_activity(
            names.CFAST_ENSURE_SITE,
            EnsureCfastSite(idempotency_key="x", billing_point_id="x", label=data.parc_label),
            start_to_close_timeout=policies.EXTERNAL_CALL_TIMEOUT,
        )
