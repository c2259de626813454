"""The top-up's own writes, built and batched outside Temporal: MAJ records, money audit rows, the payment
event, notifications, the business status mirror and one step's batch of writes."""

from __future__ import annotations

import asyncio

from domain.contracts import TopUpInput, TopUpStatusUpdate
from domain.enums import ExternalSystem, MajStatus
from workflows.topup_effects import StatusMirror, StepWriter, TopUpFacts, charge_details

WF = "topup/org-1/t-1"


def topup(**changes: object) -> TopUpInput:
    fields: dict[str, object] = {
        "topup_id": "t-1",
        "org_id": "org-1",
        "company_id": "co-1",
        "line_id": "line-1",
        "deployment_id": "dep-1",
        "msisdn": "+33670000001",
        "payment_method": "card",
        "amount_minor": 123450,
        "quantity": 5,
        "unit_price_minor": 24690,
        "data_bytes": 5 * 1024**3,
        "article_code": "DATA5",
        "article_label": "Recharge 5 Go",
    }
    return TopUpInput.model_validate(fields | changes)


def test_charge_details_show_the_amount_in_french_from_minor_units() -> None:
    assert charge_details(topup()) == "Paiement de 1\u202f234,50\u00a0€ (card)"
    assert charge_details(topup(amount_minor=5, payment_method="wallet")) == "Paiement de 0,05\u00a0€ (wallet)"


def test_records_are_keyed_by_workflow_and_operation_and_carry_the_error() -> None:
    facts = TopUpFacts(topup(), WF)
    ok = facts.record(ExternalSystem.OCS, "credit_data", ids={"balance_id": "b"})
    failed = facts.record(ExternalSystem.CFAST, "cancel_one_off_article", error="refusé", attempt="-charge")
    assert (ok.reference, ok.status, ok.ids_obtained, ok.line_id) == (
        f"{WF}:credit_data",
        MajStatus.OK,
        {"balance_id": "b"},
        "line-1",
    )
    assert (failed.reference, failed.status, failed.error) == (
        f"{WF}:cancel_one_off_article-charge",
        MajStatus.ERROR,
        "refusé",
    )


def test_money_audit_and_payment_event_are_once_per_top_up() -> None:
    facts = TopUpFacts(topup(), WF)
    audit = facts.money_audit("topup.refund_confirmed_manually", "pi_1", actor="ops@x", actor_kind="staff", note="n")
    assert audit.reference == f"{WF}:audit:topup.refund_confirmed_manually"
    assert (audit.actor, audit.actor_kind, audit.target) == ("ops@x", "staff", "recharge:t-1")
    assert audit.details["payment_reference"] == "pi_1" and audit.details["note"] == "n"
    event = facts.payment_event("succeeded", "pi_1")
    assert (event.event_id, event.event_type) == ("payment-t-1", "payment.created")
    assert event.data["amount_minor"] == 123450 and event.data["payment_status"] == "succeeded"


def test_notices_have_one_reference_each() -> None:
    facts = TopUpFacts(topup(), WF)
    notices = [facts.completed_notice(), facts.attention_notice(), facts.refunded_notice()]
    suffixes = [n.reference.removeprefix(WF) for n in notices]
    assert suffixes == [":notify-completed", ":notify-attention", ":notify-refunded"]
    assert "5 Go sur le +33670000001" in notices[0].body


def test_business_status_by_phase_writes_only_phase_changes() -> None:
    mirror = StatusMirror(lambda: True)
    assert mirror.business_status("resolving_line") == "charging"
    mirror.shown = "charging"
    assert mirror.business_status("charging") is None
    assert mirror.business_status("crediting") == "provisioning"
    assert mirror.business_status("refunded") == "refunded"
    every_step = StatusMirror(lambda: False)
    every_step.shown = "charging"
    assert every_step.business_status("charging") == "charging"


def test_a_batched_step_merges_its_writes_into_one_input() -> None:
    facts = TopUpFacts(topup(), WF)
    writer = StepWriter("t-1", batched=True)

    async def step() -> None:
        await writer.record(facts.record(ExternalSystem.STRIPE, "refund", ids={"refund": "re_1"}))
        await writer.status(TopUpStatusUpdate(topup_id="t-1", payment_status="refunded", refund_reference="re_1"))
        await writer.audit(facts.money_audit("topup.refund", "pi_1"))
        await writer.status(TopUpStatusUpdate(topup_id="t-1", status="refunded", deployment_status="failed"))
        await writer.notice(facts.refunded_notice())

    asyncio.run(step())
    writes = writer.pending()
    assert writes is not None
    # The second status update of the step keeps the first one's fields.
    assert writes.status == TopUpStatusUpdate(
        topup_id="t-1",
        status="refunded",
        payment_status="refunded",
        refund_reference="re_1",
        deployment_status="failed",
    )
    assert [r.operation for r in writes.records] == ["refund"]
    assert [a.action for a in writes.audits] == ["topup.refund"]
    assert [n.event_type for n in writes.notices] == ["topup.refunded"]
    assert writes.receipt is None


def test_a_step_without_writes_has_nothing_to_flush() -> None:
    assert StepWriter("t-1", batched=True).pending() is None
