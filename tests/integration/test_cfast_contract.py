"""Contract tests: `integrations.cfast.CfastClient` against the CFAST simulator over real HTTP.

Happy paths and state, idempotency ("twice with the same key leaves one effect"), and every fault mode
of the simulator test contract seen through the client.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest

from integrations.cfast import CfastClient, CfastService
from integrations.errors import ConflictError, NotFoundError, RejectedError, TransientError
from tests.conftest import reset_simulator, running_simulator


# Own simulator instances: the session worker's background workflows use the shared ones, and these tests count calls
# and reset state.
@pytest.fixture(scope="module")
def own_cfast_url() -> Iterator[str]:
    with running_simulator("cfast") as url:
        yield url


VALID_SIRET = "73282932000074"
VALID_VAT = "FR44732829320"


class SimAdmin:
    """The `/_sim` test contract of one simulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def fault(self, op: str, mode: str, *, times: int = 1, latency_ms: int = 0) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            response = await http.post(
                "/_sim/faults", json={"op": op, "mode": mode, "times": times, "latency_ms": latency_ms}
            )
            response.raise_for_status()

    async def calls(self, op: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            response = await http.get("/_sim/calls", params={"op": op})
            response.raise_for_status()
            calls: list[dict[str, Any]] = response.json()
            return calls

    async def wait_calls(
        self, op: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 5.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            calls = await self.calls(op)
            if predicate(calls):
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"calls of {op} never matched: {calls}")
            await _tick()


async def _tick() -> None:
    await asyncio.sleep(0.02)


def _ref(prefix: str = "REF") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _msisdn() -> str:
    return "067" + str(uuid.uuid4().int)[:7]


@pytest.fixture
def admin(own_cfast_url: str) -> SimAdmin:
    reset_simulator(own_cfast_url)
    return SimAdmin(own_cfast_url)


@pytest.fixture
async def cfast(own_cfast_url: str, admin: SimAdmin) -> AsyncIterator[CfastClient]:
    async with CfastClient(own_cfast_url, timeout_s=5.0) as client:
        yield client


async def _service(cfast: CfastClient, msisdn: str | None = None) -> CfastService:
    customer = await cfast.create_customer(
        customer_name="Intersport Lyon", customer_reference=_ref("CC"), idempotency_key=_ref("k")
    )
    point = await cfast.create_billing_point(customer.customer_id, label="Siège", idempotency_key=_ref("k"))
    site = await cfast.create_site(
        point.billing_point_id, label="Parc mobile", parc_type="mobile", idempotency_key=_ref("k")
    )
    return await cfast.create_service(
        site.site_id,
        service_label=msisdn or _msisdn(),
        last_name="Martin",
        first_name="Léa",
        article_code="MOB_ILLIMITE_50GO",
        article_label="Illimité Voix France&EUROF 50Go",
        article_periodic_price=1990,
        periodic_buy_price=900,
        start_date=date(2026, 1, 1),
        idempotency_key=_ref("k"),
    )


# --- happy paths and state ------------------------------------------------------------------------------


async def test_customer_is_created_found_and_read(cfast: CfastClient) -> None:
    reference = _ref("CC")
    created = await cfast.create_customer(
        customer_name="Intersport",
        customer_reference=reference,
        siret=VALID_SIRET,
        vat_number=VALID_VAT,
        idempotency_key=_ref("k"),
    )
    assert created.level == 1000
    assert created.customer_reference == reference
    assert created.siret == VALID_SIRET

    assert await cfast.get_customer(created.customer_id) == created
    assert await cfast.find_customer_by_reference(reference) == created
    assert await cfast.find_customer_by_reference(_ref("missing")) is None
    with pytest.raises(NotFoundError):
        await cfast.get_customer("CU-999999")


async def test_existing_customer_reference_is_a_conflict_naming_the_customer(cfast: CfastClient) -> None:
    reference = _ref("CC")
    first = await cfast.create_customer(customer_name="A", customer_reference=reference, idempotency_key=_ref("k"))
    with pytest.raises(ConflictError) as err:
        await cfast.create_customer(customer_name="B", customer_reference=reference, idempotency_key=_ref("k"))
    assert err.value.code == "customer_reference_exists"
    assert err.value.body["customerId"] == first.customer_id


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"siret": "73282932000075"}, "siret"),
        ({"vat_number": "FR00000000000"}, "vat_number"),
        ({"customer_name": " "}, "customer_name"),
    ],
)
async def test_invalid_customer_is_rejected_with_the_field_and_changes_nothing(
    cfast: CfastClient, admin: SimAdmin, kwargs: dict[str, str], field: str
) -> None:
    reference = _ref("CC")
    args: dict[str, Any] = {"customer_name": "Intersport", "customer_reference": reference, **kwargs}
    with pytest.raises(RejectedError) as err:
        await cfast.create_customer(**args, idempotency_key=_ref("k"))
    assert err.value.status_code == 422
    assert err.value.code == "validation"
    assert field in err.value.message
    assert await cfast.find_customer_by_reference(reference) is None
    assert [c["applied"] for c in await admin.calls("create_customer")] == [False]


