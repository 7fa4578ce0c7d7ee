"""The state store on SQLite and PostgreSQL: schema migrations, the usage ledger, files, batches and the
response cache, each through the same code the gateway and the batch runner use."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from starlette.testclient import TestClient

from serve_app.config import APIKey, Budgets, LimitsConfig, RateLimits, StateConfig
from serve_app.errors import RateLimited, ServiceUnavailable
from serve_app.gateway.asgi import create_asgi_app
from serve_app.gateway.budgets import BudgetGuard
from serve_app.gateway.registry import ModelRegistry
from serve_app.security.auth import Caller, KeyStore, hash_key
from serve_app.security.rate_limit import RateLimiterServer
from serve_app.state.batches import BatchRepository, batch_object
from serve_app.state.cache import CacheStorage
from serve_app.state.files import FileRepository, FileStorage
from serve_app.state.ledger import UsageLedger, UsageRow
from serve_app.state.schema import metadata
from serve_app.state.setup import State
from serve_app.state.store import StateStore, async_url
from tests.support.errors import assert_error


def run(coro):
    return asyncio.run(coro)


def row(key: str = "k", model: str = "m", ts_ms: int | None = None, **values) -> UsageRow:
    return UsageRow(ts_ms if ts_ms is not None else int(time.time() * 1000), "req-1", key, model,
                    "/v1/chat/completions", 200, latency_ms=5.0, **values)


def test_urls_get_their_async_driver():
    assert async_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert async_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("sqlite:////var/lib/x.db") == "sqlite+aiosqlite:////var/lib/x.db"
    with pytest.raises(ValueError, match="postgresql:// or sqlite"):
        async_url("mysql://h/db")
    with pytest.raises(ValueError, match="needs a file"):
        StateStore("sqlite://")


def test_migrations_build_exactly_the_declared_schema_and_run_once(store_url):
    async def check():
        store = StateStore(store_url)
        await asyncio.gather(store.ready(), store.ready())
        again = StateStore(store_url)  # a second process finds the schema current
        await again.ready()
        async with store.transaction() as conn:
            version = (await conn.execute(text("select version_num from alembic_version"))).scalar_one()
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        await store.dispose()
        await again.dispose()
        return version, diff

    version, diff = run(check())
    assert version == "0003"
    assert diff == []  # schema.py and the migrations agree


def test_ledger_writes_in_batches_and_aggregates_by_bucket_and_group(store_url):
    async def check():
        store = StateStore(store_url)
        ledger = UsageLedger(store, flush_interval_s=60)
        start = 1_800_000_000
        ledger.record(row("a", "m1", start * 1000, prompt_tokens=10, completion_tokens=5))
        ledger.record(row("a", "m1", start * 1000 + 59_999, prompt_tokens=1, completion_tokens=1, cached=True))
        ledger.record(row("b", "m2", (start + 60) * 1000, audio_seconds=2.5))
        ledger.record(row("a", "-", start * 1000))  # not a model call: kept, not counted as a model request
        assert await ledger.flush()
        by_model = await ledger.buckets(start, start + 120, 60, ["model"], None)
        only_a = await ledger.buckets(start, start + 120, 60, ["key"], "a")
        spend = await ledger.spend("a", start * 1000)
        await store.dispose()
        return by_model, only_a, spend

    by_model, only_a, spend = run(check())
    start = 1_800_000_000
    first, second = by_model[start], by_model[start + 60]
    assert first == [{"object": "usage.result", "model": "m1", "num_model_requests": 2, "input_tokens": 11,
                      "output_tokens": 6, "audio_seconds": 0.0, "images": 0, "cached_requests": 1}]
    assert second[0]["model"] == "m2" and second[0]["audio_seconds"] == 2.5
    assert list(only_a) == [start] and only_a[start][0]["key"] == "a"
    assert (spend.tokens, spend.audio_seconds) == (15, 0.0)  # the cached answer costs nothing


def test_ledger_keeps_rows_while_the_store_is_down_and_writes_them_when_it_returns(store_url, tmp_path):
    async def check():
        down = StateStore("postgresql://nobody@127.0.0.1:9/none")  # nothing listens on port 9
        ledger = UsageLedger(down, flush_interval_s=60, buffer_rows=1000)
        for i in range(1005):
            ledger.record(row(prompt_tokens=i))
        assert not await ledger.flush()  # refused, nothing lost but the overflow
        assert ledger.dropped == 5 and len(ledger.pending("k", 0)) == 1000
        up = StateStore(store_url)
        ledger.store = up  # the store is back
        assert await ledger.flush()
        spend = await ledger.spend("k", 0)
        await up.dispose()
        await down.dispose()
        return spend

    spend = run(check())
    assert spend.tokens == sum(range(5, 1005))  # the 5 oldest were dropped, every other row was written


def test_unreachable_store_is_a_503_not_a_traceback():
    async def check():
        store = StateStore("postgresql://nobody@127.0.0.1:9/none")
        try:
            async with store.transaction():
                pass
        finally:
            await store.dispose()

    with pytest.raises(ServiceUnavailable) as caught:
        run(check())
    assert caught.value.code == "state_store_unavailable" and caught.value.status_code == 503


def test_an_upload_left_midway_or_refused_by_the_store_leaves_no_bytes_without_a_row(store_url, tmp_path):
    folder = tmp_path / "files"

    class SlowStorage(FileStorage):
        async def put(self, name, data):
            await asyncio.sleep(0.1)  # the client leaves while the bytes are written
            await super().put(name, data)

    async def check():
        store = StateStore(store_url)
        await store.ready()
        files = FileRepository(store, SlowStorage(str(folder)))
        upload = asyncio.ensure_future(files.create("alice", "batch", "in.jsonl", b"x\n"))
        await asyncio.sleep(0.02)
        upload.cancel()
        await asyncio.sleep(0.5)  # the shielded upload goes on to its row
        kept, _ = await files.list("alice", None, 10, None, True)

        def refuse(*args, **kwargs):
            raise RuntimeError("the store refused the row")

        store.transaction = refuse
        with pytest.raises(RuntimeError):
            await files.create("alice", "batch", "in.jsonl", b"y\n")
        await store.dispose()
        return kept

    kept = run(check())
    assert sorted(p.name for p in folder.iterdir()) == [f["id"] for f in kept]  # each byte file has its row
    assert len(kept) == 1


def test_files_belong_to_their_key(store_url, tmp_path):
    async def check():
        store = StateStore(store_url)
        files = FileRepository(store, FileStorage(str(tmp_path / "files")))
        made = await files.create("alice", "batch", "in.jsonl", b'{"a": 1}\n')
        mine, theirs = await files.get("alice", made["id"]), await files.get("bob", made["id"])
        content = await files.content(mine)
        listed, more = await files.list("alice", None, 10, None, True)
        deleted_by_other = await files.delete("bob", made["id"])
        deleted = await files.delete("alice", made["id"])
        gone = await files.get("alice", made["id"])
        await store.dispose()
        return made, theirs, content, listed, more, deleted_by_other, deleted, gone

    made, theirs, content, listed, more, deleted_by_other, deleted, gone = run(check())
    assert made["object"] == "file" and made["bytes"] == 9 and made["purpose"] == "batch"
    assert theirs is None and content == b'{"a": 1}\n'
    assert [f["id"] for f in listed] == [made["id"]] and not more
    assert not deleted_by_other and deleted and gone is None
    assert not (tmp_path / "files" / made["id"]).exists()


def test_batch_lines_are_recorded_once_with_their_counts(store_url):
    async def check():
        store = StateStore(store_url)
        batches = BatchRepository(store)
        made = await batches.create("alice", "/v1/chat/completions", "file-1", "24h", {"job": "x"}, 3)
        answered = {"custom_id": "a", "response": {"status_code": 200, "body": {
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}}}
        refused = {"custom_id": "c", "response": {"status_code": 400, "body": {"error": {"message": "no"}}}}
        assert await batches.record_line(made["id"], 0, True, answered)
        assert await batches.record_line(made["id"], 2, False, refused)
        # a line is stored once: a second answer (a runner overlapping its successor) changes nothing
        assert not await batches.record_line(made["id"], 0, True, answered)
        assert [json.loads(r.payload) for r in await batches.results(made["id"])] == [answered, refused]
        embedded = {"custom_id": "e", "response": {"status_code": 200, "body": {
            "usage": {"prompt_tokens": 7, "total_tokens": 7}}}}
        assert await batches.record_line(made["id"], 1, True, embedded)
        done = await batches.finished_lines(made["id"])
        moved = await batches.transition(made["id"], ("validating",), "in_progress")
        not_moved = await batches.transition(made["id"], ("validating",), "in_progress")
        current = await batches.get("alice", made["id"])
        other = await batches.get("bob", made["id"])
        await store.dispose()
        return made, done, moved, not_moved, current, other

    made, done, moved, not_moved, current, other = run(check())
    assert made["status"] == "validating" and made["metadata"] == {"job": "x"}
    assert made["expires_at"] - made["created_at"] == 86400
    assert done == {0, 1, 2} and moved and not not_moved and other is None
    assert current.status == "in_progress" and current.in_progress_at is not None
    assert batch_object(current)["usage"] == {  # each line counted once; a refused one used nothing
        "input_tokens": 19, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 24}
    assert made["usage"]["total_tokens"] == 0
    assert (current.completed, current.failed, current.total) == (2, 1, 3)


def test_cache_entries_expire_and_stay_within_bounds(store_url):
    async def check():
        store = StateStore(store_url)
        cache = CacheStorage(store, max_entries=3)
        for i in range(5):
            cache.put(f"k{i}", "m", f"payload {i}", ttl_s=60)
            await cache.drain()
            await asyncio.sleep(0.01)  # distinct creation times: the oldest go first
        cache.put("short", "m", "soon gone", ttl_s=0.2)
        await cache.drain()
        fresh = await cache.get("short")
        await asyncio.sleep(0.3)
        expired = await cache.get("short")
        await cache.prune()
        kept = [await cache.get(f"k{i}") for i in range(5)]
        await store.dispose()
        return fresh, expired, kept

    fresh, expired, kept = run(check())
    assert fresh == "soon gone" and expired is None
    assert kept == [None, None, "payload 2", "payload 3", "payload 4"]


def test_a_cache_read_right_after_a_write_sees_it_before_the_write_lands(store_url):
    """A repeat sent at once must not miss because the first answer's background write is still under way."""
    async def check():
        store = StateStore(store_url)
        cache = CacheStorage(store, max_entries=10)
        gates: dict[str, asyncio.Event] = {"first": asyncio.Event(), "second": asyncio.Event()}
        write = cache._put

        async def held_write(key, model, payload, ttl_s):  # each write lands when the test lets it
            await gates[payload].wait()
            await write(key, model, payload, ttl_s)

        cache._put = held_write
        cache.put("k", "m", "first", ttl_s=60)
        cache.put("k", "m", "second", ttl_s=60)
        seen = {"store before any write": await cache._get("k"), "at once": await cache.get("k")}
        gates["first"].set()
        while len(cache._tasks) > 1:
            await asyncio.sleep(0.01)
        seen["first landed, second in flight"] = await cache.get("k")  # not the older payload from the store
        gates["second"].set()
        await cache.drain()
        seen["both landed"] = await cache.get("k")
        await store.dispose()
        return seen, cache._in_flight

    seen, in_flight = run(check())
    assert seen == {"store before any write": None, "at once": "second", "first landed, second in flight": "second",
                    "both landed": "second"}
    assert in_flight == {}  # memory holds nothing once the writes have landed


