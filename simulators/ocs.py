"""A CGRateS-compatible OCS: the JSON-RPC subset of `APIerSv1`/`APIerSv2` the OCS adapter uses.

`POST /jsonrpc` with `{"method", "params": [obj], "id"}` answers `{"id", "result", "error"}`; errors are
CGRateS' plain strings (`NOT_FOUND`, `MANDATORY_IE_MISSING: [Account]`, `SERVER_ERROR`, …) with HTTP 200,
as the Go `net/rpc` JSON codec does. Semantics follow `apier/v1/accounts.go` and `engine/account.go`:

* `APIerSv2.SetAccount` is an upsert; only the `ExtraOptions` keys sent (`Disabled`, `AllowNegative`)
  change the account.
* `APIerSv1.SetBalance` overwrites the value of the non-expired balance with that `ID` (or `UUID`), else
  creates it; one of them is mandatory. `APIerSv1.AddBalance` adds on every call (not idempotent). Both
  create a missing account.
* `APIerSv1.DebitBalance` stands in for usage rating: it consumes the balances of the type that expire
  first, then the higher weight first (SPEC §8); a balance `ID` restricts it to that balance. Without
  `AllowNegative`, a debit larger than what is left is refused with `INSUFFICIENT_CREDIT`; a disabled
  account is refused with `ACCOUNT_DISABLED`.
* `APIerSv1.RemoveBalances` removes the balances matching type + `ID`/`UUID` (OK when none match,
  `NOT_FOUND` when the account is missing); `APIerSv1.RemoveAccount` answers `NOT_FOUND` the second time.

CGRateS has no request idempotency: the JSON-RPC `id` is recorded as the call's idempotency key in
`/_sim/calls`, never used to replay. The JSON-RPC method is the fault `op`.
"""

from __future__ import annotations

import calendar
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from simulators._sim import FaultMode, Simulator

SYSTEM = "ocs"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

ERR_NOT_FOUND = "NOT_FOUND"
ERR_SERVER = "SERVER_ERROR"
ERR_ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
ERR_INSUFFICIENT_CREDIT = "INSUFFICIENT_CREDIT"
# What an injected `reject` fault answers: a business refusal, as CGRateS gives for a disabled account.
REJECT_FAULT_ERROR = ERR_ACCOUNT_DISABLED


class RpcError(Exception):
    """A CGRateS error string, returned in the `error` member of the JSON-RPC answer."""


def mandatory_missing(*fields: str) -> RpcError:
    return RpcError(f"MANDATORY_IE_MISSING: [{' '.join(fields)}]")


@dataclass
class Balance:
    uuid: str
    id: str
    value: float = 0.0
    expires_at: datetime | None = None
    weight: float = 0.0
    disabled: bool = False
    blocker: bool = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def export(self) -> dict[str, Any]:
        return {
            "Uuid": self.uuid,
            "ID": self.id,
            "Value": _go_number(self.value),
            "ExpirationDate": _go_time(self.expires_at),
            "Weight": _go_number(self.weight),
            "DestinationIDs": {},
            "RatingSubject": "",
            "Categories": {},
            "SharedGroups": {},
            "Timings": None,
            "TimingIDs": {},
            "Disabled": self.disabled,
            "Factors": None,
            "Blocker": self.blocker,
        }


@dataclass
class Account:
    tenant: str
    account: str
    disabled: bool = False
    allow_negative: bool = False
    balances: dict[str, list[Balance]] = field(default_factory=dict)
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def export(self) -> dict[str, Any]:
        return {
            "ID": f"{self.tenant}:{self.account}",
            "BalanceMap": {kind: [b.export() for b in chain] for kind, chain in self.balances.items() if chain} or None,
            "UnitCounters": None,
            "ActionTriggers": None,
            "AllowNegative": self.allow_negative,
            "Disabled": self.disabled,
            "UpdateTime": _go_time(self.updated_at),
        }


