"""Stored responses on SQLite and PostgreSQL: kept per key, another key's id reads as missing, the conversation
a continuation starts from, deletion, and a store that is down (503 before any model work)."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.errors import ServiceUnavailable
from serve_app.state.responses import ResponseRepository
from serve_app.state.store import StateStore


def response(response_id: str, text: str) -> dict:
    return {"id": response_id, "object": "response", "created_at": 1_800_000_000, "model": "m",
            "status": "completed", "output": [{"id": "msg_out", "type": "message", "role": "assistant",
                                               "status": "completed", "content": [
                                                   {"type": "output_text", "text": text, "annotations": []}]}]}


INPUT = [{"id": "msg_in", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "héllo"}]}]


def test_responses_are_kept_per_key_and_deleted(store_url):
    async def check():
        store = StateStore(store_url)
        repo = ResponseRepository(store)
        await repo.reachable()
        await repo.save("alice", response("resp_1", "hi"), INPUT)
        found = await repo.get("alice", "resp_1"), await repo.input_items("alice", "resp_1")
        conversation = await repo.conversation("alice", "resp_1")
        others = (await repo.get("bob", "resp_1"), await repo.conversation("bob", "resp_1"),
                  await repo.input_items("bob", "resp_1"), await repo.delete("bob", "resp_1"))
        deleted = await repo.delete("alice", "resp_1"), await repo.delete("alice", "resp_1")
        after = await repo.get("alice", "resp_1"), await repo.conversation("alice", "resp_1")
        await store.dispose()
        return found, conversation, others, deleted, after

    (body, items), conversation, others, deleted, after = asyncio.run(check())
    assert body == response("resp_1", "hi") and items == INPUT
    assert [i["id"] for i in conversation] == ["msg_in", "msg_out"]
    assert others == (None, None, None, False)  # another key's response is missing to it, and stays
    assert deleted == (True, False)
    assert after == (None, None)


def test_a_store_that_cannot_be_reached_is_a_503(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    repo = ResponseRepository(StateStore(f"sqlite:///{blocked}/state.db"))
    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(repo.reachable())
    assert err.value.code == "state_store_unavailable"


def test_responses_past_their_retention_read_as_missing_and_are_pruned(store_url):
    import time

    from sqlalchemy import func, select

    from serve_app.state.schema import responses

    async def check():
        store = StateStore(store_url)
        repo = ResponseRepository(store, ttl_s=86400)
        old = {**response("resp_old", "old"), "created_at": int(time.time()) - 2 * 86400}
        await repo.save("carol", old, INPUT)
        read_old = await repo.get("carol", "resp_old"), await repo.conversation("carol", "resp_old")
        async with store.transaction() as conn:
            before = (await conn.execute(select(func.count()).where(responses.c.owner == "carol"))).scalar()
        await repo.save("carol", {**response("resp_new", "new"), "created_at": int(time.time())}, INPUT)
        async with store.transaction() as conn:
            ids = (await conn.execute(select(responses.c.id).where(responses.c.owner == "carol"))).scalars().all()
        await store.dispose()
        return read_old, before, ids

    read_old, before, ids = asyncio.run(check())
    assert read_old == (None, None) and before == 1  # expired: hidden at once, deleted at the next save
    assert ids == ["resp_new"]