def test_budgets_refuse_once_spent_and_say_when_they_reset(store_url):
    async def check():
        store = StateStore(store_url)
        ledger = UsageLedger(store, flush_interval_s=60)
        caller = Caller("k", None, RateLimits(), False, Budgets(tokens_per_day=100))
        guard = BudgetGuard(ledger)
        await guard.check(caller)  # nothing spent yet
        ledger.record(row(prompt_tokens=60, completion_tokens=40))  # still unwritten: counted all the same
        guard._seen.clear()
        try:
            await guard.check(caller)
        finally:
            await store.dispose()

    with pytest.raises(RateLimited) as caught:
        run(check())
    message = caught.value.message
    assert "daily budget of 100 tokens for key `k` is spent (100 used)" in message
    assert "resets at" in message and caught.value.code == "budget_exceeded"
    assert 0 < int(caught.value.headers["Retry-After"]) <= 86400


def state_gateway(url: str, tmp_path) -> TestClient:
    """The gateway over a given store, with one key and no model work needed."""
    state = State.open(StateConfig(url=url, files_url=str(tmp_path / "files")))
    app = create_asgi_app(ModelRegistry([]), KeyStore([APIKey(name="k", sha256=hash_key("k"))]), LimitsConfig(),
                          RateLimiterServer(), state=state)
    return TestClient(app, raise_server_exceptions=False, headers={"x-api-key": "k"})


