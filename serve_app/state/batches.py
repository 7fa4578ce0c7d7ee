"""Batches in the store: created by the gateway, advanced by the batch runner. Each finished line is a row of
its own, so a runner that restarts picks up where it stopped without running a finished line again."""

from __future__ import annotations

import json
import secrets
import time

from sqlalchemy import and_, func, insert, select, update

from serve_app.state.schema import batch_results, batches
from serve_app.state.store import StateStore

WINDOW_S = {"24h": 86400}
UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
_TIMES = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
          "cancelling_at", "cancelled_at")


def batch_object(row) -> dict:
    return {"id": row.id, "object": "batch", "endpoint": row.endpoint,
            "errors": json.loads(row.errors_json) if row.errors_json else None,
            "input_file_id": row.input_file_id, "completion_window": row.completion_window, "status": row.status,
            "output_file_id": row.output_file_id, "error_file_id": row.error_file_id,
            **{name: getattr(row, name) for name in _TIMES},
            "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
            "usage": {"input_tokens": row.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": row.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": row.input_tokens + row.output_tokens},
            "metadata": json.loads(row.metadata_json) if row.metadata_json else None}


def line_tokens(payload: dict) -> tuple[int, int]:
    """(prompt, completion) tokens of one output line: its answer's `usage` (an embeddings answer has no
    completion tokens; a refused line has no usage)."""
    body = (payload.get("response") or {}).get("body")
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else 0), (completion if isinstance(completion, int) else 0)


class BatchRepository:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def create(self, owner: str, endpoint: str, input_file_id: str, window: str, metadata: dict | None,
                     total: int) -> dict:
        now = int(time.time())
        row = {"id": "batch_" + secrets.token_hex(12), "owner": owner, "endpoint": endpoint,
               "input_file_id": input_file_id, "completion_window": window, "status": "validating",
               "created_at": now, "expires_at": now + WINDOW_S[window], "total": total, "completed": 0, "failed": 0,
               "metadata_json": json.dumps(metadata) if metadata else None}
        async with self.store.transaction() as conn:
            await conn.execute(insert(batches), row)
            return batch_object((await conn.execute(select(batches).where(batches.c.id == row["id"]))).one())

    async def get(self, owner: str | None, batch_id: str):
        query = select(batches).where(batches.c.id == batch_id)
        if owner is not None:
            query = query.where(batches.c.owner == owner)
        async with self.store.transaction() as conn:
            return (await conn.execute(query)).first()

    async def list(self, owner: str, limit: int, after: str | None):
        c = batches.c
        query = select(batches).where(c.owner == owner)
        async with self.store.transaction() as conn:
            if after:
                anchor = (await conn.execute(select(c.created_at, c.id).where(
                    and_(c.id == after, c.owner == owner)))).first()
                if anchor is not None:
                    query = query.where((c.created_at < anchor.created_at)
                                        | and_(c.created_at == anchor.created_at, c.id < anchor.id))
            rows = (await conn.execute(query.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1))).all()
        return [batch_object(r) for r in rows[:limit]], len(rows) > limit

    async def unfinished_count(self, owner: str) -> int:
        async with self.store.transaction() as conn:
            return (await conn.execute(select(func.count()).select_from(batches).where(
                and_(batches.c.owner == owner, batches.c.status.in_(UNFINISHED))))).scalar_one()

    async def unfinished(self) -> list:
        async with self.store.transaction() as conn:
            return (await conn.execute(select(batches).where(batches.c.status.in_(UNFINISHED))
                                       .order_by(batches.c.created_at))).all()

    async def transition(self, batch_id: str, frm: tuple[str, ...], to: str, **fields) -> bool:
        """Move a batch between statuses (stamping `<to>_at`) only if it is still in one of `frm`."""
        values = {"status": to, **fields}
        stamp = f"{to}_at"
        if stamp in _TIMES:
            values[stamp] = int(time.time())
        async with self.store.transaction() as conn:
            result = await conn.execute(update(batches).where(
                and_(batches.c.id == batch_id, batches.c.status.in_(frm))).values(**values))
        return result.rowcount == 1

    async def finished_lines(self, batch_id: str) -> set[int]:
        async with self.store.transaction() as conn:
            return set((await conn.execute(select(batch_results.c.line).where(
                batch_results.c.batch_id == batch_id))).scalars())

    async def record_line(self, batch_id: str, line: int, ok: bool, payload: dict) -> bool:
        """The line's result and the batch's counts, in one transaction; False (nothing changed) when the line
        was recorded already: the first answer stands (a runner replica overlapping its successor during a
        redeploy may have sent the line too)."""
        counter = batches.c.completed if ok else batches.c.failed
        row = {"batch_id": batch_id, "line": line, "ok": ok, "payload": json.dumps(payload, ensure_ascii=False)}
        async with self.store.transaction() as conn:
            added = await conn.execute(self.store.insert(batch_results).values(row).on_conflict_do_nothing())
            if added.rowcount != 1:
                return False
            prompt, completion = line_tokens(payload)
            c = batches.c
            await conn.execute(update(batches).where(c.id == batch_id).values(
                {counter: counter + 1, c.input_tokens: c.input_tokens + prompt,
                 c.output_tokens: c.output_tokens + completion}))
        return True

    async def results(self, batch_id: str) -> list:
        async with self.store.transaction() as conn:
            return (await conn.execute(select(batch_results).where(batch_results.c.batch_id == batch_id)
                                       .order_by(batch_results.c.line))).all()
