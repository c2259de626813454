"""AccountStatus file import `account-status/{org}/{sha256}` (seed 002: the operator's hourly summary of
the lines): the same file is applied once per organisation (REJECT_DUPLICATE on an id derived from its
content, and the stored import answers its counts if it runs again). Each row records the SIM's usage; a
first usage turns a `ready_for_activation` SIM `active`, and its `sim_card.first_usage` event is published.
Rows naming a SIM the organisation does not own are reported, never applied.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.enums import BusinessStatus
    from domain.errors import ErrorCode
    from domain.usage_contracts import AccountStatusImportInput, AccountStatusImportResult, ApplyAccountStatus
    from workflows import _policies as policies
    from workflows import activity_names as names
    from workflows._search import BUSINESS_STATUS
    from workflows.first_usage import failure, publish_first_usage_events


def workflow_id(org_id: str, sha256: str) -> str:
    return f"account-status/{org_id}/{sha256}"


@workflow.defn
class AccountStatusImportWorkflow:
    @workflow.run
    async def run(self, data: AccountStatusImportInput) -> AccountStatusImportResult:
        try:
            applied = await workflow.execute_activity(
                names.USAGE_APPLY_ACCOUNT_STATUS,
                ApplyAccountStatus(
                    org_id=data.org_id, import_id=data.import_id, actor=data.actor, chunk_rows=data.chunk_rows
                ),
                result_type=AccountStatusImportResult,
                start_to_close_timeout=policies.BATCH_TIMEOUT,
                heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                retry_policy=policies.DATABASE_RETRY,
            )
            workflow.set_current_details(
                f"{applied.applied}/{applied.rows} ligne(s) appliquée(s), {applied.activated} SIM activée(s)"
            )
            published = await publish_first_usage_events(data.org_id)
        except ActivityError as err:
            workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(BusinessStatus.FAILED)])
            raise failure(err, ErrorCode.USAGE_IMPORT_FAILED) from err
        result: AccountStatusImportResult = applied.model_copy(update={"published": published})
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(BusinessStatus.COMPLETED)])
        workflow.set_current_details(
            f"{result.rows} ligne(s) : {result.applied} appliquée(s), {result.activated} SIM activée(s), "
            f"{result.unknown} inconnue(s), {result.errors} en erreur"
        )
        return result
