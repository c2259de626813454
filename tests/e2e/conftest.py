"""End-to-end fixtures: a real Temporal dev server, the worker in-process, the API over ASGI.

The fixtures themselves (`temporal_env`, `settings`, `temporal_client`, `worker`, `app_client`,
`admin_headers`) live in `tests/conftest.py`, shared with `tests/api`; the helpers are re-exported here.
"""

from __future__ import annotations

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login

__all__ = ["ADMIN_EMAIL", "ADMIN_PASSWORD", "login"]
