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
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.enums import PaymentMethod
from domain.models import AuditLog, Company, EndUser, Line, TopUp, WalletEntry
from infra.db import create_engine, create_sessionmaker

MANUAL_REFUND = "topup.refund_confirmed_manually"
MONEY_AUDIT_ACTIONS = ("topup.charge", "topup.refund", MANUAL_REFUND)
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
    by_status: dict[str, int] = field(default_factory=dict)
    money: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        statuses = " ".join(f"{k}={v}" for k, v in sorted(self.by_status.items()))
        verdict = "ok" if self.ok else f"broken ({len(self.violations)} violations)"
        return f"topups={self.topups} {statuses} invariants={verdict}"


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


def stripe_facts(
    localstripe_url: str,
    api_key: str,
    *,
    topup_ids: set[str] | None = None,
    org_ids: set[str] | None = None,
    customers: set[str] | None = None,
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
            topup_id = (refunded_intent.get("metadata") or {}).get("topup_id") if refunded_intent else None
            if topup_id and refund.get("status") == "succeeded":
                facts.refunds[topup_id] += 1
                facts.refunded_minor[topup_id] += int(refund.get("amount") or 0)
    return facts


def _charged_amount(intent: dict[str, Any], charges: dict[str, dict[str, Any]]) -> int:
    latest = intent.get("latest_charge")
    charge = charges.get(latest if isinstance(latest, str) else (latest or {}).get("id", ""))
    if charge is not None and charge.get("status") == "succeeded":
        return int(charge.get("amount_captured") or charge["amount"])
    return int(intent.get("amount_received") or intent["amount"])


def ocs_facts(ocs_base_url: str, tenant: str, accounts: set[str]) -> tuple[dict[str, int], set[str]]:
    """Applied SetBalance calls per balance id, and the balance ids held now."""
    applied: dict[str, int] = defaultdict(int)
    kept: set[str] = set()
    with httpx.Client(base_url=ocs_base_url, timeout=30) as http:
        for call in http.get("/_sim/calls", params={"op": "APIerSv1.SetBalance"}).raise_for_status().json():
            if call.get("applied"):
                params = (call.get("request") or {}).get("params") or {}
                balance_id = (params.get("Balance") or {}).get("ID")
                if balance_id:
                    applied[balance_id] += 1
        for account in accounts:
            reply = http.post(
                "/jsonrpc",
                json={"method": "APIerSv2.GetAccount", "params": [{"Tenant": tenant, "Account": account}], "id": 1},
            ).json()
            for balances in ((reply.get("result") or {}).get("BalanceMap") or {}).values():
                kept.update(b.get("ID") for b in balances if b.get("ID"))
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
    return report


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
