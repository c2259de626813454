"""The error catalogue is complete and is the only source of codes: every code has an HTTP status and a French
message, every type an activity reports is a code, and the type strings of recorded histories still read as
the code the workflows branch on."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from activities._errors import is_translated, to_application_error, translates_errors
from api.problems import CODE_BY_HTTP_STATUS, STATUS_BY_CODE
from domain.errors import LEGACY_CODES, MESSAGES, ErrorCode, NotFound, ValidationFailed, code_of
from integrations.errors import ConflictError, RejectedError, TransientError
from integrations.stripe_gateway import PaymentDeclinedError
from integrations.webhooks import TargetRejected

ROOT = Path(__file__).resolve().parents[2]
CODE_STYLE = re.compile(r"^[a-z]+\.[a-z][a-z_]*$")


def _activity_error(cause: ApplicationError) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="some.activity",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


def test_every_code_is_area_dot_reason_with_an_http_status_and_a_french_message() -> None:
    for code in ErrorCode:
        assert CODE_STYLE.match(code.value), code
        assert 400 <= STATUS_BY_CODE[code] <= 599, code
        assert MESSAGES[code].strip(), code
    assert set(STATUS_BY_CODE) == set(ErrorCode) == set(MESSAGES)
    assert set(CODE_BY_HTTP_STATUS.values()) <= set(ErrorCode)


def _literal_types(path: Path) -> list[tuple[int, ast.expr]]:
    """The `type=` argument of every call in the module (ApplicationError and anything alike)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, keyword.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "type"
    ]


# The computed types: the one translation point, and a workflow passing on a code read with `code_of`.
COMPUTED_TYPES = {
    ("activities/_errors.py", "integration_code(err.system, err.kind)"),
    ("activities/_errors.py", "err.code"),
}


def test_every_type_an_activity_reports_is_a_catalogue_code() -> None:
    unknown: list[str] = []
    for path in sorted((ROOT / "activities").glob("*.py")):
        module = str(path.relative_to(ROOT))
        for line, value in _literal_types(path):
            if isinstance(value, ast.Constant) and value.value in set(ErrorCode):
                continue
            if isinstance(value, ast.Attribute) and ast.unparse(value.value) == "ErrorCode":
                if value.attr in ErrorCode.__members__:
                    continue
            if (module, ast.unparse(value)) in COMPUTED_TYPES:
                continue
            unknown.append(f"{module}:{line} type={ast.unparse(value)}")
    assert not unknown, "types outside the catalogue:\n" + "\n".join(unknown)


def test_every_activity_class_translates_its_errors() -> None:
    import importlib

    untranslated = []
    for path in sorted((ROOT / "activities").glob("*.py")):
        module = importlib.import_module(f"activities.{path.stem}")
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for name, member in vars(cls).items():
                if hasattr(member, "__temporal_activity_definition") and not is_translated(member):
                    untranslated.append(f"{module.__name__}.{cls.__name__}.{name}")
    assert not untranslated, untranslated


def test_errors_are_translated_to_their_code_and_retryability() -> None:
    cases = [
        (NotFound("line_id", "introuvable"), ErrorCode.NOT_FOUND, True),
        (ValidationFailed("file", "vide", code=ErrorCode.USAGE_INVALID_FILE), ErrorCode.USAGE_INVALID_FILE, True),
        (TransientError("ocs", "timeout", "slow"), ErrorCode.OCS_UNAVAILABLE, False),
        (RejectedError("cfast", "service_terminated", "no"), ErrorCode.CFAST_REJECTED, True),
        (ConflictError("stripe", "idempotency_error", "key"), ErrorCode.STRIPE_CONFLICT, True),
        (
            PaymentDeclinedError("no", payment_intent_id=None, decline_code="insufficient_funds"),
            ErrorCode.PAYMENT_DECLINED,
            True,
        ),
        (TargetRejected("private address"), ErrorCode.WEBHOOK_TARGET_REJECTED, True),
        (TransientError("smtp", "421", "busy"), ErrorCode.SMTP_UNAVAILABLE, False),
    ]
    for err, code, non_retryable in cases:
        translated = to_application_error(err)
        assert (translated.type, translated.non_retryable) == (code, non_retryable), err
        assert code_of(_activity_error(translated)) is code


