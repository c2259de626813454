"""Inputs and results of the wallet funding workflow (`wallet-funding/{org}/{funding_id}`) and its activities.
Frozen pydantic models; new fields always get defaults so that running histories still decode."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from domain.contracts import CardPayer, Contract
from domain.enums import FundingStatus

# Terminal states of a funding: `succeeded` (charged and credited), `failed` (nothing charged), `refunded`
# (charged, the credit could not be written, the charge refunded), `needs_attention` (the refund failed).
FUNDING_TERMINAL_STATUSES = (
    FundingStatus.SUCCEEDED,
    FundingStatus.FAILED,
    FundingStatus.REFUNDED,
    FundingStatus.NEEDS_ATTENTION,
)


def funding_workflow_id(org_id: str, funding_id: str) -> str:
    return f"wallet-funding/{org_id}/{funding_id}"


class WalletFundingInput(Contract):
    funding_id: str
    org_id: str
    company_id: str
    wallet_id: str
    amount_minor: int
    currency: str = "EUR"
    # How long a charge whose outcome is unknown is retried under its key before the refund settles it.
    charge_window_s: int = 600


class WalletFundingReceipt(Contract):
    funding_id: str
    workflow_id: str
    status: str  # pending | charging | charged | succeeded | failed | refunded | needs_attention
    amount_minor: int
    currency: str
    payment_reference: str | None = None
    refund_reference: str | None = None
    ledger_reference: str | None = None
    failure_reason: str | None = None


class FundingResolution(Contract):
    """A staff decision on a funding whose refund failed."""

    action: str  # retry_refund | refunded_manually
    note: str
    actor: str


class FundingRef(Contract):
    funding_id: str
    org_id: str


class FundingCharge(Contract):
    funding_id: str
    org_id: str
    idempotency_key: str
    amount_minor: int
    currency: str
    payer: CardPayer


class FundingRefund(Contract):
    funding_id: str
    org_id: str
    idempotency_key: str
    payment_reference: str  # "" when the charge's answer was lost: the refund finds the charge by the funding id
    amount_minor: int
    currency: str
    payer: CardPayer


class FundingCredit(Contract):
    funding_id: str
    org_id: str
    reference: str  # `{workflow_id}:credit`, unique in the ledger


class FundingCredited(Contract):
    ledger_reference: str
    entry_id: int
    balance_minor: int


class FundingStatusUpdate(Contract):
    funding_id: str
    org_id: str = ""  # the tenant the workflow runs for: a funding of another one is refused
    status: str | None = None
    payment_reference: str | None = None
    refund_reference: str | None = None
    ledger_reference: str | None = None
    failure_reason: str | None = None


class FundingMoneyOutcome(Contract):
    reference: str
    sent: dict[str, Any] = Field(default_factory=dict)
    answer: dict[str, Any] = Field(default_factory=dict)