async def test_billing_points_and_sites_hang_under_their_customer(cfast: CfastClient) -> None:
    customer = await cfast.create_customer(customer_name="A", customer_reference=_ref("CC"), idempotency_key=_ref("k"))
    point = await cfast.create_billing_point(
        customer.customer_id, label="Siège", address="1 rue de la Paix 75002 Paris", idempotency_key=_ref("k")
    )
    assert (point.level, point.customer_id, point.address) == (
        5000,
        customer.customer_id,
        "1 rue de la Paix 75002 Paris",
    )
    site = await cfast.create_site(point.billing_point_id, label="Parc", parc_type="mobile", idempotency_key=_ref("k"))
    assert (site.level, site.billing_point_id, site.customer_id) == (9000, point.billing_point_id, customer.customer_id)

    assert await cfast.list_billing_points(customer.customer_id) == [point]
    assert await cfast.get_billing_point(point.billing_point_id) == point
    assert await cfast.list_sites(point.billing_point_id) == [site]
    assert await cfast.get_site(site.site_id) == site
    with pytest.raises(NotFoundError):
        await cfast.create_billing_point("CU-999999", label="x", idempotency_key=_ref("k"))
    with pytest.raises(RejectedError) as err:
        await cfast.create_site(
            point.billing_point_id,
            label="x",
            parc_type="satellite",  # type: ignore[arg-type]
            idempotency_key=_ref("k"),
        )
    assert "parc_type" in err.value.message


