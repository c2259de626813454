"""First usage seen in the OCS (`first-usage-scan`, run by a Temporal Schedule): a SIM `ready_for_activation`
whose plan balance dropped below the plan's allowance becomes `active`; then every first usage not yet
announced — whatever saw it: this scan, an AccountStatus file, a bulk "refresh usage" — is published as
`sim_card.first_usage`, once per SIM.

Pages of `batch_size` SIMs by ICCID; after `PAGES_PER_RUN` pages the scan continues as new with its cursor
and totals, so its history stays short however many SIMs wait.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.errors import ErrorCode, code_of
    from domain.usage_contracts import (
        FirstUsageCheck,
        FirstUsageChecked,
        FirstUsagePublished,
        FirstUsageScan,
        FirstUsageScanResult,
        PublishFirstUsage,
    )
    from workflows import _policies as policies
    from workflows import activity_names as names

SCHEDULE_ID = "first-usage-scan"
ACTOR = "ocs:first-usage-scan"
PAGES_PER_RUN = 20
PUBLISH_PAGES = 20  # at most 20 × 100 events per call; the rest goes out with the next scan


def failure(err: ActivityError, default: ErrorCode) -> ApplicationError:
    """The workflow's failure, carrying the activity's catalogue code (`default` for a timeout)."""
    cause = err.cause
    code = code_of(err) if isinstance(cause, ApplicationError) and cause.type else default
    return ApplicationError(str(cause or err), type=code, non_retryable=True)


async def publish_first_usage_events(org_id: str | None) -> int:
    """Publishes the first usages not yet announced (of `org_id`, or of every organisation)."""
    published = 0
    for _ in range(PUBLISH_PAGES):
        page = await workflow.execute_activity(
            names.USAGE_PUBLISH_FIRST_USAGE,
            PublishFirstUsage(org_id=org_id),
            result_type=FirstUsagePublished,
            start_to_close_timeout=policies.BATCH_TIMEOUT,
            heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
            retry_policy=policies.EXTERNAL_CALL_RETRY,
        )
        published += page.published
        if not page.more:
            break
    return published


@workflow.defn
class FirstUsageScanWorkflow:
    @workflow.run
    async def run(self, scan: FirstUsageScan) -> FirstUsageScanResult:
        checked, activated, published = scan.checked, scan.activated, scan.published
        cursor = scan.after_iccid
        try:
            for _ in range(PAGES_PER_RUN):
                page = await workflow.execute_activity(
                    names.USAGE_CHECK_FIRST_USAGE,
                    FirstUsageCheck(
                        org_id=scan.org_id,
                        after_iccid=cursor,
                        limit=scan.batch_size,
                        actor=ACTOR,
                        request_prefix=workflow.info().workflow_id,
                    ),
                    result_type=FirstUsageChecked,
                    start_to_close_timeout=policies.BATCH_TIMEOUT,
                    heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                    retry_policy=policies.EXTERNAL_CALL_RETRY,
                )
                checked += page.checked
                activated += page.activated
                cursor = page.last_iccid
                if page.activated:
                    published += await publish_first_usage_events(scan.org_id)
                workflow.set_current_details(f"{checked} SIM lue(s), {activated} première(s) utilisation(s)")
                if not page.more:
                    break
            else:
                workflow.continue_as_new(
                    scan.model_copy(
                        update={
                            "after_iccid": cursor,
                            "checked": checked,
                            "activated": activated,
                            "published": published,
                        }
                    )
                )
            published += await publish_first_usage_events(scan.org_id)
        except ActivityError as err:
            raise failure(err, ErrorCode.USAGE_SCAN_FAILED) from err
        workflow.set_current_details(
            f"{checked} SIM lue(s), {activated} première(s) utilisation(s), {published} événement(s) publié(s)"
        )
        return FirstUsageScanResult(checked=checked, activated=activated, published=published)
