"""Auto top-up rules: when a line's remaining data falls below a rule's threshold, the same top-up as a
manual one is started (off-session card or wallet)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.enums import PaymentMethod, TopUpSource
from domain.models import Line, Rule, TopUp
from domain.money import MB
from domain.services.lines import TOPUP_LINE_STATUSES

AUTO_TOP_UP = "auto_top_up"


@dataclass(frozen=True)
class AutoTopUpRule:
    rule_id: str
    threshold_bytes: int
    data_gb: int
    payment_method: PaymentMethod


def parse_rule(rule: Rule) -> AutoTopUpRule:
    """`condition = {"remaining_mb_below": 500}`, `action_params = {"data_gb": 1, "payment_method": "card"}`."""
    method = PaymentMethod(rule.action_params.get("payment_method", PaymentMethod.CARD))
    if method not in (PaymentMethod.CARD, PaymentMethod.WALLET):
        raise ValueError("an automatic top-up pays off-session: card or wallet")
    return AutoTopUpRule(
        rule_id=rule.id,
        threshold_bytes=int(rule.condition["remaining_mb_below"]) * MB,
        data_gb=int(rule.action_params.get("data_gb", 1)),
        payment_method=method,
    )


async def lines_under_auto_topup(session: AsyncSession) -> list[tuple[Line, AutoTopUpRule]]:
    """Rechargeable lines covered by an enabled auto top-up rule (company rule before organisation rule),
    without an automatic top-up already in flight."""
    rules = list(
        (await session.execute(select(Rule).where(Rule.action == AUTO_TOP_UP, Rule.enabled.is_(True)))).scalars()
    )
    if not rules:
        return []
    in_flight = set(
        (
            await session.execute(
                select(TopUp.line_id).where(TopUp.source == TopUpSource.RULE, TopUp.status.not_in(TERMINAL))
            )
        ).scalars()
    )
    by_scope = {(r.org_id, r.company_id): r for r in rules}
    lines = await session.execute(
        select(Line).where(
            Line.org_id.in_({r.org_id for r in rules}),
            Line.status.in_(TOPUP_LINE_STATUSES),
            Line.termination_scheduled_for.is_(None),
        )
    )
    covered: list[tuple[Line, AutoTopUpRule]] = []
    for line in lines.scalars():
        rule = by_scope.get((line.org_id, line.company_id)) or by_scope.get((line.org_id, None))
        if rule is not None and line.id not in in_flight and line.ocs_account:
            covered.append((line, parse_rule(rule)))
    return covered


async def rule_topup_count(session: AsyncSession, line_id: str) -> int:
    rows = await session.execute(select(TopUp.id).where(TopUp.line_id == line_id, TopUp.source == TopUpSource.RULE))
    return len(rows.all())