async def test_service_line_lifecycle_is_kept_in_its_history(cfast: CfastClient) -> None:
    service = await _service(cfast)
    assert service.status == "active"
    assert (service.article_code, service.article_periodic_price, service.periodic_buy_price) == (
        "MOB_ILLIMITE_50GO",
        1990,
        900,
    )
    assert service.hide_called_numbers is True
    assert await cfast.find_service_by_label(service.service_label) == service
    assert await cfast.find_service_by_label("0799999999") is None

    changed = await cfast.change_subscription(
        service.service_id,
        article_code="MOB_ILLIMITE_100GO",
        article_periodic_price=2990,
        periodic_buy_price=1100,
        start_date=date(2026, 2, 1),
        idempotency_key=_ref("k"),
    )
    assert (changed.article_code, changed.periodic_buy_price) == ("MOB_ILLIMITE_100GO", 1100)
    assert [(s.article_code, s.status, s.end_date) for s in changed.subscriptions] == [
        ("MOB_ILLIMITE_50GO", "ended", date(2026, 2, 1)),
        ("MOB_ILLIMITE_100GO", "active", None),
    ]

    article = await cfast.add_one_off_article(
        service.service_id,
        article_code="RECHARGE_DATA_1GO",
        label="Recharge DATA 1Go",
        quantity=2,
        unit_price=50,
        reference="topup-1",
        idempotency_key=_ref("k"),
    )
    assert (article.total_price, article.status) == (100, "active")
    cancelled = await cfast.cancel_one_off_article(service.service_id, article.article_line_id, idempotency_key="c1")
    assert cancelled.status == "cancelled"
    again = await cfast.cancel_one_off_article(service.service_id, article.article_line_id, idempotency_key="c2")
    assert again.status == "cancelled"
    assert again.cancelled_at == cancelled.cancelled_at

    terminated = await cfast.terminate_service(
        service.service_id, termination_date=date(2026, 3, 31), idempotency_key=_ref("k")
    )
    assert (terminated.status, terminated.termination_date) == ("terminated", date(2026, 3, 31))
    twice = await cfast.terminate_service(
        service.service_id, termination_date=date(2026, 4, 30), idempotency_key=_ref("k")
    )
    assert twice.termination_date == date(2026, 3, 31)

    read = await cfast.get_service(service.service_id)
    assert [e.event for e in read.history] == [
        "created",
        "subscription_changed",
        "one_off_article_added",
        "one_off_article_cancelled",
        "terminated",
    ]
    assert read.one_off_article("topup-1") is None  # cancelled
    assert [a.status for a in read.one_off_articles] == ["cancelled"]
    with pytest.raises(ConflictError) as err:
        await cfast.add_one_off_article(
            service.service_id,
            article_code="RECHARGE_DATA_1GO",
            label="Recharge DATA 1Go",
            quantity=1,
            unit_price=50,
            reference="topup-2",
            idempotency_key=_ref("k"),
        )
    assert err.value.code == "service_terminated"


async def test_a_label_is_unique_among_live_services_and_lookup_prefers_the_live_one(cfast: CfastClient) -> None:
    old = await _service(cfast)
    with pytest.raises(ConflictError) as err:
        await _service(cfast, msisdn=old.service_label)
    assert err.value.code == "service_label_in_use"
    assert err.value.body["serviceId"] == old.service_id

    await cfast.terminate_service(old.service_id, termination_date=date(2026, 1, 31), idempotency_key=_ref("k"))
    assert (await cfast.find_service_by_label(old.service_label)) == await cfast.get_service(old.service_id)
    new = await _service(cfast, msisdn=old.service_label)
    found = await cfast.find_service_by_label(old.service_label)
    assert found is not None
    assert found.service_id == new.service_id


async def test_a_reference_is_billed_once_per_service(cfast: CfastClient) -> None:
    service = await _service(cfast)
    args: dict[str, Any] = {
        "article_code": "RECHARGE_DATA_1GO",
        "label": "Recharge DATA 1Go",
        "quantity": 1,
        "unit_price": 50,
        "reference": "topup-42",
    }
    first = await cfast.add_one_off_article(service.service_id, **args, idempotency_key=_ref("k"))
    with pytest.raises(ConflictError) as err:
        await cfast.add_one_off_article(service.service_id, **args, idempotency_key=_ref("k"))
    assert err.value.code == "duplicate_reference"
    assert err.value.body["articleLineId"] == first.article_line_id
    read = await cfast.get_service(service.service_id)
    assert read.one_off_article("topup-42") == first
    assert len(read.one_off_articles) == 1


async def test_amounts_are_integer_minor_units(cfast: CfastClient, own_cfast_url: str) -> None:
    service = await _service(cfast)
    async with httpx.AsyncClient(base_url=own_cfast_url, timeout=5) as http:
        response = await http.post(
            f"/services/{service.service_id}/one-off-articles",
            json={"articleCode": "X", "label": "X", "quantity": 1, "unitPrice": 0.5, "reference": "r"},
        )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation"
    assert body["fields"][0]["field"] == "unitPrice"