def test_a_store_that_is_down_is_a_503_on_its_routes(tmp_path):
    with state_gateway("postgresql://nobody@127.0.0.1:9/none", tmp_path) as client:
        for r in (client.get("/v1/files"), client.get("/v1/batches"),
                  client.get("/v1/usage", params={"start_time": 0})):
            assert_error(r, 503, "state_store_unavailable")
            assert r.headers["retry-after"] == "5"


def test_a_store_failing_mid_query_is_a_503_not_a_500(store_url, tmp_path):
    with state_gateway(store_url, tmp_path) as client:
        assert client.get("/v1/files").status_code == 200  # migrated and answering

        async def break_it():  # e.g. an operator restoring the wrong dump: queries fail, connections do not
            store = StateStore(store_url)
            async with store.transaction() as conn:
                await conn.execute(text("DROP TABLE files"))
            await store.dispose()

        run(break_it())
        assert_error(client.get("/v1/files"), 503, "state_store_unavailable")


def test_usage_times_beyond_the_store_s_integers_are_a_400(tmp_path):
    with state_gateway(f"sqlite:///{tmp_path}/s.db", tmp_path) as client:
        r = client.get("/v1/usage", params={"start_time": 0, "end_time": 10**30})
        assert_error(r, 400, None, "start_time")
        assert "year 9999" in r.json()["error"]["message"]


