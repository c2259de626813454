"""A method the path does not serve answers 405 with `Allow` listing every method of the path (RFC 9110
§ 15.5.6), also when several routes share the path."""

from __future__ import annotations

import httpx
import pytest

from tests.api._support import assert_problem


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/v1/api-keys", "GET, POST"),  # two routes on one path
        ("PUT", "/api/v1/staff/0123456789abcdef0123456789abcdef", "GET, DELETE"),
        ("PATCH", "/api/v1/auth/me", "GET"),
        ("DELETE", "/api/v1/organisations", "POST"),
    ],
)
async def test_405_lists_every_method_of_the_path(
    app_client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await app_client.request(method, path)
    assert_problem(response, 405)
    assert response.json()["code"] == "request.method_not_allowed"
    assert response.headers["Allow"] == allowed