@dataclass(frozen=True)
class BalanceFilter:
    """The `Balance` map of a balance call (`engine.NewBalanceFilter`): what to match and what to set."""

    id: str | None = None
    uuid: str | None = None
    expires_at: datetime | None = None
    expiry_given: bool = False
    weight: float | None = None
    disabled: bool | None = None
    blocker: bool | None = None

    @classmethod
    def parse(cls, raw: Any, now: datetime) -> BalanceFilter:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise RpcError("SERVER_ERROR: Balance must be an object")
        expiry_raw = raw.get("ExpiryTime", raw.get("ExpirationDate"))
        return cls(
            id=_opt_str(raw.get("ID")),
            uuid=_opt_str(raw.get("UUID", raw.get("Uuid"))),
            expires_at=parse_expiry(expiry_raw, now) if expiry_raw is not None else None,
            expiry_given=expiry_raw is not None,
            weight=float(raw["Weight"]) if raw.get("Weight") is not None else None,
            disabled=bool(raw["Disabled"]) if raw.get("Disabled") is not None else None,
            blocker=bool(raw["Blocker"]) if raw.get("Blocker") is not None else None,
        )

    @property
    def selects(self) -> bool:
        return bool(self.id or self.uuid)

    def matches(self, balance: Balance) -> bool:
        if self.uuid and balance.uuid != self.uuid:
            return False
        return not (self.id and balance.id != self.id)

    def new_balance(self, value: float) -> Balance:
        balance_uuid = self.uuid or str(uuid.uuid4())
        return Balance(
            uuid=balance_uuid,
            id=self.id or balance_uuid,
            value=value,
            expires_at=self.expires_at,
            weight=self.weight or 0.0,
            disabled=bool(self.disabled),
            blocker=bool(self.blocker),
        )

    def update(self, balance: Balance) -> None:
        if self.expiry_given:
            balance.expires_at = self.expires_at
        if self.weight is not None:
            balance.weight = self.weight
        if self.disabled is not None:
            balance.disabled = self.disabled
        if self.blocker is not None:
            balance.blocker = self.blocker


