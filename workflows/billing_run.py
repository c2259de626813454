"""The monthly billing run. A Temporal Schedule (`billing-run-monthly`, 1st of the month) starts
`MonthlyBillingWorkflow`, which starts one `BillingRunWorkflow` per organisation, id
`billing-run/{org}/{YYYY-MM}`: it issues one invoice per company over the uninvoiced transactions of the
period. Each invoice is written once per (organisation, period, company) reference, so a run started again
for the same period — by the Schedule catching up, or by hand — answers the documents already issued.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from domain.billing_contracts import (
        BillingCompanies,
        BillingCompaniesRequest,
        BillingOrganisations,
        BillingRunInput,
        BillingRunResult,
        BillingScan,
        BillingScanResult,
        IssuedInvoice,
        IssuePeriodInvoice,
        Period,
    )
    from workflows import _policies as policies
    from workflows import activity_names as names

SCHEDULE_ID = "billing-run-monthly"


def workflow_id(org_id: str, period: str) -> str:
    return f"billing-run/{org_id}/{period}"


@workflow.defn
class BillingRunWorkflow:
    @workflow.run
    async def run(self, data: BillingRunInput) -> BillingRunResult:
        companies: BillingCompanies = await workflow.execute_activity(
            names.BILLING_COMPANIES_TO_BILL,
            BillingCompaniesRequest(org_id=data.org_id, period=data.period),
            result_type=BillingCompanies,
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )
        issued: list[IssuedInvoice] = []
        for company_id in companies.company_ids:
            invoice: IssuedInvoice = await workflow.execute_activity(
                names.BILLING_ISSUE_PERIOD_INVOICE,
                IssuePeriodInvoice(org_id=data.org_id, company_id=company_id, period=data.period),
                result_type=IssuedInvoice,
                start_to_close_timeout=policies.DATABASE_TIMEOUT,
                retry_policy=policies.DATABASE_RETRY,
            )
            if invoice.invoice_id is not None:
                issued.append(invoice)
            workflow.set_current_details(f"{len(issued)} facture(s) émise(s) pour {data.period}")
        return BillingRunResult(org_id=data.org_id, period=data.period, invoices=issued)


@workflow.defn
class MonthlyBillingWorkflow:
    @workflow.run
    async def run(self, scan: BillingScan) -> BillingScanResult:
        period = scan.period or Period.previous(workflow.now()).label
        organisations: BillingOrganisations = await workflow.execute_activity(
            names.BILLING_LIST_ORGANISATIONS,
            scan,
            result_type=BillingOrganisations,
            start_to_close_timeout=policies.DATABASE_TIMEOUT,
            retry_policy=policies.DATABASE_RETRY,
        )
        runs: list[str] = []
        for org_id in organisations.org_ids:
            run_id = workflow_id(org_id, period)
            try:
                await workflow.execute_child_workflow(
                    BillingRunWorkflow.run,
                    BillingRunInput(org_id=org_id, period=period),
                    id=run_id,
                    # A period already run (or running) is not run again by the Schedule.
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            except WorkflowAlreadyStartedError:
                pass
            runs.append(run_id)
        return BillingScanResult(period=period, runs=runs)
