"""Unit tests of the security building blocks: SSRF address checks (S9), TOTP window and replay (S4),
secrets at rest, API key format, permissions, the authorisation policy, the rate limiter (S5)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pyotp
import pytest

from api.ratelimit import RateLimiter
from domain.authz import Action, Area, Principal, PrincipalKind, TenantChain, authorize, validate_permissions
from domain.enums import StaffRole
from domain.errors import NotFound, PermissionDenied, RateLimited, ValidationFailed
from domain.models import RateLimitHit
from domain.security import (
    API_KEY_PATTERN,
    SecretBox,
    api_key_prefix,
    check_password_rule,
    hash_password,
    new_api_key,
    new_backup_codes,
    new_totp_secret,
    normalize_backup_code,
    totp_match_step,
    verify_password,
)
from infra.db import create_engine, create_sessionmaker
from integrations.webhooks import AllowList, TargetRejected, is_public_address, parse_target, resolve_target

# --- SSRF ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "64:ff9b::a00:1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


NONE = AllowList.parse([])


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "ftp://example.com/",
        "http://example.com/hook",  # plain http outside the allow-list
        "https://user:pass@example.com/hook",
        "https://example.com/hook#frag",
        "https:///nohost",
        "https://exa mple.com/",
        "https://example.com:0/",
        "https://" + "a" * 2100 + ".com/",
        "javascript:alert(1)",
    ],
)
def test_bad_urls_are_refused_before_dns(url: str) -> None:
    with pytest.raises(TargetRejected):
        parse_target(url, NONE)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3:8443/x",
        "https://localhost/hook",
        "https://[::ffff:10.0.0.1]/",
        "https://2130706433/",  # 127.0.0.1 as an integer
        "https://no-such-host.invalid/",
    ],
)
def test_private_targets_are_refused_after_resolution(url: str) -> None:
    async def check() -> None:
        await resolve_target(parse_target(url, NONE), NONE)

    with pytest.raises(TargetRejected):
        asyncio.run(check())


def test_allow_list_admits_loopback_for_development() -> None:
    allow = AllowList.parse(["127.0.0.1", "localhost"])
    assert asyncio.run(resolve_target(parse_target("http://127.0.0.1:8080/hook", allow), allow)) == "127.0.0.1"
    assert asyncio.run(resolve_target(parse_target("http://localhost:8080/hook", allow), allow))
    cidr = AllowList.parse(["10.0.0.0/8"])
    assert asyncio.run(resolve_target(parse_target("https://10.2.3.4/x", cidr), cidr)) == "10.2.3.4"
    with pytest.raises(TargetRejected):
        asyncio.run(resolve_target(parse_target("https://192.168.0.1/x", cidr), cidr))


# --- passwords, TOTP, secrets ----------------------------------------------------------------------------


def test_argon2_and_password_rule() -> None:
    digest = hash_password("Correct-horse-9!")
    assert digest.startswith("$argon2")
    assert verify_password(digest, "Correct-horse-9!")
    assert not verify_password(digest, "Correct-horse-9?")
    assert not verify_password(None, "anything")
    for weak in ("short-A1!", "alllowercase-1!", "ALLUPPERCASE-1!", "No-digits-here!", "NoSymbols12345"):
        with pytest.raises(ValidationFailed):
            check_password_rule(weak)


def test_totp_window_is_one_step_each_way_and_codes_are_single_use() -> None:
    secret = new_totp_secret()
    assert len(pyotp.TOTP(secret).byte_secret()) >= 20  # ≥ 160 bits
    now = 1_700_000_015.0
    totp = pyotp.TOTP(secret)
    step = int(now) // 30
    for offset in (-1, 0, 1):
        code = totp.at(now + offset * 30)
        assert totp_match_step(secret, code, None, at=now) == step + offset
    for offset in (-2, 2):
        assert totp_match_step(secret, totp.at(now + offset * 30), None, at=now) is None
    current = totp.at(now)
    assert totp_match_step(secret, current, step, at=now) is None  # used once already
    assert totp_match_step(secret, totp.at(now - 30), step, at=now) is None  # older than the last used
    assert totp_match_step(secret, "12345", None, at=now) is None
    assert totp_match_step(secret, "abcdef", None, at=now) is None


def test_secret_box_round_trip_and_wrong_key() -> None:
    box = SecretBox("key-one")
    sealed = box.seal("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(ValueError):
        SecretBox("key-two").open(sealed)


def test_api_key_format_and_backup_codes() -> None:
    key, prefix = new_api_key()
    assert key.startswith(prefix) and len(prefix) == 16
    assert API_KEY_PATTERN.fullmatch(key)
    assert api_key_prefix(key) == prefix
    assert api_key_prefix("sfk_short") is None
    codes = new_backup_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(normalize_backup_code(c.upper().replace("-", " ")) == c for c in codes)


# --- permissions and the policy ----------------------------------------------------------------------------


def test_permission_lists_are_validated() -> None:
    assert validate_permissions(["sim_card", "plan:read", "sim_card:read"]) == ["plan:read", "sim_card"]
    assert validate_permissions(["sim_card", "*"]) == ["*"]
    for bad in (["admin"], ["sim_card:write"], ["Organisation"]):
        with pytest.raises(ValidationFailed):
            validate_permissions(bad)


def _staff(**kw: object) -> Principal:
    base: dict[str, object] = {
        "kind": PrincipalKind.STAFF,
        "subject_id": "s",
        "label": "s",
        "role": StaffRole.ORG_STAFF,
    }
    return Principal(**{**base, **kw})  # type: ignore[arg-type]


def test_authorize_subtree_siblings_and_areas() -> None:
    org_staff = _staff(org_id="o1", permissions=frozenset({"sim_card:read"}))
    company_staff = _staff(org_id="o1", company_id="c1", role=StaffRole.COMPANY_STAFF, permissions=frozenset({"*"}))
    user = Principal(PrincipalKind.END_USER, "u1", "u1", org_id="o1", company_id="c1", end_user_id="u1")
    own, sibling, other_org = TenantChain("o1", "c1", "u1"), TenantChain("o1", "c2"), TenantChain("o2", "c3")
    authorize(org_staff, Action.READ, own, area=Area.SIM_CARD)
    with pytest.raises(PermissionDenied):
        authorize(org_staff, Action.WRITE, own, area=Area.SIM_CARD)
    with pytest.raises(PermissionDenied):
        authorize(org_staff, Action.READ, own, area=Area.PAYMENT)
    with pytest.raises(NotFound):
        authorize(org_staff, Action.READ, other_org)
    authorize(company_staff, Action.WRITE, own)
    with pytest.raises(NotFound):
        authorize(company_staff, Action.READ, sibling)
    authorize(user, Action.READ, own)
    with pytest.raises(NotFound):
        authorize(user, Action.READ, TenantChain("o1", "c1", "u2"))
    general_plan = TenantChain("o1", None, org_wide=True)
    authorize(company_staff, Action.READ, general_plan)
    with pytest.raises(PermissionDenied):
        authorize(company_staff, Action.WRITE, general_plan)
    with pytest.raises(NotFound):
        authorize(company_staff, Action.READ, TenantChain("o2", None, org_wide=True))
    key = Principal(PrincipalKind.API_KEY, "k", "k", org_id="o1", company_id="c1", read_only=True)
    authorize(key, Action.READ, own)
    with pytest.raises(PermissionDenied):
        authorize(key, Action.WRITE, own)
    with pytest.raises(NotFound):
        authorize(key, Action.WRITE, sibling)  # outside the subtree: not found, even for a write


async def test_rate_limiter_window_and_retry_after(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(RateLimitHit.__table__.create)
    now = [1000.0]
    limiter = RateLimiter(create_sessionmaker(engine), clock=lambda: now[0])
    try:
        for _ in range(3):
            await limiter.take("k", 3, 60)
        with pytest.raises(RateLimited) as raised:
            await limiter.take("k", 3, 60)
        assert raised.value.retry_after_s == 60
        now[0] += 30
        assert await limiter.retry_after("k", 3, 60) == 30
        now[0] += 31
        await limiter.take("k", 3, 60)
        assert await limiter.retry_after("other", 1, 60) is None
    finally:
        await engine.dispose()
