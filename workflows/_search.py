"""Search attributes on every workflow, so staff find any process by ICCID or by line number in the Temporal UI.

A line number is personal data, and visibility stores search attributes in clear and shows them in the UI:
workflows are indexed by `MsisdnHash`, a keyed hash of the E.164 number (`domain.security.MsisdnIndex`),
computed where the key is (the API and the activities) and handed to the workflows. `Msisdn` stays
registered for the workflows that set it before; no new workflow writes it."""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

ORG_ID = SearchAttributeKey.for_keyword("OrgId")
COMPANY_ID = SearchAttributeKey.for_keyword("CompanyId")
ICCID = SearchAttributeKey.for_keyword("Iccid")
MSISDN = SearchAttributeKey.for_keyword("Msisdn")  # no longer written: see the module docstring
MSISDN_HASH = SearchAttributeKey.for_keyword("MsisdnHash")
BUSINESS_STATUS = SearchAttributeKey.for_keyword("BusinessStatus")

# Workflows that index a line by `MsisdnHash` instead of `Msisdn` (histories recorded before replay the old upsert).
MSISDN_HASH_PATCH = "msisdn-hash-search-attribute"

ALL_KEYS = (ORG_ID, COMPANY_ID, ICCID, MSISDN, MSISDN_HASH, BUSINESS_STATUS)


def initial_attributes(
    *,
    org_id: str,
    company_id: str | None = None,
    iccid: str | None = None,
    msisdn_hash: str | None = None,
    status: StrEnum,
    legacy_msisdn: str | None = None,
) -> TypedSearchAttributes:
    """`legacy_msisdn` (the clear number) only where a workflow replays what it started before `MsisdnHash`."""
    pairs = [SearchAttributePair(ORG_ID, org_id), SearchAttributePair(BUSINESS_STATUS, status)]
    if company_id:
        pairs.append(SearchAttributePair(COMPANY_ID, company_id))
    if iccid:
        pairs.append(SearchAttributePair(ICCID, iccid))
    if msisdn_hash:
        pairs.append(SearchAttributePair(MSISDN_HASH, msisdn_hash))
    if legacy_msisdn:
        pairs.append(SearchAttributePair(MSISDN, legacy_msisdn))
    return TypedSearchAttributes(pairs)
