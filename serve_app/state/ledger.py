"""The usage ledger: one row per request, queued in memory and written in batches off the request path.

Loss bound: when the store is up, a crash loses at most the rows of the last flush interval (1 s by default;
a graceful stop flushes). While it is down, rows wait in a bounded buffer (`usage_buffer_rows`) and are
written when it returns; beyond the bound the oldest rows are dropped, counted and logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import and_, case, func, insert, select

from serve_app.state.schema import usage_events
from serve_app.state.store import StateStore

log = logging.getLogger(__name__)
BUCKET_WIDTHS_S = {"1m": 60, "1h": 3600, "1d": 86400}
GROUPS = {"model": usage_events.c.model, "key": usage_events.c.key_name, "batch": usage_events.c.batch_id}


@dataclass(frozen=True)
class UsageRow:
    ts_ms: int
    request_id: str
    key_name: str
    model: str
    route: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    latency_ms: float = 0.0
    cached: bool = False
    batch_id: str | None = None


@dataclass(frozen=True)
class Spend:
    """What a key spent that counts against budgets (cached answers do not)."""

    tokens: int = 0
    audio_seconds: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.tokens + other.tokens, self.audio_seconds + other.audio_seconds)


def spend_of(rows: Iterable[UsageRow]) -> Spend:
    total = Spend()
    for row in rows:
        if not row.cached:
            total += Spend(row.prompt_tokens + row.completion_tokens, row.audio_seconds)
    return total


class UsageLedger:
    def __init__(self, store: StateStore, flush_interval_s: float = 1.0, buffer_rows: int = 100_000,
                 batch_rows: int = 1000) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self._buffer: deque[UsageRow] = deque(maxlen=buffer_rows)
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self._failing = False
        # One flush at a time: close() waits for the writer's, so a batch committed is never written again
        self._flush_lock = asyncio.Lock()

    def record(self, row: UsageRow) -> None:
        """Never blocks and never raises: the request is served whatever the store's state."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage buffer full (%d rows, store unreachable): %d oldest rows dropped",
                          self._buffer.maxlen, self.dropped)
        self._buffer.append(row)
        self._ensure_writer()

    def pending(self, key_name: str, since_ms: int) -> list[UsageRow]:
        """Rows of this process not yet written (budgets add them to what the store knows)."""
        return [r for r in self._buffer if r.key_name == key_name and r.ts_ms >= since_ms]

    def _ensure_writer(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_forever())

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            # shielded: close() cancelling this writer between a batch's COMMIT and its removal from the
            # buffer would have the final flush write it again
            await asyncio.shield(self.flush())

    async def flush(self) -> bool:
        """Write what is buffered; on failure keep it for the next round. True when the buffer is empty."""
        async with self._flush_lock:
            return await self._write_buffered()

    async def _write_buffered(self) -> bool:
        while self._buffer:
            rows = [self._buffer[i] for i in range(min(self.batch_rows, len(self._buffer)))]
            try:
                async with self.store.transaction() as conn:
                    await conn.execute(insert(usage_events), [asdict(r) for r in rows])
            except Exception as exc:  # noqa: BLE001 - any store failure: keep the rows, retry next round
                if not self._failing:
                    log.warning("usage ledger: store unavailable (%s); %d rows buffered", exc, len(self._buffer))
                self._failing = True
                return False
            for _ in rows:
                self._buffer.popleft()
            if self._failing:
                log.warning("usage ledger: store is back; buffered rows written")
                self._failing = False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()  # after the writer's flush in progress, if any (the lock)

    async def spend(self, key_name: str, since_ms: int) -> Spend:
        """Stored spend of a key since an instant, plus this process's unwritten rows."""
        c = usage_events.c
        async with self.store.transaction() as conn:
            tokens, audio = (await conn.execute(
                select(func.coalesce(func.sum(c.prompt_tokens + c.completion_tokens), 0),
                       func.coalesce(func.sum(c.audio_seconds), 0.0))
                .where(and_(c.key_name == key_name, c.ts_ms >= since_ms, c.cached.is_(False))))).one()
        return Spend(int(tokens), float(audio)) + spend_of(self.pending(key_name, since_ms))

    async def buckets(self, start_s: int, end_s: int, width_s: int, group_by: list[str],
                      key_name: str | None) -> dict[int, list[dict]]:
        """Aggregates per bucket start (unix seconds) and group; only buckets with traffic appear."""
        c = usage_events.c
        width_ms = width_s * 1000
        # integer division on both databases: exact bucket edges
        bucket = ((c.ts_ms - start_s * 1000) // width_ms).label("bucket")
        groups = [GROUPS[g].label(g) for g in group_by]
        query = (select(bucket, *groups, func.count().label("num_model_requests"),
                        func.sum(c.prompt_tokens).label("input_tokens"),
                        func.sum(c.completion_tokens).label("output_tokens"),
                        func.sum(c.audio_seconds).label("audio_seconds"),
                        func.sum(c.images).label("images"),
                        func.sum(case((c.cached, 1), else_=0)).label("cached_requests"))
                 # model calls only: listing files or reading usage is in the ledger but is not a model request
                 .where(and_(c.ts_ms >= start_s * 1000, c.ts_ms < end_s * 1000, c.model != "-"))
                 .group_by(bucket, *groups).order_by(bucket))
        if key_name is not None:
            query = query.where(c.key_name == key_name)
        out: dict[int, list[dict]] = {}
        async with self.store.transaction() as conn:
            for row in (await conn.execute(query)).mappings():
                result = {"object": "usage.result", **{g: row[g] for g in group_by},
                          "num_model_requests": int(row["num_model_requests"]),
                          "input_tokens": int(row["input_tokens"] or 0),
                          "output_tokens": int(row["output_tokens"] or 0),
                          "audio_seconds": round(float(row["audio_seconds"] or 0), 3),
                          "images": int(row["images"] or 0),
                          "cached_requests": int(row["cached_requests"] or 0)}
                out.setdefault(start_s + int(row["bucket"]) * width_s, []).append(result)
        return out


def now_ms() -> int:
    return int(time.time() * 1000)