async def test_unknown_ids_are_not_found(cfast: CfastClient) -> None:
    with pytest.raises(NotFoundError):
        await cfast.get_service("SV-999999")
    with pytest.raises(NotFoundError):
        await cfast.terminate_service("SV-999999", termination_date=date(2026, 1, 1), idempotency_key=_ref("k"))
    service = await _service(cfast)
    with pytest.raises(NotFoundError):
        await cfast.cancel_one_off_article(service.service_id, "AL-999999", idempotency_key=_ref("k"))


# --- idempotency ----------------------------------------------------------------------------------------


async def test_create_customer_twice_with_the_same_key_leaves_one_customer(cfast: CfastClient, admin: SimAdmin) -> None:
    reference = _ref("CC")
    first = await cfast.create_customer(customer_name="A", customer_reference=reference, idempotency_key="key-1")
    second = await cfast.create_customer(customer_name="A", customer_reference=reference, idempotency_key="key-1")
    assert second == first
    calls = await admin.calls("create_customer")
    assert [(c["applied"], c["replayed"]) for c in calls] == [(True, False), (False, True)]
    assert await cfast.find_customer_by_reference(reference) == first


async def test_same_key_with_another_body_is_a_conflict(cfast: CfastClient) -> None:
    await cfast.create_customer(customer_name="A", customer_reference=_ref("CC"), idempotency_key="key-2")
    with pytest.raises(ConflictError) as err:
        await cfast.create_customer(customer_name="A", customer_reference=_ref("CC"), idempotency_key="key-2")
    assert err.value.code == "idempotency_key_reused"


async def test_one_off_article_twice_with_the_same_key_bills_once(cfast: CfastClient, admin: SimAdmin) -> None:
    service = await _service(cfast)
    args: dict[str, Any] = {
        "article_code": "RECHARGE_DATA_1GO",
        "label": "Recharge DATA 1Go",
        "quantity": 3,
        "unit_price": 50,
        "reference": "topup-7",
        "idempotency_key": "topup-7:cfast",
    }
    first = await cfast.add_one_off_article(service.service_id, **args)
    second = await cfast.add_one_off_article(service.service_id, **args)
    assert second == first
    assert len((await cfast.get_service(service.service_id)).one_off_articles) == 1
    assert [c["applied"] for c in await admin.calls("add_one_off_article")] == [True, False]


# --- fault modes through the client ---------------------------------------------------------------------


@dataclass
class Case:
    """One mutating operation: how to prepare it, call it with a key, and count its effect in the state."""

    op: str
    prepare: Callable[[CfastClient], Awaitable[dict[str, Any]]]
    call: Callable[[CfastClient, dict[str, Any], str], Awaitable[Any]]
    effects: Callable[[CfastClient, dict[str, Any]], Awaitable[int]]


async def _prepare_customer(_: CfastClient) -> dict[str, Any]:
    return {"reference": _ref("CC")}


async def _call_customer(c: CfastClient, ctx: dict[str, Any], key: str) -> Any:
    return await c.create_customer(customer_name="Fault Co", customer_reference=ctx["reference"], idempotency_key=key)


async def _count_customer(c: CfastClient, ctx: dict[str, Any]) -> int:
    return int(await c.find_customer_by_reference(ctx["reference"]) is not None)


async def _prepare_site(c: CfastClient) -> dict[str, Any]:
    customer = await c.create_customer(customer_name="A", customer_reference=_ref("CC"), idempotency_key=_ref("k"))
    point = await c.create_billing_point(customer.customer_id, label="Siège", idempotency_key=_ref("k"))
    site = await c.create_site(point.billing_point_id, label="Parc", parc_type="mobile", idempotency_key=_ref("k"))
    return {"site_id": site.site_id, "msisdn": _msisdn()}


async def _call_service(c: CfastClient, ctx: dict[str, Any], key: str) -> Any:
    return await c.create_service(
        ctx["site_id"],
        service_label=ctx["msisdn"],
        last_name="Martin",
        article_code="MOB_5GO",
        article_periodic_price=990,
        periodic_buy_price=300,
        start_date=date(2026, 1, 1),
        idempotency_key=key,
    )


