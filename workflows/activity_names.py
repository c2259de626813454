"""Names of the activities workflows call. Workflows refer to activities by name so they never import
the modules that do I/O; the activity classes register themselves under these names."""

from __future__ import annotations

CFAST_ENSURE_CUSTOMER = "cfast.ensure_customer"
CFAST_ENSURE_BILLING_POINT = "cfast.ensure_billing_point"
CFAST_ENSURE_SITE = "cfast.ensure_site"

RECORD_UPDATE = "records.record_update"
COMPANY_SAVE_CFAST_IDS = "companies.save_cfast_ids"
COMPANY_MARK_CFAST_FAILED = "companies.mark_cfast_failed"