class Ocs:
    """The business state: accounts by (tenant, account). Every method is synchronous, hence atomic."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], Account] = {}

    def reset(self) -> None:
        self.accounts.clear()

    def dispatch(self, method: str, params: dict[str, Any]) -> Any:
        service, _, name = method.partition(".")
        service = {"ApierV1": "APIerSv1", "ApierV2": "APIerSv2"}.get(service, service)
        handler = self.METHODS.get(f"{service}.{name}")
        if handler is None:
            raise RpcError(f"rpc: can't find method {method}")
        return handler(self, params)

    # -- accounts ---------------------------------------------------------------------------------

    def set_account(self, p: dict[str, Any]) -> str:
        tenant, account = _tenant_account(p)
        options = p.get("ExtraOptions") or {}
        acc = self.accounts.get((tenant, account))
        if acc is None:
            acc = self.accounts[(tenant, account)] = Account(tenant=tenant, account=account)
        if "AllowNegative" in options:
            acc.allow_negative = bool(options["AllowNegative"])
        if "Disabled" in options:
            acc.disabled = bool(options["Disabled"])
        acc.updated_at = datetime.now(UTC)
        return "OK"

    def get_account(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._account(p).export()

    def get_accounts(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        tenant = _opt_str(p.get("Tenant"))
        if not tenant:
            raise mandatory_missing("Tenant")
        wanted = [a for a in p.get("AccountIDs") or [] if a]
        if wanted:
            found = [self.accounts[(tenant, a)] for a in wanted if (tenant, a) in self.accounts]
        else:
            found = [acc for (t, _), acc in sorted(self.accounts.items()) if t == tenant]
        offset, limit = int(p.get("Offset") or 0), int(p.get("Limit") or 0)
        found = found[offset : offset + limit] if limit else found[offset:]
        filters = p.get("Filter") or {}
        if "Disabled" in filters:
            found = [a for a in found if a.disabled == bool(filters["Disabled"])]
        if "AllowNegative" in filters:
            found = [a for a in found if a.allow_negative == bool(filters["AllowNegative"])]
        return [a.export() for a in found]

    def remove_account(self, p: dict[str, Any]) -> str:
        tenant, account = _tenant_account(p)
        if self.accounts.pop((tenant, account), None) is None:
            raise RpcError(ERR_NOT_FOUND)
        return "OK"

    # -- balances ---------------------------------------------------------------------------------

    def set_balance(self, p: dict[str, Any]) -> str:
        acc, kind, bf, value = self._balance_call(p, value_mandatory=False)
        if not bf.selects:
            raise mandatory_missing("BalanceID", "or", "BalanceUUID")
        now = datetime.now(UTC)
        chain = acc.balances.setdefault(kind, [])
        current = next((b for b in chain if bf.matches(b) and not b.expired(now)), None)
        if current is None:
            chain.append(bf.new_balance(value))
        else:
            current.value = value
            bf.update(current)
        acc.updated_at = now
        return "OK"

    def add_balance(self, p: dict[str, Any]) -> str:
        acc, kind, bf, value = self._balance_call(p, value_mandatory=True)
        now = datetime.now(UTC)
        chain = acc.balances.setdefault(kind, [])
        current = next((b for b in chain if bf.selects and bf.matches(b) and not b.expired(now)), None)
        if current is None or p.get("Overwrite"):
            if current is not None:
                chain.remove(current)
            chain.append(bf.new_balance(value))
        else:
            current.value += value
            bf.update(current)
        acc.updated_at = now
        return "OK"

    def debit_balance(self, p: dict[str, Any]) -> str:
        tenant, account = _tenant_account(p)
        acc = self.accounts.get((tenant, account))
        if acc is None:
            raise RpcError(ERR_NOT_FOUND)
        if acc.disabled:
            raise RpcError(ERR_ACCOUNT_DISABLED)
        kind = _balance_type(p)
        amount = _value(p, mandatory=True)
        now = datetime.now(UTC)
        bf = BalanceFilter.parse(p.get("Balance"), now)
        usable = [
            b
            for b in acc.balances.get(kind, [])
            if not b.expired(now) and not b.disabled and (not bf.selects or bf.matches(b))
        ]
        usable.sort(key=consumption_order)
        available = sum(max(b.value, 0.0) for b in usable)
        if amount > available and not acc.allow_negative:
            raise RpcError(ERR_INSUFFICIENT_CREDIT)
        left = amount
        for balance in usable:
            take = min(max(balance.value, 0.0), left)
            balance.value -= take
            left -= take
            if left <= 0:
                break
        if left > 0:  # AllowNegative: the rest goes below zero on the last balance consumed
            if usable:
                usable[-1].value -= left
            else:
                acc.balances.setdefault(kind, []).append(bf.new_balance(-left))
        acc.updated_at = now
        return "OK"

    def remove_balances(self, p: dict[str, Any]) -> str:
        tenant, account = _tenant_account(p)
        kind = _balance_type(p)
        acc = self.accounts.get((tenant, account))
        if acc is None:
            raise RpcError(ERR_NOT_FOUND)
        bf = BalanceFilter.parse(p.get("Balance"), datetime.now(UTC))
        chain = acc.balances.get(kind, [])
        acc.balances[kind] = [b for b in chain if not bf.matches(b)]
        acc.updated_at = datetime.now(UTC)
        return "OK"

    def ping(self, _p: dict[str, Any]) -> str:
        return "Pong"

    # -- helpers ----------------------------------------------------------------------------------

    def _account(self, p: dict[str, Any]) -> Account:
        tenant, account = _tenant_account(p)
        acc = self.accounts.get((tenant, account))
        if acc is None:
            raise RpcError(ERR_NOT_FOUND)
        return acc

    def _balance_call(self, p: dict[str, Any], *, value_mandatory: bool) -> tuple[Account, str, BalanceFilter, float]:
        tenant, account = _tenant_account(p)
        kind = _balance_type(p)
        value = _value(p, mandatory=value_mandatory)
        bf = BalanceFilter.parse(p.get("Balance"), datetime.now(UTC))
        acc = self.accounts.get((tenant, account))
        if acc is None:  # both SetBalance and AddBalance create a missing account
            acc = self.accounts[(tenant, account)] = Account(tenant=tenant, account=account)
        return acc, kind, bf, value

    METHODS: dict[str, Any] = {
        "APIerSv2.SetAccount": set_account,
        "APIerSv1.SetAccount": set_account,
        "APIerSv2.GetAccount": get_account,
        "APIerSv2.GetAccounts": get_accounts,
        "APIerSv1.SetBalance": set_balance,
        "APIerSv2.SetBalance": set_balance,
        "APIerSv1.AddBalance": add_balance,
        "APIerSv1.DebitBalance": debit_balance,
        "APIerSv1.RemoveBalances": remove_balances,
        "APIerSv1.RemoveAccount": remove_account,
        "APIerSv1.Ping": ping,
    }


def consumption_order(balance: Balance) -> tuple[int, datetime, float]:
    """The balance that expires first is consumed first; on equal expiry the higher weight first."""
    if balance.expires_at is None:
        return (1, datetime.max.replace(tzinfo=UTC), -balance.weight)
    return (0, balance.expires_at, -balance.weight)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> timedelta:
    """`720h`, `1h30m`, `90s` (Go `time.ParseDuration`)."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise RpcError(f"SERVER_ERROR: time: invalid duration {text!r}")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_expiry(raw: Any, now: datetime) -> datetime | None:
    """`ExpiryTime` as CGRateS' `utils.ParseTimeDetectLayout` reads it: RFC3339, `+720h`, `*unlimited`,
    `*month_end`, a Unix timestamp; empty or `*unlimited` means no expiry."""
    text = str(raw).strip()
    if text in ("", "*unlimited", GO_ZERO_TIME):
        return None
    if text.startswith("+"):
        return now + parse_go_duration(text[1:])
    if text == "*month_end":
        last_day = calendar.monthrange(now.year, now.month)[1]
        return now.replace(day=last_day, hour=23, minute=59, second=59, microsecond=0)
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        parsed = datetime.fromisoformat(_trim_fraction(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise RpcError(f"SERVER_ERROR: Unsupported time format: {text}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _trim_fraction(text: str) -> str:
    """Go prints nanoseconds; Python parses at most microseconds."""
    return re.sub(r"(\.\d{6})\d+", r"\1", text)


def _go_time(value: datetime | None) -> str:
    if value is None:
        return GO_ZERO_TIME
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _go_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _tenant_account(p: dict[str, Any]) -> tuple[str, str]:
    missing = [name for name in ("Tenant", "Account") if not _opt_str(p.get(name))]
    if missing:
        raise mandatory_missing(*missing)
    return str(p["Tenant"]), str(p["Account"])


def _balance_type(p: dict[str, Any]) -> str:
    kind = _opt_str(p.get("BalanceType"))
    if kind is None:
        raise mandatory_missing("BalanceType")
    return kind


def _value(p: dict[str, Any], *, mandatory: bool) -> float:
    raw = p.get("Value")
    if raw is None:
        if mandatory:
            raise mandatory_missing("Value")
        return 0.0
    try:
        return abs(float(raw))  # CGRateS takes math.Abs(attr.Value); the action gives the sign
    except (TypeError, ValueError) as exc:
        raise RpcError(f"SERVER_ERROR: invalid Value {raw!r}") from exc


def _rpc_answer(rpc_id: Any, result: Any = None, error: str | None = None) -> dict[str, Any]:
    return {"id": rpc_id, "result": result, "error": error}


def create_app() -> FastAPI:
    app = FastAPI(title="OCS simulator (CGRateS JSON-RPC subset)")
    sim = Simulator()
    ocs = Ocs()
    app.state.sim = sim
    app.state.ocs = ocs
    sim.install(app, on_reset=ocs.reset)

    @app.post("/jsonrpc")
    async def jsonrpc(request: Request) -> Response:
        try:
            envelope = await request.json()
        except ValueError:
            return JSONResponse(_rpc_answer(None, error="SERVER_ERROR: invalid JSON"), status_code=400)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("method"), str):
            return JSONResponse(_rpc_answer(None, error="SERVER_ERROR: invalid request"), status_code=400)
        method: str = envelope["method"]
        rpc_id = envelope.get("id")
        raw_params = envelope.get("params")
        params: dict[str, Any] = (
            raw_params[0] if isinstance(raw_params, list) and raw_params and isinstance(raw_params[0], dict) else {}
        )

        async def effect() -> tuple[int, Any]:
            try:
                return 200, _rpc_answer(rpc_id, result=ocs.dispatch(method, params))
            except RpcError as exc:
                return 200, _rpc_answer(rpc_id, error=str(exc))

        def error_body(mode: FaultMode) -> tuple[int, Any]:
            error = REJECT_FAULT_ERROR if mode is FaultMode.REJECT else ERR_SERVER
            return 200, _rpc_answer(rpc_id, error=error)

        return await sim.run(
            method,
            effect,
            key=None if rpc_id is None else str(rpc_id),
            request={"method": method, "params": params},
            error_body=error_body,
            replay_by_key=False,
            is_applied=lambda status, body: status < 400 and isinstance(body, dict) and body.get("error") is None,
        )

    return app