async def _count_service(c: CfastClient, ctx: dict[str, Any]) -> int:
    return int(await c.find_service_by_label(ctx["msisdn"]) is not None)


async def _prepare_service(c: CfastClient) -> dict[str, Any]:
    return {"service_id": (await _service(c)).service_id}


async def _call_article(c: CfastClient, ctx: dict[str, Any], key: str) -> Any:
    return await c.add_one_off_article(
        ctx["service_id"],
        article_code="RECHARGE_DATA_1GO",
        label="Recharge DATA 1Go",
        quantity=1,
        unit_price=50,
        reference="topup-fault",
        idempotency_key=key,
    )


async def _count_articles(c: CfastClient, ctx: dict[str, Any]) -> int:
    return len((await c.get_service(ctx["service_id"])).one_off_articles)


async def _prepare_article(c: CfastClient) -> dict[str, Any]:
    ctx = await _prepare_service(c)
    ctx["article_line_id"] = (await _call_article(c, ctx, _ref("k"))).article_line_id
    return ctx


async def _call_cancel(c: CfastClient, ctx: dict[str, Any], key: str) -> Any:
    return await c.cancel_one_off_article(ctx["service_id"], ctx["article_line_id"], idempotency_key=key)


async def _count_cancelled(c: CfastClient, ctx: dict[str, Any]) -> int:
    service = await c.get_service(ctx["service_id"])
    return sum(1 for e in service.history if e.event == "one_off_article_cancelled")


async def _call_terminate(c: CfastClient, ctx: dict[str, Any], key: str) -> Any:
    return await c.terminate_service(ctx["service_id"], termination_date=date(2026, 6, 30), idempotency_key=key)


async def _count_terminated(c: CfastClient, ctx: dict[str, Any]) -> int:
    service = await c.get_service(ctx["service_id"])
    return sum(1 for e in service.history if e.event == "terminated")


