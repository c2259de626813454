"""Sliding-window rate limits kept in the database (`rate_limit_hits`), so that every API process counts
against the same budget: a limit reached through one replica holds on the others.

One row per counted request, with the time it stops counting (`expires_at`); rows whose window has passed
are deleted (`prune`, at most every `prune_interval_s` per process, on the way of a hit), and the table
never holds more than `max_rows` rows (the oldest go first under a flood of distinct keys). Each operation
is its own short transaction, apart from the request's: a refused or failed request still counts. So
call it before the request's session has written anything (on SQLite a second writer would wait for the
request's lock), or pass that session where the method takes one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import RateLimited
from domain.models import RateLimitHit


@dataclass
class RateLimiter:
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Callable[[], float] = time.time  # wall time: shared by every process
    max_rows: int = 1_000_000
    prune_interval_s: float = 30.0
    _next_prune: float = 0.0

    async def retry_after(self, key: str, limit: int, window_s: float) -> int | None:
        """Seconds to wait when `key` already used its `limit` in the window, else None."""
        now = self.clock()
        # The limit-th most recent hit: once it leaves the window, one more request fits.
        query = (
            select(RateLimitHit.at)
            .where(RateLimitHit.key == key, RateLimitHit.at > now - window_s)
            .order_by(RateLimitHit.at.desc())
            .offset(max(limit, 1) - 1)
            .limit(1)
        )
        async with self.sessionmaker() as session:
            at = (await session.execute(query)).scalar_one_or_none()
        if at is None:
            return None
        return max(1, math.ceil(at + window_s - now))

    async def recent(self, key: str, window_s: float) -> tuple[int, float | None]:
        """How many hits `key` has in the window, and when the last one was."""
        now = self.clock()
        query = select(func.count(), func.max(RateLimitHit.at)).where(
            RateLimitHit.key == key, RateLimitHit.at > now - window_s
        )
        async with self.sessionmaker() as session:
            count, last = (await session.execute(query)).one()
        return int(count), last

    async def check(self, key: str, limit: int, window_s: float, reason: str = "trop de tentatives") -> None:
        wait = await self.retry_after(key, limit, window_s)
        if wait is not None:
            raise RateLimited(None, f"{reason} : réessayez dans {wait} s", wait)

    async def hit(self, key: str, window_s: float) -> int:
        """Counts one request; returns its row id."""
        now = self.clock()
        row = RateLimitHit(key=key, at=now, expires_at=now + window_s)
        async with self.sessionmaker.begin() as session:
            session.add(row)
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval_s
            await self.prune()
        return row.id

    async def take(self, key: str, limit: int, window_s: float, reason: str = "trop de requêtes") -> None:
        """Counts this request, unless the window is full. The hit is written first and taken back when it
        went over: two processes racing for the last place cannot both get it."""
        await self.check(key, limit, window_s, reason)
        own = await self.hit(key, window_s)
        wait = await self.retry_after(key, limit + 1, window_s)
        if wait is not None:
            async with self.sessionmaker.begin() as session:
                await session.execute(delete(RateLimitHit).where(RateLimitHit.id == own))
            raise RateLimited(None, f"{reason} : réessayez dans {wait} s", wait)

    async def reset(self, key: str, session: AsyncSession | None = None) -> None:
        """Forgets `key`'s hits; inside `session` when given (committed with it, and without a second
        writer waiting on SQLite's lock while the request's transaction holds it)."""
        statement = delete(RateLimitHit).where(RateLimitHit.key == key)
        if session is not None:
            await session.execute(statement, execution_options={"synchronize_session": False})
            return
        async with self.sessionmaker.begin() as own:
            await own.execute(statement)

    async def prune(self) -> None:
        """Deletes the hits whose window has passed, then the oldest beyond `max_rows`."""
        async with self.sessionmaker.begin() as session:
            await session.execute(delete(RateLimitHit).where(RateLimitHit.expires_at <= self.clock()))
            newest_dropped = (
                await session.execute(
                    select(RateLimitHit.id).order_by(RateLimitHit.id.desc()).offset(self.max_rows).limit(1)
                )
            ).scalar_one_or_none()
            if newest_dropped is not None:
                await session.execute(delete(RateLimitHit).where(RateLimitHit.id <= newest_dropped))
