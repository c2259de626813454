"""Schemathesis hooks for the contract run of tests/api/test_schemathesis.py (loaded by the CLI through
SCHEMATHESIS_HOOKS): the staff logins it authenticates with, and generators for the identifier formats
the OpenAPI declares, so that schema-valid data also carries valid check digits."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import strategies as st
from hypothesis.internal import lambda_sources
from stdnum import luhn

from domain.identifiers import iccid_with_check_digit

# CPython 3.11 can fail `ast.parse` run by two threads at once ("AST constructor recursion depth
# mismatch"); hypothesis parses sources to describe filters, and the run has 2 worker threads.
_parse_lock = threading.Lock()
_describe_lambda: Callable[..., Any] = lambda_sources._lambda_description


def _serialised_description(*args: Any, **kwargs: Any) -> Any:
    with _parse_lock:
        return _describe_lambda(*args, **kwargs)


lambda_sources._lambda_description = _serialised_description

# The platform operator's own operations; every other one is called as an organisation's administrator.
PLATFORM_PATHS = r"^/api/v1/(organisations|audit-log/verification)$"


def _login(email_variable: str) -> str:
    response = httpx.post(
        f"{os.environ['SIMFLOW_FUZZ_BASE_URL']}/api/v1/auth/token",
        data={"username": os.environ[email_variable], "password": os.environ["SIMFLOW_FUZZ_PASSWORD"]},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _bearer(case: Any, token: str) -> None:
    case.headers = case.headers or {}
    case.headers["Authorization"] = f"Bearer {token}"


# An access token obtained like an integrator does (password grant). A 401 (the run called `logout` with
# `everywhere`) makes schemathesis log in again and replay the call.
@schemathesis.auth(refresh_interval=60).apply_to(path_regex=PLATFORM_PATHS)
class PlatformAdminLogin:
    def get(self, case: Any, ctx: Any) -> str:
        return _login("SIMFLOW_FUZZ_PLATFORM_EMAIL")

    def set(self, case: Any, data: str, ctx: Any) -> None:
        _bearer(case, data)


@schemathesis.auth(refresh_interval=60).skip_for(path_regex=PLATFORM_PATHS)
class OrganisationAdminLogin:
    def get(self, case: Any, ctx: Any) -> str:
        return _login("SIMFLOW_FUZZ_ORG_ADMIN_EMAIL")

    def set(self, case: Any, data: str, ctx: Any) -> None:
        _bearer(case, data)


# --- identifier formats (api/schemas.py): valid check digits, in the compact form ---------------------


def _luhn_completed(body: str) -> str:
    return body + luhn.calc_check_digit(body)


def _siret(digits: str) -> str:
    siren = _luhn_completed(digits[:8])
    return _luhn_completed(siren + digits[8:12])


def _french_vat(digits: str) -> str:
    siren = _luhn_completed(digits[:8])
    return f"FR{int(siren + '12') % 97:02d}{siren}"  # the numeric key of stdnum.fr.tva


def _digits(count: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=count, max_size=count)


schemathesis.openapi.format("siret", _digits(12).map(_siret))
schemathesis.openapi.format("vat", _digits(8).map(_french_vat))
schemathesis.openapi.format("iccid", _digits(15).map(lambda digits: iccid_with_check_digit("8933" + digits)))
# French mobile numbers (the allocated 060-068 and 073-079 blocks of the Arcep plan), E.164.
MOBILE_BLOCKS = [*(f"6{d}" for d in "012345678"), *(f"7{d}" for d in "3456789")]
schemathesis.openapi.format(
    "msisdn", st.tuples(st.sampled_from(MOBILE_BLOCKS), _digits(7)).map(lambda p: f"+33{p[0]}{p[1]}")
)