CASES = [
    Case("create_customer", _prepare_customer, _call_customer, _count_customer),
    Case("create_service", _prepare_site, _call_service, _count_service),
    Case("add_one_off_article", _prepare_service, _call_article, _count_articles),
    Case("cancel_one_off_article", _prepare_article, _call_cancel, _count_cancelled),
    Case("terminate_service", _prepare_service, _call_terminate, _count_terminated),
]
case_ids = [case.op for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_error_fault_is_transient_and_applies_nothing(cfast: CfastClient, admin: SimAdmin, case: Case) -> None:
    ctx = await case.prepare(cfast)
    await admin.fault(case.op, "error")
    with pytest.raises(TransientError) as err:
        await case.call(cfast, ctx, "key-error")
    assert err.value.status_code == 503
    assert await case.effects(cfast, ctx) == 0
    calls = await admin.calls(case.op)
    assert (calls[-1]["fault"], calls[-1]["applied"]) == ("error", False)
    # The key was not consumed by the failure: the retry applies the effect once.
    await case.call(cfast, ctx, "key-error")
    assert await case.effects(cfast, ctx) == 1


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_reject_fault_is_a_rejection_and_applies_nothing(cfast: CfastClient, admin: SimAdmin, case: Case) -> None:
    ctx = await case.prepare(cfast)
    await admin.fault(case.op, "reject")
    with pytest.raises(RejectedError) as err:
        await case.call(cfast, ctx, "key-reject")
    assert not err.value.retryable
    assert not isinstance(err.value, NotFoundError | ConflictError)
    assert err.value.status_code == 422
    assert await case.effects(cfast, ctx) == 0


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_timeout_fault_is_transient_and_applies_nothing(
    own_cfast_url: str, cfast: CfastClient, admin: SimAdmin, case: Case
) -> None:
    ctx = await case.prepare(cfast)
    await admin.fault(case.op, "timeout", latency_ms=800)
    async with CfastClient(own_cfast_url, timeout_s=0.2) as impatient:
        with pytest.raises(TransientError) as err:
            await case.call(impatient, ctx, "key-timeout")
    assert err.value.code == "timeout"
    # The simulator answers 504 once the hang is over, without applying anything.
    await admin.wait_calls(case.op, lambda calls: any(c["fault"] == "timeout" for c in calls))
    assert await case.effects(cfast, ctx) == 0
    assert not any(c["applied"] and c["idempotency_key"] == "key-timeout" for c in await admin.calls(case.op))


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_lost_response_applies_once_and_the_retry_gets_the_same_answer(
    cfast: CfastClient, admin: SimAdmin, case: Case
) -> None:
    ctx = await case.prepare(cfast)
    await admin.fault(case.op, "lost_response")
    with pytest.raises(TransientError) as err:
        await case.call(cfast, ctx, "key-lost")
    assert err.value.code == "transport"
    assert await case.effects(cfast, ctx) == 1

    retried = await case.call(cfast, ctx, "key-lost")
    again = await case.call(cfast, ctx, "key-lost")
    assert retried == again
    assert await case.effects(cfast, ctx) == 1
    calls = [c for c in await admin.calls(case.op) if c["idempotency_key"] == "key-lost"]
    assert [(c["applied"], c["replayed"], c["fault"]) for c in calls] == [
        (True, False, "lost_response"),
        (False, True, None),
        (False, True, None),
    ]


@pytest.mark.parametrize("case", CASES, ids=case_ids)
async def test_latency_fault_only_delays(cfast: CfastClient, admin: SimAdmin, case: Case) -> None:
    ctx = await case.prepare(cfast)
    await admin.fault(case.op, "latency", latency_ms=150)
    started = time.monotonic()
    await case.call(cfast, ctx, "key-latency")
    assert time.monotonic() - started >= 0.15
    assert await case.effects(cfast, ctx) == 1
    assert (await admin.calls(case.op))[-1]["applied"] is True


READS: list[tuple[str, Callable[[CfastClient, CfastService], Awaitable[Any]]]] = [
    ("get_service", lambda c, s: c.get_service(s.service_id)),
    ("find_service", lambda c, s: c.find_service_by_label(s.service_label)),
    ("find_customer", lambda c, s: c.find_customer_by_reference(s.customer_reference)),
    ("get_customer", lambda c, s: c.get_customer(s.customer_id)),
]


@pytest.mark.parametrize(("op", "read"), READS, ids=[op for op, _ in READS])
async def test_faults_apply_to_reads(
    own_cfast_url: str,
    cfast: CfastClient,
    admin: SimAdmin,
    op: str,
    read: Callable[[CfastClient, CfastService], Awaitable[Any]],
) -> None:
    service = await _service(cfast)
    expected = await read(cfast, service)
    assert expected is not None

    await admin.fault(op, "error")
    with pytest.raises(TransientError):
        await read(cfast, service)
    await admin.fault(op, "reject")
    with pytest.raises(RejectedError):
        await read(cfast, service)
    await admin.fault(op, "lost_response")
    with pytest.raises(TransientError):
        await read(cfast, service)
    await admin.fault(op, "latency", latency_ms=50)
    assert await read(cfast, service) == expected
    await admin.fault(op, "timeout", latency_ms=600)
    async with CfastClient(own_cfast_url, timeout_s=0.2) as impatient:
        with pytest.raises(TransientError) as err:
            await read(impatient, service)
    assert err.value.code == "timeout"
    await admin.wait_calls(op, lambda calls: any(c["fault"] == "timeout" for c in calls))
    assert await read(cfast, service) == expected


async def test_faults_are_consumed_per_operation_and_count(cfast: CfastClient, admin: SimAdmin) -> None:
    await admin.fault("create_customer", "error", times=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            await cfast.create_customer(customer_name="A", customer_reference=_ref("CC"), idempotency_key=_ref("k"))
    # The fault is spent: the third create succeeds.
    customer = await cfast.create_customer(customer_name="A", customer_reference=_ref("CC"), idempotency_key="k3")
    assert await cfast.get_customer(customer.customer_id) == customer
