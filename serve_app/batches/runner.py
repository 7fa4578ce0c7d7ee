"""The batch runner: one Serve replica that takes unfinished batches from the state store, oldest first, and
runs their lines through its own copy of the gateway (the same validation, engines, usage ledger and
limits as interactive requests, charged to the batch's key and marked with its batch id).

Low priority: a line is sent to a model only while that model's replica holds no interactive request, and at
most `batch_concurrency` lines per model are in flight. Each finished line is stored at once, so a runner that
restarts (crash, node loss, redeploy) resumes without running a finished line again; lines in flight when it
died run again."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable

import httpx
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from serve_app.batches.input import BatchLine, parse_batch_file
from serve_app.config import APIKey, AppArgs
from serve_app.errors import APIError
from serve_app.gateway.asgi import build_gateway
from serve_app.gateway.backends import REPLICA_LOST, LimiterBackend, backend_for
from serve_app.gateway.middleware import BatchCallerMiddleware
from serve_app.state.batches import batch_object
from serve_app.state.setup import State

log = logging.getLogger(__name__)
POLL_S = 2.0  # new batches also wake the runner at once
_STATUS_CHECK_S = 1.0  # how often a running batch looks for a cancel or its deadline
_GATE_WAIT_S = 0.2
# A line's answer is in hand: a store that fails for a moment (SQLite busy, a PostgreSQL failover) is waited out
# rather than the answer lost and the line sent to the model again.
_RECORD_TRIES, _RECORD_RETRY_S = 5, 1.0
_MAX_RETRY_WAIT_S = 60.0

DEPLOYMENT_OPTIONS = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}, "max_ongoing_requests": 100}


class BatchRunner:
    def __init__(self, args: dict, keys: list[dict], handles: dict[str, DeploymentHandle],
                 limiter: DeploymentHandle) -> None:
        self.args = AppArgs.model_validate(args)
        self.handles = handles
        backends = {m.id: backend_for(m.kind, handles[m.id]) for m in self.args.models}
        self.state = State.open(self.args.state)
        app = build_gateway(self.args, [APIKey.model_validate(k) for k in keys], backends, LimiterBackend(limiter),
                            state=self.state, batch_caller=True)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://batch-runner",
                                        timeout=None)
        self.concurrency = self.args.state.batch_concurrency
        self._in_flight: dict[str, int] = defaultdict(int)
        # Lines sent to one model at once, across all batches: each batch queues at most `concurrency` lines
        # for a model's slots, so the slots go to the batches in turn (a big batch does not hold up the others).
        self._model_slots: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self.concurrency))
        self._advancing: dict[str, asyncio.Task] = {}  # batch id -> the task running it
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run_forever())
        self._stopped = False

    async def _parse(self, data: bytes) -> list[BatchLine]:
        return await asyncio.to_thread(parse_batch_file, data, self.state.config.max_batch_lines,
                                       self.args.limits.max_json_elements)

    async def wake(self) -> None:
        """A batch was created or cancelled: look now rather than at the next poll."""
        self._wake.set()

    def __del__(self) -> Awaitable[None] | None:
        """Serve's graceful stop (a redeploy, a scale-down) awaits what this returns: the rounds stopped, then the
        usage rows still queued written (the runner's gateway is called in-process: no lifespan of its own does
        it). Python's own call when the object goes, after Serve's or for a runner never started, does nothing."""
        if getattr(self, "_stopped", True):
            return None
        self._stopped = True
        return self._stop()

    async def _stop(self) -> None:
        tasks = [self._task, *getattr(self, "_advancing", {}).values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.state.close()

    async def check_health(self) -> None:
        if self._task.done():  # the loop must never end; Serve replaces a replica that fails this
            raise RuntimeError(f"batch loop stopped: {self._task.exception()!r}")

    async def _run_forever(self) -> None:
        while True:
            try:
                for row in await self.state.batches.unfinished():  # every batch at once, each in its own task
                    running = self._advancing.get(row.id)
                    if running is None or running.done():
                        self._advancing[row.id] = asyncio.create_task(self._advance_logged(row))
            except Exception:  # noqa: BLE001 - the store may be down: log, and try again at the next poll
                log.exception("batch runner round failed")
            self._advancing = {key: task for key, task in self._advancing.items() if not task.done()}
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _advance_logged(self, row) -> None:
        try:
            await self._advance(row)
        except Exception:  # noqa: BLE001 - the store may be down: the next poll takes this batch up again
            log.exception("batch %s: round failed", row.id)
            return
        self._wake.set()  # a batch left running (cancelled, or more to do) is taken up again at once

    async def _advance(self, row) -> None:
        batches = self.state.batches
        if row.status == "cancelling":
            return await self._finish(row, "cancelled", ("cancelling",))
        if time.time() >= row.expires_at:
            return await self._finish(row, "expired", ("validating", "in_progress", "finalizing"))
        if row.status == "finalizing":
            return await self._finish(row, "completed", ("finalizing",))
        if row.status == "validating" and not await batches.transition(row.id, ("validating",), "in_progress"):
            return  # cancelled (or taken up) since the round read it: the next round sees its new status
        lines = await self._input_lines(row)
        if lines is None:
            return
        done = await batches.finished_lines(row.id)
        todo = [line for line in lines if line.index not in done]
        log.info("batch %s: %d of %d lines to run", row.id, len(todo), len(lines))
        if await self._run_lines(row, todo):
            if await batches.transition(row.id, ("in_progress",), "finalizing"):
                await self._finish(row, "completed", ("finalizing",))

    async def _input_lines(self, row) -> list[BatchLine] | None:
        file = await self.state.files.get(row.owner, row.input_file_id)
        try:
            if file is None:
                raise APIError(f"The input file {row.input_file_id} was deleted.", code="input_file_missing")
            return await self._parse(await self.state.files.content(file))
        except APIError as exc:
            errors = {"object": "list", "data": [{"code": exc.code or "invalid_input_file", "message": exc.message,
                                                  "param": None, "line": None}]}
            await self.state.batches.transition(row.id, ("validating", "in_progress"), "failed",
                                                errors_json=json.dumps(errors))
            return None

    async def _run_lines(self, row, todo: list[BatchLine]) -> bool:
        """Run lines until all are done (True) or the batch is cancelled or expires (False)."""
        queued: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self.concurrency))
        stop = asyncio.Event()

        async def run(line: BatchLine) -> None:
            model = line.body["model"]
            async with queued[model], self._model_slots[model]:
                await self._wait_for_quiet(model, stop)
                if stop.is_set():
                    return
                self._in_flight[model] += 1
                try:
                    ok, payload = await self._send(row, line, stop)
                finally:
                    self._in_flight[model] -= 1
                await self._record(row.id, line.index, ok, payload)

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(_STATUS_CHECK_S)
                current = await self.state.batches.get(None, row.id)
                if current is None or current.status != "in_progress" or time.time() >= current.expires_at:
                    stop.set()

        watcher = asyncio.create_task(watch())
        try:
            # Every line runs to its end even if another fails: a line still running when its round ended would
            # be sent again by the next round, which sees no answer for it yet.
            results = await asyncio.gather(*(run(line) for line in todo), return_exceptions=True)
        finally:
            watcher.cancel()
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        return not stop.is_set()

    async def _record(self, batch_id: str, index: int, ok: bool, payload: dict) -> None:
        for attempt in range(1, _RECORD_TRIES + 1):
            try:
                return await self.state.batches.record_line(batch_id, index, ok, payload)
            except Exception:  # noqa: BLE001 - retried; the last failure ends the round, which starts again
                if attempt == _RECORD_TRIES:
                    raise
                log.warning("batch %s: recording line %d failed (try %d), again in %gs", batch_id, index, attempt,
                            _RECORD_RETRY_S, exc_info=True)
                await asyncio.sleep(_RECORD_RETRY_S)

    async def _wait_for_quiet(self, model: str, stop: asyncio.Event) -> None:
        """Hold a line while the model's replica answers interactive requests (all it holds beyond ours)."""
        handle = self.handles.get(model)
        if handle is None:
            return  # a model no longer served: sending answers the line with the gateway's 404
        while not stop.is_set():
            try:
                held = await handle.pending.remote()
            except (*REPLICA_LOST, BackPressureError):
                return  # a replica starting, lost or full: send, the gateway path copes
            if held - self._in_flight[model] <= 0:
                return
            await asyncio.sleep(_GATE_WAIT_S)

    async def _send(self, row, line: BatchLine, stop: asyncio.Event) -> tuple[bool, dict]:
        """One line's answer; a refusal that passes with time (the key's per-minute limits, a full or restarting
        model) is waited out and sent again, as long as the batch runs, rather than failing the line."""
        request_id = "batch_req_" + secrets.token_hex(12)
        headers = {BatchCallerMiddleware.KEY_HEADER: row.owner, BatchCallerMiddleware.BATCH_HEADER: row.id,
                   "x-request-id": request_id}
        try:
            while True:
                response = await self.client.post(line.url, json=line.body, headers=headers)
                body = response.json()
                wait = retry_after(response.status_code, body, response.headers.get("retry-after"))
                if wait is None or stop.is_set():
                    break
                await asyncio.sleep(wait)
        except Exception as exc:  # noqa: BLE001 - recorded as this line's error, the batch goes on
            log.warning("batch %s line %d failed: %r", row.id, line.index, exc)
            return False, {"id": request_id, "custom_id": line.custom_id, "response": None,
                           "error": {"code": "server_error", "message": "The request failed; it was not retried."}}
        return response.status_code < 400, {
            "id": request_id, "custom_id": line.custom_id,
            "response": {"status_code": response.status_code, "request_id": request_id, "body": body},
            "error": None}

    async def _finish(self, row, status: str, frm: tuple[str, ...]) -> None:
        """Write the output and error files from the stored lines, then the final status."""
        results = await self.state.batches.results(row.id)
        files = self.state.files
        outputs = {}
        for ok, purpose_name in ((True, "output_file_id"), (False, "error_file_id")):
            lines = [r.payload for r in results if r.ok == ok]
            if not ok and status in ("expired", "cancelled"):
                lines += await self._unrun_lines(row, {r.line for r in results}, status)
            if lines:
                data = ("\n".join(lines) + "\n").encode()
                name = f"{row.id}_{'output' if ok else 'error'}.jsonl"
                outputs[purpose_name] = (await files.create(row.owner, "batch_output", name, data))["id"]
        await self.state.batches.transition(row.id, frm, status, **outputs)
        current = await self.state.batches.get(None, row.id)
        log.info("batch %s %s: %s", row.id, status, batch_object(current)["request_counts"] if current else "")

    async def _unrun_lines(self, row, finished: set[int], status: str) -> list[str]:
        """Lines never run, as error lines: OpenAI reports them so every custom_id has an answer."""
        file = await self.state.files.get(row.owner, row.input_file_id)
        if file is None:
            return []
        lines = await self._parse(await self.state.files.content(file))
        code = "batch_expired" if status == "expired" else "batch_cancelled"
        return [json.dumps({"id": "batch_req_" + secrets.token_hex(12), "custom_id": line.custom_id,
                            "response": None, "error": {"code": code, "message": f"This line was not run: the "
                                                        f"batch was {status} first."}})
                for line in lines if line.index not in finished]


def retry_after(status: int, body: dict, header: str | None) -> float | None:
    """Seconds to wait before sending a line again, or None when its answer is final. A spent daily or monthly
    budget is final (it resets hours later; the line reports it), and so is a 429 without Retry-After: the
    request alone is over a per-minute limit, and no wait lets it through."""
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if status == 503 or (status == 429 and code != "budget_exceeded" and header is not None):
        try:
            return min(_MAX_RETRY_WAIT_S, max(0.1, float(header or 1)))
        except ValueError:
            return 1.0
    return None