async def test_a_decorated_activity_raises_the_translated_error() -> None:
    from temporalio import activity

    @translates_errors
    class Sample:
        @activity.defn(name="sample.refuse")
        async def refuse(self, line_id: str) -> None:
            raise NotFound("line_id", f"{line_id} introuvable", code=ErrorCode.LINE_NOT_FOUND)

    with pytest.raises(ApplicationError) as caught:
        await Sample().refuse("L1")
    assert caught.value.type == "line.not_found" and caught.value.non_retryable
    assert caught.value.details == ({"field": "line_id", "reason": "L1 introuvable"},)
    assert activity._Definition.must_from_callable(Sample().refuse).name == "sample.refuse"


def _recorded_types() -> set[str]:
    types: set[str] = set()
    for path in (ROOT / "tests/replay/histories").glob("*.json"):
        types |= set(re.findall(r'"type": *"([^"]*)"', path.read_text(encoding="utf-8")))
    return {t for t in types if not t.endswith("=")}  # payload encodings are base64 (`S2V5d29yZA==`)


def test_every_type_recorded_in_a_history_reads_as_a_code() -> None:
    recorded = _recorded_types()
    assert recorded, "no recorded history"
    for type_ in recorded:
        assert type_ in set(ErrorCode) or type_ in LEGACY_CODES or code_of(type_) is not ErrorCode.INTERNAL_ERROR, type_


@pytest.mark.parametrize(
    ("legacy", "code"),
    [
        ("stripe.card_declined", ErrorCode.PAYMENT_DECLINED),
        ("stripe.generic_decline", ErrorCode.PAYMENT_DECLINED),
        ("stripe.idempotency_error", ErrorCode.STRIPE_CONFLICT),
        ("stripe.transport", ErrorCode.STRIPE_UNAVAILABLE),
        ("ocs.ACCOUNT_DISABLED", ErrorCode.OCS_REJECTED),
        ("outbox.smtp_unavailable", ErrorCode.SMTP_UNAVAILABLE),
        ("inventory.not_found", ErrorCode.NOT_FOUND),
        ("inventory.resource_busy", ErrorCode.RESOURCE_BUSY),
        ("wallet.currency", ErrorCode.WALLET_CURRENCY_MISMATCH),
        ("NotNeedingAttention", ErrorCode.RESOLUTION_NOT_AWAITED),
        ("ActivationFailed", ErrorCode.ACTIVATION_FAILED),
        ("CfastSyncFailed", ErrorCode.CUSTOMER_SYNC_FAILED),
        ("webhook.http_status", ErrorCode.WEBHOOK_HTTP_STATUS),
        ("wallet.disabled", ErrorCode.WALLET_DISABLED),
    ],
)
def test_legacy_types_read_as_the_code_of_the_same_decision(legacy: str, code: ErrorCode) -> None:
    assert code_of(legacy) is code
    recorded = ApplicationError("old", type=legacy, non_retryable=not code.endswith(".unavailable"))
    assert code_of(_activity_error(recorded)) is code


def test_a_legacy_remote_code_follows_the_recorded_retryability() -> None:
    assert code_of(ApplicationError("x", type="ocs.SOME_NEW_CODE", non_retryable=True)) is ErrorCode.OCS_REJECTED
    assert code_of(ApplicationError("x", type="ocs.SOME_NEW_CODE", non_retryable=False)) is ErrorCode.OCS_UNAVAILABLE


def test_a_failure_without_a_type_is_an_internal_error() -> None:
    assert code_of(ValueError("boom")) is ErrorCode.INTERNAL_ERROR
    assert code_of(None) is ErrorCode.INTERNAL_ERROR
    assert code_of("SomethingNobodyRaised") is ErrorCode.INTERNAL_ERROR
