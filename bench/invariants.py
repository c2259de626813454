"""Money invariants of top-ups (SPEC §7, I1–I6), computed from what the outside systems actually hold:
localstripe's PaymentIntents, charges and refunds (with Stripe's amounts), the OCS simulator's balances and
call records, CFAST's one-off articles, and our wallet ledger — never from our own status column or amounts.

- I1 every top-up is in a terminal state (completed | refunded | failed | needs_attention)
- I2 at most one successful charge per top-up
- I3 at most one OCS credit per top-up
- I4 at most one refund per top-up, and a refunded top-up keeps no credit
- I5 never charged ∧ ¬credited ∧ ¬refunded in a terminal state (needs_attention is reported, not excused)
- I6 Σcharged − Σrefunded = Σ(credited top-up amounts), to the cent, per organisation, with the amounts
  the paying system reports; a top-up charged another amount than its own, or refunded in part, is flagged
- stray: a succeeded PaymentIntent of a customer in scope that belongs to no top-up
- audit: a completed top-up has exactly one charge row in the audit log, a refunded one exactly one
  refund row (or a staff confirmation); no money movement is audited twice

Wallet fundings by card (F1–F5), from localstripe's PaymentIntents and refunds (by the `wallet_funding_id` in
their metadata) and the ledger's `card_funding` credits:

- F1 every funding is in a terminal state (succeeded | failed | refunded | needs_attention)
- F2 a succeeded funding has exactly one charge and one ledger credit, of its amount, and no refund
- F3 a failed or refunded funding kept no money: no charge, or its charge refunded in full, and no credit;
  never charged ∧ ¬credited ∧ ¬refunded in a terminal state (needs_attention is reported, not excused)
- F4 no ledger credit without a charge: every `card_funding` entry belongs to a charged funding
- F5 Σcharged − Σrefunded = Σcredited, to the cent, per organisation
- F6 our books follow: a succeeded funding has one transaction of its amount (`billed_by=none`, on no
  document) and no reversal; a refunded one its charge, the reversal and one `Refund` row; a failed one none

Subscription renewals (R1–R5, `check_renewals`), per (subscription, period), from localstripe's
PaymentIntents (by the `subscription_id` and `period` in their metadata), the wallet ledger's `renewal_debit`
entries and CFAST's articles (by the charge key `{wf}:period-{n}:charge`, retries included), the OCS
simulator's applied `SetBalance` calls and the balances its accounts hold, and our transactions:

- R1 a period is charged at most once
- R2 every period the subscription has reached (1..its period) is charged exactly once
- R3 every charge has its OCS grant: the period's balance applied once, and held by the line's account
- R4 every charge has its transaction (reference: the period's first charge key) of the charged amount
- R5 every charge by card or wallet has its receipt: a paid invoice of the charged amount (reference: the
  period's first charge key + `:invoice`); on account CFAST bills it and simflow issues none
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.enums import InvoiceStatus, PaymentMethod
from domain.models import (
    AuditLog,
    Company,
    EndUser,
    Invoice,
    Line,
    Refund,
    Subscription,
    TopUp,
    Transaction,
    Wallet,
    WalletEntry,
    WalletFunding,
)
from domain.services.wallets import FUNDING_ENTRY_KIND
from domain.subscription_contracts import charge_key
from domain.wallet_contracts import FUNDING_TERMINAL_STATUSES
from infra.db import create_engine, create_sessionmaker

MANUAL_REFUND = "topup.refund_confirmed_manually"
FUNDING_MANUAL_REFUND = "wallet_funding.refund_confirmed_manually"
MONEY_AUDIT_ACTIONS = (
    "topup.charge",
    "topup.refund",
    MANUAL_REFUND,
    "wallet_funding.charge",
    "wallet_funding.refund",
    FUNDING_MANUAL_REFUND,
)
PAID_BY = {"card": "Stripe charged", "wallet": "the wallet was debited", "account": "CFAST billed"}


@dataclass
class TopUpFacts:
    topup_id: str
    org_id: str
    status: str
    method: str
    amount_minor: int
    charges: int = 0
    refunds: int = 0
    charged_minor: int = 0  # as the paying system reports it (Stripe, the wallet ledger, CFAST)
    refunded_minor: int = 0
    credits_applied: int = 0
    credit_kept: bool = False
    manual_refund: bool = False
    audited_charges: int = 0
    audited_refunds: int = 0
    audited_manual: int = 0


@dataclass
class InvariantReport:
    topups: int
    violations: list[str] = field(default_factory=list)
    fundings: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    money: dict[str, dict[str, int]] = field(default_factory=dict)
    renewals: int = 0  # (subscription, period) pairs checked

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        statuses = " ".join(f"{k}={v}" for k, v in sorted(self.by_status.items()))
        verdict = "ok" if self.ok else f"broken ({len(self.violations)} violations)"
        parts = [f"topups={self.topups}", statuses]
        parts += [f"fundings={self.fundings}"] if self.fundings else []
        parts += [f"renewals={self.renewals}"] if self.renewals else []
        return " ".join(part for part in parts if part) + f" invariants={verdict}"


def list_all(http: httpx.Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["starting_after"] = after
        page = http.get(path, params=params).raise_for_status().json()
        items.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            return items
        after = page["data"][-1]["id"]


@dataclass
class StripeFacts:
    """What Stripe holds, per top-up id: succeeded charges and refunds, with Stripe's own amounts; and the
    succeeded PaymentIntents of the customers in scope that belong to no top-up."""

    charges: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    charged_minor: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refunds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refunded_minor: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stray: list[dict[str, Any]] = field(default_factory=list)
    # The same, per wallet funding id.
    funding_charges: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    funding_charged_minor: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    funding_refunds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    funding_refunded_minor: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Renewal charges: the amount of each succeeded one, per (subscription id, period).
    renewal_charges: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))


def stripe_facts(
    localstripe_url: str,
    api_key: str,
    *,
    topup_ids: set[str] | None = None,
    org_ids: set[str] | None = None,
    customers: set[str] | None = None,
    funding_ids: set[str] | None = None,
    subscription_ids: set[str] | None = None,
) -> StripeFacts:
    """Straight from localstripe: the amount of each succeeded charge (the Charge's, else the
    PaymentIntent's) and of each succeeded refund. A succeeded PaymentIntent is stray when it names no
    top-up of ours (`topup_ids`) while it is in scope: its customer is one of `customers` or its metadata
    names one of `org_ids` (everything when `org_ids` is None). Without `topup_ids`, any PaymentIntent that
    names a top-up counts for it."""
    facts = StripeFacts()
    with httpx.Client(base_url=localstripe_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as http:
        intents = {pi["id"]: pi for pi in list_all(http, "/v1/payment_intents")}
        charges = {ch["id"]: ch for ch in list_all(http, "/v1/charges")}
        for intent in intents.values():
            if intent.get("status") != "succeeded":
                continue
            metadata = intent.get("metadata") or {}
            topup_id = metadata.get("topup_id")
            if topup_id and (topup_ids is None or topup_id in topup_ids):
                facts.charges[topup_id] += 1
                facts.charged_minor[topup_id] += _charged_amount(intent, charges)
                continue
            funding_id = metadata.get("wallet_funding_id")
            if funding_id and (funding_ids is None or funding_id in funding_ids):
                facts.funding_charges[funding_id] += 1
                facts.funding_charged_minor[funding_id] += _charged_amount(intent, charges)
                continue
            subscription_id, period = metadata.get("subscription_id"), metadata.get("period")
            if subscription_id and period and (subscription_ids is None or subscription_id in subscription_ids):
                facts.renewal_charges[(subscription_id, int(period))].append(_charged_amount(intent, charges))
                continue
            in_scope = (
                org_ids is None or metadata.get("org_id") in org_ids or intent.get("customer") in (customers or set())
            )
            if in_scope:
                facts.stray.append(intent)
        for refund in list_all(http, "/v1/refunds"):
            intent_id = refund.get("payment_intent") or (charges.get(refund.get("charge") or "") or {}).get(
                "payment_intent"
            )
            refunded_intent = intents.get(intent_id or "")
            held = (refunded_intent.get("metadata") or {}) if refunded_intent else {}
            topup_id, funding_id = held.get("topup_id"), held.get("wallet_funding_id")
            if refund.get("status") != "succeeded":
                continue
            if topup_id:
                facts.refunds[topup_id] += 1
                facts.refunded_minor[topup_id] += int(refund.get("amount") or 0)
            elif funding_id:
                facts.funding_refunds[funding_id] += 1
                facts.funding_refunded_minor[funding_id] += int(refund.get("amount") or 0)
    return facts


def _charged_amount(intent: dict[str, Any], charges: dict[str, dict[str, Any]]) -> int:
    latest = intent.get("latest_charge")
    charge = charges.get(latest if isinstance(latest, str) else (latest or {}).get("id", ""))
    if charge is not None and charge.get("status") == "succeeded":
        return int(charge.get("amount_captured") or charge["amount"])
    return int(intent.get("amount_received") or intent["amount"])


def ocs_facts(ocs_base_url: str, tenant: str, accounts: set[str]) -> tuple[dict[str, int], set[str]]:
    """Applied SetBalance calls per balance id, and the balance ids held now."""
    applied_by_account, kept_by_account = ocs_balances(ocs_base_url, tenant, accounts)
    applied: dict[str, int] = defaultdict(int)
    for (_account, balance_id), count in applied_by_account.items():
        applied[balance_id] += count
    return applied, {balance_id for _account, balance_id in kept_by_account}


def ocs_balances(
    ocs_base_url: str, tenant: str, accounts: set[str]
) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    """Applied SetBalance calls per (account, balance id), and the (account, balance id) pairs held now by
    `accounts`."""
    applied: dict[tuple[str, str], int] = defaultdict(int)
    kept: set[tuple[str, str]] = set()
    with httpx.Client(base_url=ocs_base_url, timeout=30) as http:
        for call in http.get("/_sim/calls", params={"op": "APIerSv1.SetBalance"}).raise_for_status().json():
            if call.get("applied"):
                params = (call.get("request") or {}).get("params") or {}
                balance_id = (params.get("Balance") or {}).get("ID")
                if balance_id:
                    applied[(params.get("Account") or "", balance_id)] += 1
        for account in accounts:
            reply = http.post(
                "/jsonrpc",
                json={"method": "APIerSv2.GetAccount", "params": [{"Tenant": tenant, "Account": account}], "id": 1},
            ).json()
            for balances in ((reply.get("result") or {}).get("BalanceMap") or {}).values():
                kept.update((account, b["ID"]) for b in balances if b.get("ID"))
    return applied, kept


def cfast_facts(cfast_url: str, service_ids: set[str]) -> dict[str, tuple[int, int, int, int]]:
    """Per top-up reference: (billed articles with a price, cancelled ones, billed amount, cancelled amount)."""
    facts: dict[str, tuple[int, int, int, int]] = {}
    with httpx.Client(base_url=cfast_url, timeout=30) as http:
        for service_id in service_ids:
            response = http.get(f"/services/{service_id}")
            if response.status_code == 404:
                continue
            for article in response.raise_for_status().json().get("oneOffArticles", []):
                if article.get("unitPrice", 0) <= 0:
                    continue
                amount = int(article["unitPrice"]) * int(article.get("quantity") or 1)
                cancelled = article.get("status") == "cancelled"
                billed, n_cancelled, billed_minor, cancelled_minor = facts.get(article["reference"], (0, 0, 0, 0))
                facts[article["reference"]] = (
                    billed + 1,
                    n_cancelled + cancelled,
                    billed_minor + amount,
                    cancelled_minor + (amount if cancelled else 0),
                )
    return facts


async def check_invariants(
    *,
    database_url: str,
    localstripe_url: str,
    stripe_api_key: str,
    ocs_base_url: str,
    ocs_tenant: str,
    cfast_url: str,
    org_ids: set[str] | None = None,
) -> InvariantReport:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            query = select(TopUp)
            if org_ids is not None:
                query = query.where(TopUp.org_id.in_(org_ids))
            topups = list((await session.execute(query)).scalars())
            lines = {
                line.id: line
                for line in (
                    await session.execute(select(Line).where(Line.id.in_({t.line_id for t in topups})))
                ).scalars()
            }
            scope_customers: set[str] = set()
            if org_ids is not None:
                for model in (Company, EndUser):
                    scope_customers.update(
                        c
                        for c in (
                            await session.execute(
                                select(model.stripe_customer_id).where(
                                    model.org_id.in_(org_ids), model.stripe_customer_id.is_not(None)
                                )
                            )
                        ).scalars()
                        if c
                    )
            entries = list(
                (
                    await session.execute(
                        select(WalletEntry).where(WalletEntry.kind.in_(("topup_debit", "topup_refund")))
                    )
                ).scalars()
            )
            funding_query = select(WalletFunding)
            credit_query = select(WalletEntry, Wallet.org_id).join(Wallet, Wallet.id == WalletEntry.wallet_id)
            credit_query = credit_query.where(WalletEntry.kind == FUNDING_ENTRY_KIND)
            if org_ids is not None:
                funding_query = funding_query.where(WalletFunding.org_id.in_(org_ids))
                credit_query = credit_query.where(Wallet.org_id.in_(org_ids))
            fundings = list((await session.execute(funding_query)).scalars())
            funding_credits = list((await session.execute(credit_query)).all())
            booked = {
                f"{f.workflow_id}:{suffix}" for f in fundings for suffix in ("transaction", "transaction-reversal")
            }
            funding_transactions = {
                t.reference: t
                for t in (await session.execute(select(Transaction).where(Transaction.reference.in_(booked)))).scalars()
            }
            refund_refs = {f"{f.workflow_id}:refund" for f in fundings}
            funding_refunds = set(
                (await session.execute(select(Refund.reference).where(Refund.reference.in_(refund_refs)))).scalars()
            )
            audited = list(
                (
                    await session.execute(
                        select(AuditLog.target, AuditLog.action).where(AuditLog.action.in_(MONEY_AUDIT_ACTIONS))
                    )
                ).all()
            )
    finally:
        await engine.dispose()

    stripe = stripe_facts(
        localstripe_url,
        stripe_api_key,
        topup_ids={t.id for t in topups},
        org_ids=org_ids,
        customers=scope_customers,
        funding_ids={f.id for f in fundings},
    )
    applied, kept = ocs_facts(
        ocs_base_url, ocs_tenant, {line.ocs_account for line in lines.values() if line.ocs_account}
    )
    cfast = cfast_facts(cfast_url, {line.cfast_service_id for line in lines.values() if line.cfast_service_id})
    wallet_by_ref: dict[str, int] = defaultdict(int)
    wallet_minor_by_ref: dict[str, int] = defaultdict(int)
    for entry in entries:
        wallet_by_ref[entry.reference] += 1
        wallet_minor_by_ref[entry.reference] += abs(entry.amount_minor)

    audit_counts: dict[tuple[str, str], int] = defaultdict(int)
    for target, action in audited:
        audit_counts[(target or "", action)] += 1

    report = InvariantReport(topups=len(topups))
    money: dict[str, dict[str, int]] = defaultdict(lambda: {"charged": 0, "refunded": 0, "credited": 0})
    for topup in topups:
        facts = TopUpFacts(topup.id, topup.org_id, topup.status, topup.payment_method.value, topup.amount_minor)
        balance = f"topup-{topup.id}"
        facts.credits_applied = applied.get(balance, 0)
        facts.credit_kept = balance in kept
        facts.manual_refund = topup.status == "refunded" and (topup.resolution_note or "") != ""
        target = f"recharge:{topup.id}"
        facts.audited_charges = audit_counts[(target, "topup.charge")]
        facts.audited_refunds = audit_counts[(target, "topup.refund")]
        facts.audited_manual = audit_counts[(target, MANUAL_REFUND)]
        if topup.payment_method is PaymentMethod.CARD:
            facts.charges, facts.refunds = stripe.charges.get(topup.id, 0), stripe.refunds.get(topup.id, 0)
            facts.charged_minor = stripe.charged_minor.get(topup.id, 0)
            facts.refunded_minor = stripe.refunded_minor.get(topup.id, 0)
        elif topup.payment_method is PaymentMethod.WALLET:
            facts.charges = wallet_by_ref.get(f"{topup.workflow_id}:charge", 0)
            facts.refunds = wallet_by_ref.get(f"{topup.workflow_id}:refund", 0)
            facts.charged_minor = wallet_minor_by_ref.get(f"{topup.workflow_id}:charge", 0)
            facts.refunded_minor = wallet_minor_by_ref.get(f"{topup.workflow_id}:refund", 0)
        else:
            billed = cfast.get(f"topup:{topup.id}", (0, 0, 0, 0))
            facts.charges, facts.refunds, facts.charged_minor, facts.refunded_minor = billed
        if facts.manual_refund and facts.refunds == 0:
            facts.refunds = 1  # confirmed by staff: made outside the systems we can read
            facts.refunded_minor = facts.charged_minor
        _check_one(facts, report)
        report.by_status[facts.status] = report.by_status.get(facts.status, 0) + 1
        m = money[facts.org_id]
        m["charged"] += facts.charged_minor
        m["refunded"] += facts.refunded_minor
        m["credited"] += facts.amount_minor if facts.credit_kept else 0
    for intent in stripe.stray:
        report.violations.append(
            f"stray PaymentIntent {intent['id']} ({intent.get('amount')} {intent.get('currency')}, customer "
            f"{intent.get('customer')}): succeeded, belongs to no top-up"
        )
    for org_id, m in money.items():
        if m["charged"] - m["refunded"] != m["credited"]:
            report.violations.append(
                f"I6 org {org_id}: charged {m['charged']} - refunded {m['refunded']} != credited {m['credited']}"
            )
    report.money = dict(money)
    _check_fundings(fundings, funding_credits, stripe, audit_counts, report)
    _check_funding_books(fundings, funding_transactions, funding_refunds, report)
    return report


def _check_fundings(
    fundings: list[WalletFunding],
    credits: list[Any],
    stripe: StripeFacts,
    audit_counts: dict[tuple[str, str], int],
    report: InvariantReport,
) -> None:
    """F1–F5 (module docstring): Stripe's and the ledger's view of every wallet funding in scope."""
    v = report.violations
    report.fundings = len(fundings)
    credits_by_ref: dict[str, list[int]] = defaultdict(list)
    for entry, _org_id in credits:
        credits_by_ref[entry.reference].append(entry.amount_minor)
    known_refs = {f"{f.workflow_id}:credit" for f in fundings}
    money: dict[str, dict[str, int]] = defaultdict(lambda: {"charged": 0, "refunded": 0, "credited": 0})
    for f in fundings:
        tag = f"funding {f.id} ({f.status})"
        charges, refunds = stripe.funding_charges.get(f.id, 0), stripe.funding_refunds.get(f.id, 0)
        charged, refunded = stripe.funding_charged_minor.get(f.id, 0), stripe.funding_refunded_minor.get(f.id, 0)
        credited = credits_by_ref.get(f"{f.workflow_id}:credit", [])
        manual = audit_counts[(f"wallet_funding:{f.id}", FUNDING_MANUAL_REFUND)] > 0
        if manual and refunds == 0:
            refunds, refunded = 1, charged  # confirmed by staff: made outside the systems we can read
        if f.status not in FUNDING_TERMINAL_STATUSES:
            v.append(f"F1 {tag}: not terminal")
        if charges > 1 or refunds > 1 or len(credited) > 1:
            v.append(f"F2 {tag}: {charges} charges, {refunds} refunds, {len(credited)} ledger credits")
        if f.status == "succeeded" and not (
            charges == 1 and refunds == 0 and credited == [f.amount_minor] and charged == f.amount_minor
        ):
            v.append(f"F2 {tag}: charged {charged} ({charges}×), credited {credited}, refunds {refunds}")
        if f.status in ("failed", "refunded") and (credited or charged - refunded != 0):
            v.append(f"F3 {tag}: charged {charged}, refunded {refunded}, credited {credited}")
        if f.status == "refunded" and not (charges == 1 and refunds == 1):
            v.append(f"F3 {tag}: refunded without a charge and its refund ({charges} charges, {refunds} refunds)")
        if f.status in FUNDING_TERMINAL_STATUSES and charges and not credited and not refunds:
            v.append(f"F3 {tag}: charged, not credited, not refunded")
        if credited and not charges:
            v.append(f"F4 {tag}: ledger credit {credited} without a charge")
        audited_charges = audit_counts[(f"wallet_funding:{f.id}", "wallet_funding.charge")]
        if f.status == "succeeded" and audited_charges != 1:
            v.append(f"audit {tag}: {audited_charges} charge rows")
        m = money[f.org_id]
        m["charged"] += charged
        m["refunded"] += refunded
        m["credited"] += sum(credited)
    for entry, org_id in credits:
        if entry.reference not in known_refs:
            v.append(f"F4 org {org_id}: ledger credit {entry.reference} ({entry.amount_minor}) belongs to no funding")
    for org_id, m in money.items():
        if m["charged"] - m["refunded"] != m["credited"]:
            v.append(f"F5 org {org_id}: charged {m['charged']} - refunded {m['refunded']} != credited {m['credited']}")


def _check_funding_books(
    fundings: list[WalletFunding], transactions: dict[str, Transaction], refunds: set[str], report: InvariantReport
) -> None:
    """F6 (module docstring): each funding's transactions and Refund row, against its outcome."""
    for f in fundings:
        tag = f"funding {f.id} ({f.status})"
        charge = transactions.get(f"{f.workflow_id}:transaction")
        reversal = transactions.get(f"{f.workflow_id}:transaction-reversal")
        refunded = f"{f.workflow_id}:refund" in refunds
        if charge is not None and (charge.billed_by != "none" or charge.invoice_id is not None):
            report.violations.append(f"F6 {tag}: its transaction is billed ({charge.billed_by}, {charge.invoice_id})")
        if f.status == "succeeded":
            ok = charge is not None and charge.retail_minor == f.amount_minor and reversal is None and not refunded
        elif f.status == "refunded":
            ok = (
                charge is not None
                and charge.retail_minor == f.amount_minor
                and reversal is not None
                and reversal.retail_minor == -f.amount_minor
                and refunded
            )
        elif f.status == "failed":
            ok = charge is None and reversal is None and not refunded
        else:
            ok = True  # needs_attention: charged, its refund pending (F3 reports it)
        if not ok:
            report.violations.append(
                f"F6 {tag}: transaction {charge.retail_minor if charge else None}, reversal "
                f"{reversal.retail_minor if reversal else None}, refund row {refunded}"
            )


def _check_one(f: TopUpFacts, report: InvariantReport) -> None:
    v = report.violations
    tag = f"top-up {f.topup_id} ({f.method}, {f.status})"
    if f.status not in TERMINAL:
        v.append(f"I1 {tag}: not terminal")
    if f.charges > 1:
        v.append(f"I2 {tag}: {f.charges} charges")
    if f.credits_applied > 1:
        v.append(f"I3 {tag}: {f.credits_applied} OCS credits")
    if f.refunds > 1:
        v.append(f"I4 {tag}: {f.refunds} refunds")
    if f.refunds and f.credit_kept:
        v.append(f"I4 {tag}: refunded but the credit is kept")
    if f.status in TERMINAL and f.charges and not f.credit_kept and not f.refunds:
        v.append(f"I5 {tag}: charged, not credited, not refunded")
    if f.status == "completed" and not (f.charges == 1 and f.credit_kept and not f.refunds):
        v.append(f"status {tag}: completed but charges={f.charges} kept={f.credit_kept} refunds={f.refunds}")
    if f.status == "failed" and f.charges - f.refunds != 0:
        v.append(f"status {tag}: failed but money was kept")
    if f.charges == 1 and f.charged_minor != f.amount_minor:
        v.append(f"amount {tag}: {PAID_BY[f.method]} {f.charged_minor}, the top-up's amount is {f.amount_minor}")
    if f.refunds and f.refunded_minor != f.charged_minor:
        v.append(f"amount {tag}: refunded {f.refunded_minor} of {f.charged_minor} charged")
    if max(f.audited_charges, f.audited_refunds, f.audited_manual) > 1:
        v.append(f"audit {tag}: {f.audited_charges} charge, {f.audited_refunds} refund rows, {f.audited_manual} manual")
    if f.status == "completed" and f.audited_charges != 1:
        v.append(f"audit {tag}: completed without its charge row")
    if f.status == "refunded" and not (f.audited_refunds or f.audited_manual):
        v.append(f"audit {tag}: refunded without its refund row")


PERIOD_OF_CHARGE_KEY = re.compile(r":period-(\d+):charge(?::retry-\d+)?$")
PERIOD_OF_BALANCE = re.compile(r"^plan-.+-period-(\d+)$")  # `period_balance_id`


@dataclass
class RenewalFacts:
    """One subscription as the outside systems hold it, per period: the amounts charged (Stripe, the
    wallet ledger or CFAST), the OCS grants applied and held, and our transaction's amount."""

    subscription_id: str
    method: str
    period: int  # the last period paid, as our row says
    charges: dict[int, list[int]] = field(default_factory=dict)
    grants_applied: dict[int, int] = field(default_factory=dict)
    grants_held: set[int] = field(default_factory=set)
    transactions: dict[int, int] = field(default_factory=dict)
    receipts: dict[int, int] = field(default_factory=dict)  # period -> total of its paid receipt


def check_renewal(f: RenewalFacts, report: InvariantReport) -> None:
    """R1–R5 (module docstring) for one subscription."""
    v = report.violations
    periods = set(range(1, f.period + 1)) | {p for p, amounts in f.charges.items() if amounts}
    for period in sorted(periods):
        report.renewals += 1
        tag = f"subscription {f.subscription_id} ({f.method}) period {period}"
        charged = f.charges.get(period, [])
        if len(charged) > 1:
            v.append(f"R1 {tag}: charged {len(charged)} times {charged}")
        if period <= f.period and not charged:
            v.append(f"R2 {tag}: renewed without a charge")
        if not charged:
            continue
        applied = f.grants_applied.get(period, 0)
        if applied != 1 or period not in f.grants_held:
            v.append(f"R3 {tag}: charged, OCS grant applied {applied}×, held {period in f.grants_held}")
        booked = f.transactions.get(period)
        if booked is None:
            v.append(f"R4 {tag}: charged {charged[0]}, no transaction")
        elif booked != charged[0]:
            v.append(f"R4 {tag}: charged {charged[0]}, transaction of {booked}")
        if f.method != PaymentMethod.ACCOUNT.value and f.receipts.get(period) != charged[0]:
            v.append(f"R5 {tag}: charged {charged[0]}, paid receipt of {f.receipts.get(period)}")


async def check_renewals(
    *,
    database_url: str,
    localstripe_url: str,
    stripe_api_key: str,
    ocs_base_url: str,
    ocs_tenant: str,
    cfast_url: str,
    org_ids: set[str],
) -> InvariantReport:
    """R1–R5 for every subscription of `org_ids` (module docstring)."""
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = (
                await session.execute(
                    select(Subscription, Line.ocs_account, Line.cfast_service_id)
                    .join(Line, Line.id == Subscription.line_id)
                    .where(Subscription.org_id.in_(org_ids))
                )
            ).all()
            prefixes = {s.workflow_id for s, _, _ in rows}
            debits = [
                (e.reference, -e.amount_minor)
                for e in (await session.execute(select(WalletEntry).where(WalletEntry.kind == "renewal_debit")))
                .scalars()
                .all()
                if e.reference.rsplit(":period-", 1)[0] in prefixes
            ]
            books = (
                await session.execute(
                    select(Transaction.reference, Transaction.retail_minor).where(Transaction.org_id.in_(org_ids))
                )
            ).all()
            receipts = (
                await session.execute(
                    select(Invoice.reference, Invoice.total_minor).where(
                        Invoice.org_id.in_(org_ids),
                        Invoice.status == InvoiceStatus.PAID,
                        Invoice.reference.endswith(":charge:invoice"),
                    )
                )
            ).all()
    finally:
        await engine.dispose()

    stripe = stripe_facts(localstripe_url, stripe_api_key, topup_ids=set(), subscription_ids={s.id for s, _, _ in rows})
    applied, held = ocs_balances(ocs_base_url, ocs_tenant, {account for _, account, _ in rows if account})
    billed = cfast_facts(cfast_url, {service for _, _, service in rows if service})
    by_wf: dict[str, RenewalFacts] = {}
    facts_by_account: dict[str, RenewalFacts] = {}
    report = InvariantReport(topups=0)
    for subscription, account, _service in rows:
        f = RenewalFacts(subscription.id, subscription.payment_method.value, subscription.period)
        by_wf[subscription.workflow_id] = f
        if account:
            facts_by_account[account] = f
        if subscription.payment_method is PaymentMethod.CARD:
            f.charges = {p: amounts for (sid, p), amounts in stripe.renewal_charges.items() if sid == subscription.id}
    for reference, amount in debits:
        _add_charge(by_wf, reference, amount, PaymentMethod.WALLET)
    for reference, (count, cancelled, amount, _cancelled_minor) in billed.items():
        if count > cancelled:
            _add_charge(by_wf, reference, amount // count, PaymentMethod.ACCOUNT)
    for reference, retail in books:
        found = PERIOD_OF_CHARGE_KEY.search(reference)
        wf = reference.rsplit(":period-", 1)[0]
        if found and wf in by_wf and reference == charge_key(wf, int(found.group(1))):
            by_wf[wf].transactions[int(found.group(1))] = retail
    for reference, total in receipts:
        charge = reference.removesuffix(":invoice")
        found = PERIOD_OF_CHARGE_KEY.search(charge)
        wf = charge.rsplit(":period-", 1)[0]
        if found and wf in by_wf and charge == charge_key(wf, int(found.group(1))):
            by_wf[wf].receipts[int(found.group(1))] = total
    for (account, balance_id), count in applied.items():
        found = PERIOD_OF_BALANCE.match(balance_id)
        if found and account in facts_by_account:
            grants = facts_by_account[account].grants_applied
            grants[int(found.group(1))] = grants.get(int(found.group(1)), 0) + count
    for account, balance_id in held:
        found = PERIOD_OF_BALANCE.match(balance_id)
        if found and account in facts_by_account:
            facts_by_account[account].grants_held.add(int(found.group(1)))
    for f in by_wf.values():
        check_renewal(f, report)
    return report


def _add_charge(by_wf: dict[str, RenewalFacts], reference: str, amount: int, method: PaymentMethod) -> None:
    found = PERIOD_OF_CHARGE_KEY.search(reference)
    f = by_wf.get(reference.rsplit(":period-", 1)[0])
    if found and f is not None and f.method == method.value:
        f.charges.setdefault(int(found.group(1)), []).append(amount)
