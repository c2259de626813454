"""OCS client: CGRateS JSON-RPC (`APIerSv1`/`APIerSv2`, the `master`/`v0.10` API line).

CGRateS has no request idempotency: `AddBalance` adds on every call and `SetBalance` on a retry would
reset a balance the subscriber already used. So top-ups go through `credit_data_once` (check-and-skip:
read the account, write only if no balance carries the top-up's ID), and the idempotency key of the
step travels as the JSON-RPC `id`, where the OCS logs (and our simulator records) it.

Units (SPEC §8): data in bytes, `*monetary` as a float of currency units (we hold cents), `*voice` in
nanoseconds (we hold seconds); the helpers below are the only place these conversions happen.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Protocol

import httpx
from pydantic import BaseModel, ConfigDict

from integrations.errors import IntegrationError, NotFoundError, RejectedError, TransientError

SYSTEM: Final = "ocs"

DATA: Final = "*data"
MONETARY: Final = "*monetary"
VOICE: Final = "*voice"
SMS: Final = "*sms"

BYTES_PER_MB: Final = 1024 * 1024
BYTES_PER_GB: Final = 1024 * BYTES_PER_MB
NS_PER_SECOND: Final = 1_000_000_000
GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"


# -- units ----------------------------------------------------------------------------------------


def mb_to_bytes(mb: int) -> int:
    return mb * BYTES_PER_MB


def gb_to_bytes(gb: int) -> int:
    return gb * BYTES_PER_GB


def bytes_to_mb(value: float) -> float:
    return value / BYTES_PER_MB


def cents_to_monetary(cents: int) -> float:
    """Integer cents → CGRateS `*monetary` value (currency units as a float)."""
    return float(Decimal(cents) / 100)


def monetary_to_cents(value: float) -> int:
    """CGRateS `*monetary` value → integer cents, rounded half up (12.345 → 1235)."""
    return int((Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def seconds_to_ns(seconds: int) -> int:
    return seconds * NS_PER_SECOND


def ns_to_seconds(value: float) -> int:
    """CGRateS `*voice` nanoseconds → whole seconds left, rounded down (never promise more than is left)."""
    return int(Decimal(str(value)) // NS_PER_SECOND)


# -- models ---------------------------------------------------------------------------------------


class OcsBalance(BaseModel):
    model_config = ConfigDict(frozen=True)

    uuid: str
    id: str
    balance_type: str
    value: float
    expires_at: datetime | None = None
    weight: float = 0.0
    disabled: bool = False

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


class OcsAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    account: str
    disabled: bool = False
    allow_negative: bool = False
    balances: tuple[OcsBalance, ...] = ()

    def balance(self, balance_id: str, balance_type: str | None = None) -> OcsBalance | None:
        """The balance with that ID (the live one if an expired namesake is also there)."""
        found = [
            b for b in self.balances if b.id == balance_id and (balance_type is None or b.balance_type == balance_type)
        ]
        found.sort(key=lambda b: b.expired())
        return found[0] if found else None

    def total(self, balance_type: str, now: datetime | None = None) -> float:
        """What is left of a balance type: non-expired, enabled balances."""
        return sum(
            b.value for b in self.balances if b.balance_type == balance_type and not b.disabled and not b.expired(now)
        )


class CreditResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    created: bool  # False: a balance with that ID was already there (a retry), left untouched
    balance: OcsBalance


Expiry = datetime | str | None  # a datetime, or CGRateS text: "+720h", "*month_end", RFC3339


class OcsPort(Protocol):
    """What the activities need from an OCS; `OcsClient` speaks the APIerS API, a CGRateS 1.0
    (`AdminSv1`/`AccountSv1`) adapter can implement the same protocol."""

    async def set_account(
        self,
        account: str,
        *,
        disabled: bool | None = None,
        allow_negative: bool | None = None,
        request_id: str | None = None,
    ) -> None: ...

    async def get_account(self, account: str, *, request_id: str | None = None) -> OcsAccount | None: ...

    async def credit_data_once(
        self,
        account: str,
        balance_id: str,
        value_bytes: int,
        expiry: Expiry,
        weight: float,
        *,
        extra: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> CreditResult: ...

    async def remove_balance(
        self, account: str, balance_type: str, balance_id: str, *, request_id: str | None = None
    ) -> None: ...

    async def disable_account(self, account: str, *, request_id: str | None = None) -> None: ...

    async def enable_account(self, account: str, *, request_id: str | None = None) -> None: ...

    async def remove_account(self, account: str, *, request_id: str | None = None) -> None: ...


# -- errors ---------------------------------------------------------------------------------------

_NOT_FOUND_CODES = frozenset({"NOT_FOUND", "ACCOUNT_NOT_FOUND"})
_TRANSIENT_CODES = frozenset({"SERVER_ERROR", "TIMEOUT", "DISCONNECTED", "MAX_RECURSION_DEPTH_REACHED"})


def classify_error(method: str, error: str) -> IntegrationError:
    """A CGRateS error string → our error tree. `SERVER_ERROR: …` (storage, locking) is retryable;
    `MANDATORY_IE_MISSING`, `ACCOUNT_DISABLED`, `INSUFFICIENT_CREDIT` and the unknown are refusals."""
    code = re.split(r"[:\s]", error.strip(), maxsplit=1)[0] or "UNKNOWN"
    error_class: type[IntegrationError]
    if code in _NOT_FOUND_CODES:
        error_class = NotFoundError
    elif code in _TRANSIENT_CODES:
        error_class = TransientError
    else:
        error_class = RejectedError
    return error_class(SYSTEM, code, f"{method}: {error}", body=error)


# -- client ---------------------------------------------------------------------------------------


class OcsClient:
    """Async JSON-RPC client. Each call sends `request_id` (the step's idempotency key, e.g.
    `"topup:org:1:ocs-credit"`) as the JSON-RPC `id`, or a random one for reads."""

    def __init__(
        self, url: str, tenant: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self.tenant = tenant
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> OcsClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def call(self, method: str, params: Mapping[str, Any], *, request_id: str | None = None) -> Any:
        """One JSON-RPC call; returns `result` or raises from `integrations.errors`."""
        rpc_id = request_id or f"{method}:{uuid.uuid4().hex}"
        envelope = {"method": method, "params": [dict(params)], "id": rpc_id}
        try:
            response = await self._http.post(self.url, json=envelope)
        except httpx.TimeoutException as exc:
            raise TransientError(SYSTEM, "timeout", f"{method} timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(SYSTEM, "transport", f"{method}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(SYSTEM, str(response.status_code), f"{method}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientError(SYSTEM, "bad_response", f"{method}: answer is not JSON") from exc
        if not isinstance(body, dict):
            raise TransientError(SYSTEM, "bad_response", f"{method}: answer is not a JSON-RPC object")
        if body.get("error") not in (None, ""):
            raise classify_error(method, str(body["error"]))
        if response.status_code >= 400:
            raise RejectedError(SYSTEM, str(response.status_code), f"{method}: HTTP {response.status_code}")
        return body.get("result")

    def _who(self, account: str) -> dict[str, Any]:
        return {"Tenant": self.tenant, "Account": account}

    # -- accounts ---------------------------------------------------------------------------------

    async def set_account(
        self,
        account: str,
        *,
        disabled: bool | None = None,
        allow_negative: bool | None = None,
        request_id: str | None = None,
    ) -> None:
        """Creates or updates the account. Options left at None are not sent, so an upsert never
        re-enables an account that was disabled (CGRateS only changes the `ExtraOptions` it gets)."""
        options: dict[str, bool] = {}
        if disabled is not None:
            options["Disabled"] = disabled
        if allow_negative is not None:
            options["AllowNegative"] = allow_negative
        params: dict[str, Any] = self._who(account)
        if options:
            params["ExtraOptions"] = options
        await self.call("APIerSv2.SetAccount", params, request_id=request_id)

    async def disable_account(self, account: str, *, request_id: str | None = None) -> None:
        await self.set_account(account, disabled=True, request_id=request_id)

    async def enable_account(self, account: str, *, request_id: str | None = None) -> None:
        await self.set_account(account, disabled=False, request_id=request_id)

    async def get_account(self, account: str, *, request_id: str | None = None) -> OcsAccount | None:
        try:
            raw = await self.call("APIerSv2.GetAccount", self._who(account), request_id=request_id)
        except NotFoundError:
            return None
        return parse_account(raw)

    async def get_accounts(
        self, account_ids: list[str] | None = None, *, offset: int = 0, limit: int = 0
    ) -> list[OcsAccount]:
        params = {"Tenant": self.tenant, "AccountIDs": account_ids or [], "Offset": offset, "Limit": limit}
        raw = await self.call("APIerSv2.GetAccounts", params)
        return [parse_account(item) for item in raw or []]

    async def remove_account(self, account: str, *, request_id: str | None = None) -> None:
        """Deletes the account; an account already gone (`NOT_FOUND`) is a success."""
        try:
            await self.call("APIerSv1.RemoveAccount", self._who(account), request_id=request_id)
        except NotFoundError:
            return

    # -- balances ---------------------------------------------------------------------------------

    async def set_balance(
        self,
        account: str,
        balance_id: str,
        balance_type: str,
        value: float,
        expiry: Expiry = None,
        weight: float | None = None,
        extra: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        """`APIerSv1.SetBalance`: overwrites the value of the live balance with that ID, else creates it.
        Not safe to retry after usage (it would reset the consumed value): use `credit_data_once`."""
        balance: dict[str, Any] = {"ID": balance_id}
        if expiry is not None:
            balance["ExpiryTime"] = format_expiry(expiry)
        if weight is not None:
            balance["Weight"] = weight
        params: dict[str, Any] = {**self._who(account), "BalanceType": balance_type, "Value": value, "Balance": balance}
        if extra:
            params["ActionExtraData"] = dict(extra)
        await self.call("APIerSv1.SetBalance", params, request_id=request_id)

    async def remove_balance(
        self, account: str, balance_type: str, balance_id: str, *, request_id: str | None = None
    ) -> None:
        """Removes exactly the balance with that ID. Removing twice, or from an account that no longer
        exists (`NOT_FOUND`), is a success: the balance is gone either way."""
        params = {**self._who(account), "BalanceType": balance_type, "Balance": {"ID": balance_id}}
        try:
            await self.call("APIerSv1.RemoveBalances", params, request_id=request_id)
        except NotFoundError:
            return

    async def credit_data_once(
        self,
        account: str,
        balance_id: str,
        value_bytes: int,
        expiry: Expiry,
        weight: float,
        *,
        extra: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> CreditResult:
        """Check-and-skip data credit: if the account already holds a balance with `balance_id` (even
        partly used or expired), it is returned untouched; else `SetBalance` creates it. A retry after
        a lost answer therefore never resets what the subscriber consumed. The account must exist
        (a missing one raises NotFoundError instead of being created by `SetBalance`)."""
        read_id = f"{request_id}:check" if request_id else None
        before = await self.get_account(account, request_id=read_id)
        if before is None:
            raise NotFoundError(SYSTEM, "ACCOUNT_NOT_FOUND", f"account {account!r} does not exist")
        existing = before.balance(balance_id)
        if existing is not None:
            return CreditResult(created=False, balance=existing)
        await self.set_balance(
            account, balance_id, DATA, float(value_bytes), expiry, weight, extra, request_id=request_id
        )
        after = await self.get_account(account, request_id=f"{request_id}:read-back" if request_id else None)
        created = after.balance(balance_id, DATA) if after is not None else None
        if created is None:
            raise TransientError(SYSTEM, "not_applied", f"balance {balance_id!r} missing after SetBalance")
        return CreditResult(created=True, balance=created)

    async def ping(self) -> bool:
        return bool(await self.call("APIerSv1.Ping", {}) == "Pong")


# -- wire format ----------------------------------------------------------------------------------


def format_expiry(expiry: datetime | str) -> str:
    """A datetime → RFC3339 in UTC; CGRateS text (`+720h`, `*month_end`, `*unlimited`) as is."""
    if isinstance(expiry, datetime):
        moment = expiry.astimezone(UTC) if expiry.tzinfo else expiry.replace(tzinfo=UTC)
        return moment.isoformat().replace("+00:00", "Z")
    return expiry


def parse_go_time(text: str | None) -> datetime | None:
    """Go's RFC3339Nano; the zero time (`0001-01-01T00:00:00Z`) means no expiry."""
    if not text or text.startswith("0001-01-01"):
        return None
    normalised = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(normalised)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_account(raw: Mapping[str, Any]) -> OcsAccount:
    """`engine.Account` (APIerSv2 shape: `ID` "tenant:account", `BalanceMap` by balance type)."""
    tenant, _, account = str(raw.get("ID", "")).partition(":")
    balances = [
        OcsBalance(
            uuid=str(item.get("Uuid", "")),
            id=str(item.get("ID", "")),
            balance_type=balance_type,
            value=float(item.get("Value") or 0.0),
            expires_at=parse_go_time(item.get("ExpirationDate")),
            weight=float(item.get("Weight") or 0.0),
            disabled=bool(item.get("Disabled", False)),
        )
        for balance_type, chain in (raw.get("BalanceMap") or {}).items()
        for item in chain or []
    ]
    return OcsAccount(
        tenant=tenant,
        account=account,
        disabled=bool(raw.get("Disabled", False)),
        allow_negative=bool(raw.get("AllowNegative", False)),
        balances=tuple(balances),
    )
