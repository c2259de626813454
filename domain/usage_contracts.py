"""Inputs and results of the usage workflows and activities: the AccountStatus file import, the OCS
first-usage scan and the first-usage event outbox. Frozen pydantic models; new fields always get defaults
so that running histories still decode."""

from __future__ import annotations

from domain.contracts import Contract


def ocs_shows_usage(plan_balance_bytes: int | None, plan_allowance_bytes: int | None) -> bool:
    """The plan allowance is consumed first (SPEC §8): a plan balance below the allowance granted at
    activation means data was used. A missing balance or plan tells nothing. (Pure: workflows use it too.)"""
    return (
        plan_balance_bytes is not None
        and plan_allowance_bytes is not None
        and plan_balance_bytes < plan_allowance_bytes
    )


# --- AccountStatus file ----------------------------------------------------------------------------


class AccountStatusImportInput(Contract):
    """`account-status/{org}/{sha256}`: the file is stored (`account_status_imports`) before the start."""

    org_id: str
    import_id: str
    actor: str = "account-status"
    chunk_rows: int = 500


class AccountStatusImportResult(Contract):
    import_id: str
    rows: int = 0  # data rows in the file
    applied: int = 0  # usage recorded on a SIM of the organisation
    activated: int = 0  # first usage: `ready_for_activation` → `active`
    unknown: int = 0  # ICCID not owned by the organisation: reported, untouched
    errors: int = 0  # invalid rows: reported
    published: int = 0  # `sim_card.first_usage` events published by this run


class ApplyAccountStatus(Contract):
    org_id: str
    import_id: str
    actor: str
    chunk_rows: int = 500


# --- first usage in the OCS ------------------------------------------------------------------------


class FirstUsageScan(Contract):
    """One pass over the SIMs waiting for their first usage (`first-usage-scan`, run by a Schedule);
    `after_iccid` and the totals carry the pass over a continue-as-new."""

    org_id: str | None = None
    batch_size: int = 100
    after_iccid: str | None = None
    checked: int = 0
    activated: int = 0
    published: int = 0


class FirstUsageScanResult(Contract):
    checked: int = 0
    activated: int = 0
    published: int = 0


class FirstUsageCheck(Contract):
    org_id: str | None = None
    after_iccid: str | None = None
    limit: int = 100
    actor: str
    request_prefix: str


class FirstUsageChecked(Contract):
    checked: int = 0
    activated: int = 0
    missing_accounts: int = 0
    last_iccid: str | None = None
    more: bool = False


# --- the first-usage event outbox ------------------------------------------------------------------


class PublishFirstUsage(Contract):
    org_id: str | None = None
    limit: int = 100


class FirstUsagePublished(Contract):
    published: int = 0
    more: bool = False
