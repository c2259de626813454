"""The renewal-storm's money invariants (R1–R5 of bench/invariants.py) on hand-built facts: a clean renewal
passes, and each way of breaking one is reported under its rule."""

from __future__ import annotations

from bench.invariants import InvariantReport, RenewalFacts, check_renewal


def checked(facts: RenewalFacts) -> list[str]:
    report = InvariantReport(topups=0)
    check_renewal(facts, report)
    return report.violations


def renewed_once(**changes: object) -> RenewalFacts:
    facts = RenewalFacts(
        "sub-1",
        "card",
        period=1,
        charges={1: [1500]},
        grants_applied={1: 1},
        grants_held={1},
        transactions={1: 1500},
        receipts={1: 1500},
    )
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def test_a_period_charged_once_with_its_grant_and_transaction_passes() -> None:
    report = InvariantReport(topups=0)
    check_renewal(renewed_once(), report)
    assert report.ok and report.renewals == 1
    assert report.summary().endswith("renewals=1 invariants=ok")


def test_a_period_charged_twice_is_reported() -> None:
    assert [v[:2] for v in checked(renewed_once(charges={1: [1500, 1500]}))] == ["R1"]


def test_a_charge_without_its_ocs_grant_is_reported() -> None:
    assert [v[:2] for v in checked(renewed_once(grants_applied={}, grants_held=set()))] == ["R3"]
    # Applied once but no longer held by the account: still missing.
    assert [v[:2] for v in checked(renewed_once(grants_held=set()))] == ["R3"]


def test_a_charge_without_its_transaction_or_of_another_amount_is_reported() -> None:
    assert [v[:2] for v in checked(renewed_once(transactions={}))] == ["R4"]
    assert [v[:2] for v in checked(renewed_once(transactions={1: 1000}))] == ["R4"]


def test_a_renewed_period_without_a_charge_and_a_charge_ahead_of_the_period_are_reported() -> None:
    assert [v[:2] for v in checked(renewed_once(charges={}))] == ["R2"]
    ahead = renewed_once(period=0)  # charged and granted, never recorded: still checked for its grant and books
    assert checked(ahead) == []
    assert [v[:2] for v in checked(renewed_once(period=0, grants_applied={}, transactions={}, receipts={}))] == [
        "R3",
        "R4",
        "R5",
    ]


def test_a_card_or_wallet_charge_without_its_paid_receipt_is_reported() -> None:
    assert [v[:2] for v in checked(renewed_once(receipts={}))] == ["R5"]
    assert [v[:2] for v in checked(renewed_once(method="wallet", receipts={1: 1000}))] == ["R5"]
    # On account CFAST bills the period: simflow issues no receipt.
    assert checked(renewed_once(method="account", receipts={})) == []
