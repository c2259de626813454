"""Search attributes on every workflow, so staff find any process by ICCID or MSISDN in the Temporal UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

ORG_ID = SearchAttributeKey.for_keyword("OrgId")
COMPANY_ID = SearchAttributeKey.for_keyword("CompanyId")
ICCID = SearchAttributeKey.for_keyword("Iccid")
MSISDN = SearchAttributeKey.for_keyword("Msisdn")
BUSINESS_STATUS = SearchAttributeKey.for_keyword("BusinessStatus")

ALL_KEYS = (ORG_ID, COMPANY_ID, ICCID, MSISDN, BUSINESS_STATUS)


def initial_attributes(
    *, org_id: str, company_id: str | None = None, iccid: str | None = None, msisdn: str | None = None, status: str
) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(ORG_ID, org_id), SearchAttributePair(BUSINESS_STATUS, status)]
    if company_id:
        pairs.append(SearchAttributePair(COMPANY_ID, company_id))
    if iccid:
        pairs.append(SearchAttributePair(ICCID, iccid))
    if msisdn:
        pairs.append(SearchAttributePair(MSISDN, msisdn))
    return TypedSearchAttributes(pairs)
