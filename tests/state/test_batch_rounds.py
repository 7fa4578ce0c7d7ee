"""The batch runner's rounds over a real store: a line is sent to its model once, even when the store fails
for a moment while answers are being recorded."""

from __future__ import annotations

import asyncio
import collections
import json

import pytest

from serve_app.batches import runner as runner_module
from serve_app.batches.input import parse_batch_file
from serve_app.batches.runner import BatchRunner
from serve_app.config import StateConfig
from serve_app.state.setup import State


def rounds_only(state: State, concurrency: int) -> BatchRunner:
    """A runner's rounds alone: no gateway, no Serve (lines are sent by the test's own `_send`)."""
    runner = object.__new__(BatchRunner)
    runner.state, runner.concurrency, runner.handles = state, concurrency, {}
    runner._in_flight, runner._wake, runner._advancing = collections.defaultdict(int), asyncio.Event(), {}
    runner._model_slots = collections.defaultdict(lambda: asyncio.Semaphore(concurrency))

    async def parse(data):
        return parse_batch_file(data, 100, 10_000)

    async def quiet(model, stop):
        return None

    runner._parse, runner._wait_for_quiet = parse, quiet
    return runner


def batch_file(count: int, prefix: str = "c") -> bytes:
    return "\n".join(json.dumps({"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": "m", "messages": []}}) for i in range(count)).encode()


def test_a_store_failing_once_while_answers_are_recorded_runs_no_line_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "_RECORD_RETRY_S", 0.05)
    sent: collections.Counter = collections.Counter()

    async def scenario():
        state = State.open(StateConfig(url=f"sqlite:///{tmp_path}/state.db", files_url=str(tmp_path / "files")))
        file = await state.files.create("alice", "batch", "in.jsonl", batch_file(4))
        batch = await state.batches.create("alice", "/v1/chat/completions", file["id"], "24h", None, 4)
        runner = rounds_only(state, concurrency=4)

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

        runner._send = send
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


def test_a_small_batch_is_not_held_up_behind_a_big_one_and_the_model_gets_one_line_at_a_time(tmp_path):
    finished: list[str] = []
    in_flight, most = 0, 0

    async def scenario():
        nonlocal in_flight, most
        state = State.open(StateConfig(url=f"sqlite:///{tmp_path}/state.db", files_url=str(tmp_path / "files")))
        runner = rounds_only(state, concurrency=1)

        async def send(row, line, stop):
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            return True, {"custom_id": line.custom_id}

        runner._send = send
        ids = {}
        for name, count in (("big", 30), ("small", 1)):  # the big batch first
            file = await state.files.create("alice", "batch", f"{name}.jsonl", batch_file(count, name))
            ids[(await state.batches.create("alice", "/v1/chat/completions", file["id"], "24h", None, count))["id"]] \
                = name
        runner._task = asyncio.create_task(runner._run_forever())
        runner._stopped = False
        while len(finished) < 2:
            await asyncio.sleep(0.05)
            for batch_id, name in ids.items():
                row = await state.batches.get(None, batch_id)
                if row.status == "completed" and name not in finished:
                    finished.append(name)
        await runner.__del__()

    asyncio.run(scenario())
    assert finished == ["small", "big"] and most == 1  # before: "big" first, the small one waited 30 lines


class _Pending:
    def __init__(self, answers: list) -> None:
        self.answers = answers

    def remote(self):
        async def answer():
            value = self.answers.pop(0)
            if isinstance(value, BaseException):
                raise value
            return value
        return answer()


class _ModelHandle:
    def __init__(self, *answers) -> None:
        self.pending = _Pending(list(answers))


def test_a_line_waits_for_interactive_work_but_not_for_a_lost_replica_or_a_model_gone(tmp_path, monkeypatch):
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError

    monkeypatch.setattr(runner_module, "_GATE_WAIT_S", 0.01)
    runner = object.__new__(BatchRunner)
    runner._in_flight = collections.defaultdict(int)

    async def wait(handles: dict) -> None:
        runner.handles = handles
        await asyncio.wait_for(BatchRunner._wait_for_quiet(runner, "m", asyncio.Event()), 5)

    busy_then_quiet = _ModelHandle(2, 1, 0)
    asyncio.run(wait({"m": busy_then_quiet}))
    assert busy_then_quiet.pending.answers == []  # asked until the replica held nothing but ours
    asyncio.run(wait({}))  # a model no longer served: the line goes, and the gateway answers it 404
    asyncio.run(wait({"m": _ModelHandle(RayActorError())}))
    asyncio.run(wait({"m": _ModelHandle(BackPressureError(num_queued_requests=1, max_queued_requests=1))}))
    # a bug is not taken for a replica starting
    with pytest.raises(TypeError):
        asyncio.run(wait({"m": _ModelHandle(TypeError("a bug"))}))
