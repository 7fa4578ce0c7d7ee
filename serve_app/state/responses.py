"""Stored responses (Responses API `store`): each belongs to the key that created it; another key's id reads as
missing. A row keeps the whole input it was answered from, so `previous_response_id` is one read, and
deleting a response leaves the ones that continued it intact. Rows are kept `ttl_s` (30 days by default, as
OpenAI): older ones read as missing and are deleted when their key stores its next response."""

from __future__ import annotations

import json
import time

from sqlalchemy import and_, delete, insert, select

from serve_app.state.schema import responses
from serve_app.state.store import StateStore


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ResponseRepository:
    def __init__(self, store: StateStore, ttl_s: float = 30 * 86400) -> None:
        self.store = store
        self.ttl_s = ttl_s

    def _oldest_kept(self) -> int:
        return int(time.time() - self.ttl_s)

    async def reachable(self) -> None:
        """Raises the store's 503 when it cannot be reached (checked before model work that must be kept)."""
        async with self.store.transaction():
            pass

    async def save(self, owner: str, response: dict, input_items: list[dict]) -> None:
        row = {"id": response["id"], "owner": owner, "created_at": response["created_at"],
               "model": response["model"], "status": response["status"], "response_json": _dumps(response),
               "input_json": _dumps(input_items)}
        async with self.store.transaction() as conn:
            await conn.execute(delete(responses).where(  # this key's expired rows (the owner index finds them)
                and_(responses.c.owner == owner, responses.c.created_at < self._oldest_kept())))
            await conn.execute(insert(responses), row)

    async def _row(self, owner: str, response_id: str, *columns):
        async with self.store.transaction() as conn:
            return (await conn.execute(select(*columns).where(
                and_(responses.c.id == response_id, responses.c.owner == owner,
                     responses.c.created_at >= self._oldest_kept())))).first()

    async def get(self, owner: str, response_id: str) -> dict | None:
        row = await self._row(owner, response_id, responses.c.response_json)
        return None if row is None else json.loads(row.response_json)

    async def input_items(self, owner: str, response_id: str) -> list[dict] | None:
        row = await self._row(owner, response_id, responses.c.input_json)
        return None if row is None else json.loads(row.input_json)

    async def conversation(self, owner: str, response_id: str) -> list[dict] | None:
        """The items a response continuing this one starts from: its input, then its output."""
        row = await self._row(owner, response_id, responses.c.input_json, responses.c.response_json)
        if row is None:
            return None
        return json.loads(row.input_json) + json.loads(row.response_json)["output"]

    async def delete(self, owner: str, response_id: str) -> bool:
        async with self.store.transaction() as conn:
            result = await conn.execute(delete(responses).where(
                and_(responses.c.id == response_id, responses.c.owner == owner)))
        return result.rowcount == 1