def test_a_sqlite_upgrade_killed_midway_leaves_nothing_behind_and_the_next_start_upgrades(tmp_path, monkeypatch):
    import alembic.operations

    url = f"sqlite:///{tmp_path}/state.db"
    create_index = alembic.operations.Operations.create_index

    def killed_at_0002s_index(self, name, *args, **kwargs):
        if name == "ix_responses_owner_created":
            raise KeyboardInterrupt("killed mid-migration")  # stands for SIGKILL, OOM, a full disk
        return create_index(self, name, *args, **kwargs)

    async def first_start():
        store = StateStore(url)
        try:
            await store.ready()
        finally:
            await store.dispose()

    monkeypatch.setattr(alembic.operations.Operations, "create_index", killed_at_0002s_index)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(first_start())
    monkeypatch.setattr(alembic.operations.Operations, "create_index", create_index)

    async def second_start():
        store = StateStore(url)
        try:
            await store.ready()  # was: "table responses already exists", on every start after
            async with store.transaction() as conn:
                return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        finally:
            await store.dispose()

    assert asyncio.run(second_start()) == "0003"  # and on to the newest


def test_a_graceful_stop_during_a_flush_writes_each_row_once():
    """close() while the writer's flush has committed but not yet taken its rows off the buffer."""
    from contextlib import asynccontextmanager

    from serve_app.state.ledger import UsageLedger, UsageRow

    committed: list[str] = []

    class Conn:
        rows: list[str] = []

        async def execute(self, statement, rows):
            await asyncio.sleep(0.01)
            self.rows = [r["request_id"] for r in rows]

    class Store:  # as StateStore.transaction: the COMMIT lands at the end of the block, then the connection closes
        @asynccontextmanager
        async def transaction(self):
            conn = Conn()
            try:
                yield conn
                committed.extend(conn.rows)
            finally:
                await asyncio.sleep(0.01)

    async def stop_mid_flush():
        ledger = UsageLedger(Store(), flush_interval_s=0.05)
        for i in range(3):
            ledger.record(UsageRow(0, f"r{i}", "k", "m", "/v1/chat/completions", 200))
        await asyncio.sleep(0.065)  # the writer is closing its connection after the COMMIT
        await ledger.close()

    run(stop_mid_flush())
    assert committed == ["r0", "r1", "r2"]
