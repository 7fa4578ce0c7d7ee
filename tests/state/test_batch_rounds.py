"""The batch runner's rounds over a real store: a line is sent to its model once, even when the store fails
for a moment while answers are being recorded."""

from __future__ import annotations

import asyncio
import collections
import json

from serve_app.batches import runner as runner_module
from serve_app.batches.input import parse_batch_file
from serve_app.batches.runner import BatchRunner
from serve_app.config import StateConfig
from serve_app.state.setup import State


def test_a_store_failing_once_while_answers_are_recorded_runs_no_line_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "_RECORD_RETRY_S", 0.05)
    sent: collections.Counter = collections.Counter()

    async def scenario():
        state = State.open(StateConfig(url=f"sqlite:///{tmp_path}/state.db", files_url=str(tmp_path / "files")))
        lines = "\n".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                                      "body": {"model": "m", "messages": []}}) for i in range(4)).encode()
        file = await state.files.create("alice", "batch", "in.jsonl", lines)
        batch = await state.batches.create("alice", "/v1/chat/completions", file["id"], "24h", None, 4)
        runner = object.__new__(BatchRunner)  # its rounds alone: no gateway, no Serve
        runner.state, runner.concurrency, runner.handles = state, 4, {}
        runner._in_flight, runner._wake = collections.defaultdict(int), asyncio.Event()

        async def parse(data):
            return parse_batch_file(data, 100, 10_000)

        async def quiet(model, stop):
            return None

        async def send(row, line, stop):
            sent[line.custom_id] += 1
            await asyncio.sleep(0.05 if line.index == 0 else 0.3)  # line 0's answer is recorded first
            return True, {"custom_id": line.custom_id}

        record, failures = state.batches.record_line, []

        async def record_once_failing(*args):
            if not failures:  # "database is locked", a failover: once
                failures.append(args)
                raise RuntimeError("the store failed for a moment")
            return await record(*args)

        runner._parse, runner._wait_for_quiet, runner._send = parse, quiet, send
        state.batches.record_line = record_once_failing
        for _ in range(3):  # three of the runner's rounds
            for row in await state.batches.unfinished():
                await runner._advance(row)
        row = await state.batches.get(None, batch["id"])
        await state.close()
        return row

    row = asyncio.run(scenario())
    assert dict(sent) == {"c0": 1, "c1": 1, "c2": 1, "c3": 1}
    assert row.status == "completed" and row.completed == 4 and row.failed == 0


def test_a_graceful_stop_writes_the_usage_rows_still_queued(tmp_path):
    from sqlalchemy import text

    from serve_app.state.ledger import UsageRow
    from serve_app.state.store import StateStore

    url = f"sqlite:///{tmp_path}/state.db"

    async def scenario():
        runner = object.__new__(BatchRunner)
        runner.state = State.open(StateConfig(url=url, files_url=str(tmp_path / "files"), usage_flush_interval_s=60))
        runner._task, runner._stopped = asyncio.ensure_future(asyncio.sleep(3600)), False  # the rounds, running
        runner.state.ledger.record(UsageRow(1, "req-1", "alice", "m", "/v1/chat/completions", 200, latency_ms=5.0,
                                            prompt_tokens=7))
        await runner.__del__()  # what Serve awaits on a redeploy
        assert runner.__del__() is None  # Python's own call, when the object goes
        store = StateStore(url)
        async with store.transaction() as conn:
            written = (await conn.execute(text("SELECT count(*) FROM usage_events"))).scalar_one()
        await store.dispose()
        return written, runner._task.cancelled()

    assert asyncio.run(scenario()) == (1, True)
