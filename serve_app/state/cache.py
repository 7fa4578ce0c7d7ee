"""The response cache's storage: payloads by key in the state store, bounded in size, each with a TTL.

Reads are on the request path, so they are bounded by a short timeout and any failure is a miss; writes
happen after the answer is sent, and until one lands this replica answers that key from memory (a repeat sent at
once still hits here; on another gateway replica it may miss until the write lands)."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import delete, func, select

from serve_app.state.schema import response_cache
from serve_app.state.store import StateStore

log = logging.getLogger(__name__)
_PRUNE_EVERY = 100  # writes between trims to the size bound


class CacheStorage:
    def __init__(self, store: StateStore, max_entries: int, read_timeout_s: float = 0.5) -> None:
        self.store = store
        self.max_entries = max_entries
        self.read_timeout_s = read_timeout_s
        self._writes = 0
        self._tasks: set[asyncio.Task] = set()
        self._in_flight: dict[str, str] = {}  # payloads by key while their write is under way

    async def get(self, key: str) -> str | None:
        if (payload := self._in_flight.get(key)) is not None:
            return payload
        try:
            return await asyncio.wait_for(self._get(key), self.read_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a slow or failed store must not fail the request: a miss
            log.warning("response cache read failed (%s): served as a miss", type(exc).__name__)
            return None

    async def _get(self, key: str) -> str | None:
        c = response_cache.c
        async with self.store.transaction() as conn:
            return (await conn.execute(select(c.payload).where(c.key == key, c.expires_at > time.time()))
                    ).scalar_one_or_none()

    def put(self, key: str, model: str, payload: str, ttl_s: float) -> None:
        """Store in the background (never delays the answer); a failed write only costs a later miss."""
        self._in_flight[key] = payload
        task = asyncio.get_running_loop().create_task(self._put(key, model, payload, ttl_s))
        self._tasks.add(task)

        def landed(done: asyncio.Task) -> None:
            self._tasks.discard(done)
            if self._in_flight.get(key) is payload:  # not a later write of the same key
                del self._in_flight[key]

        task.add_done_callback(landed)

    async def _put(self, key: str, model: str, payload: str, ttl_s: float) -> None:
        now = time.time()
        values = {"key": key, "model": model, "payload": payload, "created_at": now, "expires_at": now + ttl_s}
        statement = self.store.insert(response_cache).values(values)
        statement = statement.on_conflict_do_update(index_elements=["key"], set_={
            k: statement.excluded[k] for k in ("payload", "created_at", "expires_at")})
        try:
            async with self.store.transaction() as conn:
                await conn.execute(statement)
            self._writes += 1
            if self._writes % _PRUNE_EVERY == 0:
                await self.prune()
        except Exception as exc:  # noqa: BLE001 - see put()
            log.warning("response cache write failed: %s", exc)

    async def prune(self) -> None:
        """Drop expired entries, then the oldest beyond `max_entries`."""
        c = response_cache.c
        async with self.store.transaction() as conn:
            await conn.execute(delete(response_cache).where(c.expires_at <= time.time()))
            count = (await conn.execute(select(func.count()).select_from(response_cache))).scalar_one()
            if count > self.max_entries:
                cutoff = (await conn.execute(select(c.created_at).order_by(c.created_at.desc())
                                             .offset(self.max_entries).limit(1))).scalar_one()
                await conn.execute(delete(response_cache).where(c.created_at <= cutoff))

    async def drain(self) -> None:
        """Wait for writes in flight (tests and shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
