"""Contract tests: `integrations.ocs.OcsClient` against the CGRateS-compatible OCS simulator over HTTP.

CGRateS semantics (SetBalance per balance ID, AddBalance not idempotent, consumption order, exact
removal), the check-and-skip credit, and every fault mode of the simulator contract through the client.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.ocs import OcsActivities
from domain.lifecycle_contracts import OcsAccountRequest, OcsGrant
from domain.pools import charging_account, pool_ocs_account
from domain.subscription_contracts import period_balance_id
from infra.processes import free_port
from integrations.errors import NotFoundError, RejectedError, TransientError
from integrations.ocs import (
    BYTES_PER_GB,
    BYTES_PER_MB,
    DATA,
    MONETARY,
    VOICE,
    OcsAccount,
    OcsClient,
    bytes_to_mb,
    cents_to_monetary,
    gb_to_bytes,
    mb_to_bytes,
    monetary_to_cents,
    ns_to_seconds,
    seconds_to_ns,
)
from tests.conftest import reset_simulator, running_simulator


# Own simulator instances: the session worker's background workflows use the shared ones, and these tests count calls
# and reset state.
@pytest.fixture(scope="module")
def own_ocs_base_url() -> Iterator[str]:
    with running_simulator("ocs") as url:
        yield url


@pytest.fixture(scope="module")
def own_ocs_url(own_ocs_base_url: str) -> str:
    return f"{own_ocs_base_url}/jsonrpc"


TENANT = "simflow-test"


class SimAdmin:
    """The `/_sim` test contract of the OCS simulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def fault(self, op: str, mode: str, *, times: int = 1, latency_ms: int = 0, match: str | None = None) -> None:
        fault = {"op": op, "mode": mode, "times": times, "latency_ms": latency_ms, "match": match}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            (await http.post("/_sim/faults", json=fault)).raise_for_status()

    async def calls(self, op: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            response = await http.get("/_sim/calls", params={"op": op})
            response.raise_for_status()
            calls: list[dict[str, Any]] = response.json()
            return calls

    async def wait_calls(self, op: str, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The calls of `op` once `count` are recorded (a timed-out call is recorded when the server gives up)."""
        deadline = time.monotonic() + timeout_s
        while len(calls := await self.calls(op)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{op}: {len(calls)} calls recorded, expected {count}")
            await asyncio.sleep(0.05)
        return calls


@pytest.fixture
def admin(own_ocs_base_url: str) -> SimAdmin:
    reset_simulator(own_ocs_base_url)
    return SimAdmin(own_ocs_base_url)


@pytest.fixture
async def ocs(own_ocs_url: str, admin: SimAdmin) -> AsyncIterator[OcsClient]:
    async with OcsClient(own_ocs_url, TENANT, timeout_s=5.0) as client:
        yield client


def _account() -> str:
    return f"sim-{uuid.uuid4().hex[:10]}"


async def _account_state(ocs: OcsClient, account: str) -> OcsAccount:
    state = await ocs.get_account(account)
    assert state is not None
    return state


async def _add_balance(ocs: OcsClient, account: str, balance_id: str, value: float, *, request_id: str) -> None:
    params = {"Tenant": TENANT, "Account": account, "BalanceType": DATA, "Value": value, "Balance": {"ID": balance_id}}
    await ocs.call("APIerSv1.AddBalance", params, request_id=request_id)


async def _debit(ocs: OcsClient, account: str, value: float, balance_type: str = DATA, **balance: Any) -> None:
    params: dict[str, Any] = {"Tenant": TENANT, "Account": account, "BalanceType": balance_type, "Value": value}
    if balance:
        params["Balance"] = balance
    await ocs.call("APIerSv1.DebitBalance", params)


def _in(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


# -- units (SPEC §8) ------------------------------------------------------------------------------


def test_unit_conversions() -> None:
    assert BYTES_PER_GB == 1024 * BYTES_PER_MB == 1_073_741_824
    assert gb_to_bytes(5) == 5_368_709_120
    assert mb_to_bytes(300) == 314_572_800
    assert bytes_to_mb(BYTES_PER_GB) == 1024
    assert cents_to_monetary(1999) == 19.99
    assert monetary_to_cents(19.99) == 1999
    assert monetary_to_cents(12.345) == 1235
    assert monetary_to_cents(cents_to_monetary(7)) == 7
    assert seconds_to_ns(30_000) == 30_000_000_000_000  # 500 min, CGRateS issue #1698
    assert ns_to_seconds(1_999_999_999) == 1


# -- accounts -------------------------------------------------------------------------------------


async def test_ping(ocs: OcsClient) -> None:
    assert await ocs.ping() is True


async def test_set_account_is_an_upsert_that_keeps_options_not_sent(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.set_account(account)
    listed = await ocs.get_accounts([account])
    assert [a.account for a in listed] == [account]

    await ocs.disable_account(account)
    await ocs.set_account(account)  # an "ensure exists" must not re-enable it
    assert (await _account_state(ocs, account)).disabled is True

    await ocs.enable_account(account)
    state = await _account_state(ocs, account)
    assert (state.tenant, state.account, state.disabled, state.balances) == (TENANT, account, False, ())


async def test_get_account_has_the_engine_account_shape(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account, allow_negative=True)
    await ocs.set_balance(account, "plan-1", DATA, gb_to_bytes(5), "+720h", 10)

    raw = await ocs.call("APIerSv2.GetAccount", {"Tenant": TENANT, "Account": account})

    assert raw["ID"] == f"{TENANT}:{account}"
    assert (raw["Disabled"], raw["AllowNegative"]) == (False, True)
    [balance] = raw["BalanceMap"]["*data"]
    assert {"Uuid", "ID", "Value", "ExpirationDate", "Weight", "Disabled"} <= balance.keys()
    assert (balance["ID"], balance["Value"], balance["Weight"]) == ("plan-1", 5_368_709_120, 10)
    expires = datetime.fromisoformat(balance["ExpirationDate"].replace("Z", "+00:00"))
    assert abs(expires - _in(30)) < timedelta(minutes=1)


async def test_missing_account(ocs: OcsClient) -> None:
    assert await ocs.get_account(_account()) is None
    with pytest.raises(NotFoundError) as caught:
        await ocs.call("APIerSv2.GetAccount", {"Tenant": TENANT, "Account": _account()})
    assert caught.value.code == "NOT_FOUND"


async def test_mandatory_fields_are_refused(ocs: OcsClient) -> None:
    with pytest.raises(RejectedError) as caught:
        await ocs.call("APIerSv2.SetAccount", {"Tenant": TENANT})
    assert caught.value.code == "MANDATORY_IE_MISSING"
    assert caught.value.body == "MANDATORY_IE_MISSING: [Account]"
    assert not caught.value.retryable

    with pytest.raises(RejectedError) as caught:
        params = {"Tenant": TENANT, "Account": _account(), "BalanceType": DATA, "Value": 1, "Balance": {}}
        await ocs.call("APIerSv1.SetBalance", params)
    assert caught.value.body == "MANDATORY_IE_MISSING: [BalanceID or BalanceUUID]"


async def test_remove_account_twice(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.remove_account(account)
    assert await ocs.get_account(account) is None
    await ocs.remove_account(account)  # NOT_FOUND the second time, a success for the client
    with pytest.raises(NotFoundError):
        await ocs.call("APIerSv1.RemoveAccount", {"Tenant": TENANT, "Account": account})


# -- balances -------------------------------------------------------------------------------------


async def test_set_balance_overwrites_the_same_id_and_other_ids_coexist(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.set_balance(account, "topup-a", DATA, mb_to_bytes(500), _in(30), 20)
    await ocs.set_balance(account, "topup-b", DATA, mb_to_bytes(200), _in(30), 20)
    await ocs.set_balance(account, "topup-a", DATA, mb_to_bytes(700), None, None)

    state = await _account_state(ocs, account)
    a, b = state.balance("topup-a"), state.balance("topup-b")
    assert a is not None and b is not None
    assert len(state.balances) == 2
    assert (a.value, b.value) == (mb_to_bytes(700), mb_to_bytes(200))
    assert a.weight == 20  # expiry and weight not sent: kept
    assert a.expires_at is not None and abs(a.expires_at - _in(30)) < timedelta(seconds=5)
    assert state.total(DATA) == mb_to_bytes(900)


async def test_set_balance_creates_a_new_balance_when_the_namesake_expired(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.set_balance(account, "topup-old", DATA, 100, _in(-1), 10)  # already expired
    await ocs.set_balance(account, "topup-old", DATA, 300, _in(1), 10)

    state = await _account_state(ocs, account)
    assert sorted(b.value for b in state.balances if b.id == "topup-old") == [100, 300]
    live = state.balance("topup-old")
    assert live is not None and live.value == 300 and not live.expired()
    assert state.total(DATA) == 300


async def test_set_balance_creates_a_missing_account(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_balance(account, "wallet", MONETARY, cents_to_monetary(1250))
    state = await _account_state(ocs, account)
    wallet = state.balance("wallet", MONETARY)
    assert wallet is not None and monetary_to_cents(wallet.value) == 1250 and wallet.expires_at is None


async def test_add_balance_is_not_idempotent(ocs: OcsClient, admin: SimAdmin) -> None:
    account = _account()
    await ocs.set_account(account)
    await _add_balance(ocs, account, "topup-x", 1000, request_id="topup:org:1:ocs-credit")
    await _add_balance(ocs, account, "topup-x", 1000, request_id="topup:org:1:ocs-credit")

    balance = (await _account_state(ocs, account)).balance("topup-x")
    assert balance is not None and balance.value == 2000  # same JSON-RPC id, two effects: CGRateS semantics
    calls = await admin.calls("APIerSv1.AddBalance")
    assert [(c["idempotency_key"], c["applied"], c["replayed"]) for c in calls] == [
        ("topup:org:1:ocs-credit", True, False)
    ] * 2


async def test_debit_consumes_what_expires_first_then_the_higher_weight(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.set_balance(account, "unlimited-expiry", DATA, 100, None, 50)
    await ocs.set_balance(account, "late-low", DATA, 100, _in(30), 10)
    await ocs.set_balance(account, "late-high", DATA, 100, _in(30), 20)
    await ocs.set_balance(account, "soon", DATA, 100, _in(1), 0)

    async def values() -> dict[str, float]:
        return {b.id: b.value for b in (await _account_state(ocs, account)).balances}

    await _debit(ocs, account, 150)
    assert await values() == {"soon": 0, "late-high": 50, "late-low": 100, "unlimited-expiry": 100}
    await _debit(ocs, account, 100)
    assert await values() == {"soon": 0, "late-high": 0, "late-low": 50, "unlimited-expiry": 100}
    await _debit(ocs, account, 80)
    assert await values() == {"soon": 0, "late-high": 0, "late-low": 0, "unlimited-expiry": 70}


async def test_debit_of_one_balance_and_refusals(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.set_balance(account, "a", VOICE, seconds_to_ns(600), _in(1), 10)
    await ocs.set_balance(account, "b", VOICE, seconds_to_ns(600), _in(30), 10)

    await _debit(ocs, account, seconds_to_ns(60), VOICE, ID="b")
    state = await _account_state(ocs, account)
    assert {b.id: ns_to_seconds(b.value) for b in state.balances} == {"a": 600, "b": 540}

    with pytest.raises(RejectedError) as caught:
        await _debit(ocs, account, seconds_to_ns(10_000), VOICE)
    assert caught.value.code == "INSUFFICIENT_CREDIT"
    assert (await _account_state(ocs, account)).total(VOICE) == seconds_to_ns(1140)  # nothing taken

    await ocs.disable_account(account)
    with pytest.raises(RejectedError) as caught:
        await _debit(ocs, account, 1, VOICE)
    assert caught.value.code == "ACCOUNT_DISABLED"


async def test_remove_balance_removes_exactly_that_id(ocs: OcsClient) -> None:
    account = _account()
    await ocs.set_account(account)
    await ocs.set_balance(account, "plan", DATA, gb_to_bytes(10), _in(30), 30)
    await ocs.set_balance(account, "topup-1", DATA, gb_to_bytes(1), _in(30), 20)
    await ocs.set_balance(account, "topup-2", DATA, gb_to_bytes(2), _in(30), 20)

    await ocs.remove_balance(account, DATA, "topup-1")
    await ocs.remove_balance(account, DATA, "topup-1")  # twice is harmless

    state = await _account_state(ocs, account)
    assert sorted(b.id for b in state.balances) == ["plan", "topup-2"]
    assert state.total(DATA) == gb_to_bytes(12)

    missing = _account()
    await ocs.remove_balance(missing, DATA, "topup-1")  # account gone: nothing left to remove
    with pytest.raises(NotFoundError):
        params = {"Tenant": TENANT, "Account": missing, "BalanceType": DATA, "Balance": {"ID": "topup-1"}}
        await ocs.call("APIerSv1.RemoveBalances", params)
    assert await ocs.get_account(missing) is None


# -- check-and-skip credit ------------------------------------------------------------------------


async def test_credit_data_once_never_resets_a_consumed_balance(ocs: OcsClient, admin: SimAdmin) -> None:
    account = _account()
    await ocs.set_account(account)
    first = await ocs.credit_data_once(
        account, "topup-7f3c", gb_to_bytes(1), _in(30), 20, request_id="topup:org:7f3c:ocs-credit"
    )
    assert first.created and first.balance.value == gb_to_bytes(1) and first.balance.weight == 20

    await _debit(ocs, account, mb_to_bytes(300))
    again = await ocs.credit_data_once(
        account, "topup-7f3c", gb_to_bytes(1), _in(30), 20, request_id="topup:org:7f3c:ocs-credit"
    )

    assert not again.created
    assert again.balance.value == gb_to_bytes(1) - mb_to_bytes(300)
    assert again.balance.uuid == first.balance.uuid
    state = await _account_state(ocs, account)
    assert state.total(DATA) == gb_to_bytes(1) - mb_to_bytes(300)
    sets = await admin.calls("APIerSv1.SetBalance")
    assert [(c["idempotency_key"], c["applied"]) for c in sets] == [("topup:org:7f3c:ocs-credit", True)]


async def test_credit_data_once_refuses_a_missing_account(ocs: OcsClient, admin: SimAdmin) -> None:
    account = _account()
    with pytest.raises(NotFoundError):
        await ocs.credit_data_once(account, "topup-1", gb_to_bytes(1), "+720h", 20)
    assert await ocs.get_account(account) is None
    assert await admin.calls("APIerSv1.SetBalance") == []


# -- faults ---------------------------------------------------------------------------------------


async def test_error_fault_is_a_server_error_and_applies_nothing(ocs: OcsClient, admin: SimAdmin) -> None:
    account = _account()
    await ocs.set_account(account)
    await admin.fault("APIerSv1.SetBalance", "error")

    with pytest.raises(TransientError) as caught:
        await ocs.set_balance(account, "topup-1", DATA, 100, request_id="step-1")
    assert caught.value.code == "SERVER_ERROR" and caught.value.retryable
    assert (await _account_state(ocs, account)).balances == ()

    await ocs.set_balance(account, "topup-1", DATA, 100, request_id="step-1")  # the retry goes through
    assert (await _account_state(ocs, account)).total(DATA) == 100
    calls = await admin.calls("APIerSv1.SetBalance")
    assert [(c["fault"], c["applied"], c["idempotency_key"]) for c in calls] == [
        ("error", False, "step-1"),
        (None, True, "step-1"),
    ]


async def test_reject_fault_is_not_retryable(ocs: OcsClient, admin: SimAdmin) -> None:
    account = _account()
    await ocs.set_account(account)
    await admin.fault("APIerSv2.SetAccount", "reject")
    with pytest.raises(RejectedError) as caught:
        await ocs.disable_account(account)
    assert caught.value.code == "ACCOUNT_DISABLED" and not caught.value.retryable
    assert (await _account_state(ocs, account)).disabled is False


async def test_a_fault_with_a_match_is_taken_only_by_a_call_that_holds_it(ocs: OcsClient, admin: SimAdmin) -> None:
    """A test sharing a simulator aims its fault at its own account; other accounts' calls pass untouched."""
    mine, other = _account(), _account()
    await ocs.set_account(mine)
    await ocs.set_account(other)
    await admin.fault("APIerSv2.SetAccount", "reject", match=mine)
    await ocs.disable_account(other)  # first in line, but not the account named: untouched
    assert (await _account_state(ocs, other)).disabled is True
    with pytest.raises(RejectedError):
        await ocs.disable_account(mine)
    await ocs.disable_account(mine)  # the fault was taken once
    assert (await _account_state(ocs, mine)).disabled is True


async def test_timeout_fault(own_ocs_url: str, admin: SimAdmin) -> None:
    account = _account()
    await admin.fault("APIerSv2.GetAccount", "timeout", latency_ms=800)
    async with OcsClient(own_ocs_url, TENANT, timeout_s=0.3) as impatient:
        with pytest.raises(TransientError) as caught:
            await impatient.get_account(account)
    assert caught.value.code == "timeout"
    [call] = await admin.wait_calls("APIerSv2.GetAccount", 1)
    assert (call["fault"], call["applied"]) == ("timeout", False)


async def test_latency_fault_slows_but_succeeds(ocs: OcsClient, admin: SimAdmin) -> None:
    await admin.fault("APIerSv1.Ping", "latency", latency_ms=300)
    started = time.monotonic()
    assert await ocs.ping() is True
    assert time.monotonic() - started >= 0.3


async def test_lost_response_after_credit_then_retry_skips(ocs: OcsClient, admin: SimAdmin) -> None:
    account = _account()
    await ocs.set_account(account)
    await admin.fault("APIerSv1.SetBalance", "lost_response")

    with pytest.raises(TransientError):
        await ocs.credit_data_once(account, "topup-9", gb_to_bytes(2), "+720h", 20, request_id="topup:o:9:ocs")
    await _debit(ocs, account, mb_to_bytes(100))  # the subscriber uses data before the retry
    retried = await ocs.credit_data_once(account, "topup-9", gb_to_bytes(2), "+720h", 20, request_id="topup:o:9:ocs")

    assert not retried.created
    assert retried.balance.value == gb_to_bytes(2) - mb_to_bytes(100)
    calls = await admin.calls("APIerSv1.SetBalance")
    assert [(c["fault"], c["applied"], c["idempotency_key"]) for c in calls] == [
        ("lost_response", True, "topup:o:9:ocs")
    ]


async def test_lost_response_then_blind_add_balance_retry_doubles(ocs: OcsClient, admin: SimAdmin) -> None:
    """Why the adapter never retries AddBalance blindly: the JSON-RPC id is not an idempotency key."""
    account = _account()
    await ocs.set_account(account)
    await admin.fault("APIerSv1.AddBalance", "lost_response")
    with pytest.raises(TransientError):
        await _add_balance(ocs, account, "topup-2", 500, request_id="k-1")
    await _add_balance(ocs, account, "topup-2", 500, request_id="k-1")
    assert (await _account_state(ocs, account)).total(DATA) == 1000


async def test_fault_times_and_wildcard(ocs: OcsClient, admin: SimAdmin) -> None:
    await admin.fault("*", "error", times=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            await ocs.ping()
    assert await ocs.ping() is True


async def test_unreachable_ocs_is_transient() -> None:
    async with OcsClient(f"http://127.0.0.1:{free_port()}/jsonrpc", TENANT, timeout_s=1.0) as nowhere:
        with pytest.raises(TransientError) as caught:
            await nowhere.ping()
    assert caught.value.code == "transport"


async def test_unknown_method(ocs: OcsClient) -> None:
    with pytest.raises(RejectedError) as caught:
        await ocs.call("APIerSv1.NoSuchThing", {})
    assert "can't find method" in str(caught.value)


# -- pools: one OCS account per pool (docs/decisions.md) ------------------------------------------


async def test_a_pool_grant_is_one_balance_every_member_draws_on(ocs: OcsClient) -> None:
    """The renewal's grant lands on the pool's account (upserted just before); both members are rated on that
    account, so their usage shares the one balance and a member's own account is never touched."""
    pool = pool_ocs_account(f"p{uuid.uuid4().hex[:10]}")
    members = [_account(), _account()]
    for member in members:
        await ocs.set_account(member)
    grant = OcsGrant(
        account=pool,
        balance_id=period_balance_id("plan-pool", 1),
        value_bytes=3 * BYTES_PER_GB,
        expiry=_in(30),
        request_id=f"subscription/org/pool-x:period-1:grant-{uuid.uuid4().hex[:6]}",
    )
    activities = OcsActivities(ocs)
    with pytest.raises(ApplicationError, match="ACCOUNT_NOT_FOUND"):  # why the workflow upserts it first
        await activities.ocs_grant_plan(grant)
    await activities.ocs_create_account(OcsAccountRequest(account=pool, request_id=f"{grant.request_id}:account"))
    await activities.ocs_grant_plan(grant)
    await activities.ocs_grant_plan(grant)  # a retried grant: still one allowance

    for member in members:
        await _debit(ocs, charging_account(member, pool) or "", BYTES_PER_GB)
    left = (await _account_state(ocs, pool)).balances
    assert [(b.id, b.value) for b in left] == [(period_balance_id("plan-pool", 1), BYTES_PER_GB)]
    with pytest.raises(RejectedError):  # 2 GB more than the pool has left: refused for any member
        await _debit(ocs, charging_account(members[0], pool) or "", 2 * BYTES_PER_GB)
    for member in members:
        assert not [b for b in (await _account_state(ocs, member)).balances if b.value]
