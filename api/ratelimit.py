"""Sliding-window rate limits, per API process (each replica counts for itself; account lockout, which
must hold across replicas, is in the database)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from domain.errors import RateLimited


@dataclass
class RateLimiter:
    clock: Callable[[], float] = time.monotonic
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    def _window(self, key: str, window_s: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        horizon = self.clock() - window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        if not hits:
            self._hits.pop(key, None)
            hits = self._hits.setdefault(key, deque())
        return hits

    def retry_after(self, key: str, limit: int, window_s: float) -> int | None:
        """Seconds to wait when `key` already used its `limit` in the window, else None."""
        hits = self._window(key, window_s)
        if len(hits) < limit:
            return None
        return max(1, math.ceil(hits[0] + window_s - self.clock()))

    def check(self, key: str, limit: int, window_s: float, reason: str = "trop de tentatives") -> None:
        wait = self.retry_after(key, limit, window_s)
        if wait is not None:
            raise RateLimited(None, f"{reason} : réessayez dans {wait} s", wait)

    def hit(self, key: str, window_s: float) -> None:
        self._window(key, window_s).append(self.clock())
        if len(self._hits) > 100_000:  # bounded memory under a flood of distinct keys
            self._prune(window_s)

    def take(self, key: str, limit: int, window_s: float, reason: str = "trop de requêtes") -> None:
        """Check, then count this request."""
        self.check(key, limit, window_s, reason)
        self.hit(key, window_s)

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _prune(self, window_s: float) -> None:
        for key in list(self._hits):
            self._window(key, window_s)
