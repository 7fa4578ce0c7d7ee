"""Scale to zero: how many replicas each model has, and holding a request for a cold model while its first
replica starts, within a bound.

A model whose deployment autoscales from `min_replicas: 0` may have no replica. Serve queues calls until one
starts; the gateway adds the bound: it wakes the model with a tiny call that keeps running in the background,
holds the client for at most `max_hold_s`, and past that answers 503 with a Retry-After taken from the cold
starts it has seen (the configured estimate until it has seen one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from serve_app.errors import ServiceUnavailable

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 5.0  # a Serve controller slower than this to report replica counts: counted as unknown


class ColdStart:
    def __init__(self, model_id: str, max_hold_s: float, expected_s: float) -> None:
        self.model_id = model_id
        self.max_hold_s = max_hold_s
        self.expected_s = expected_s
        self.observed: deque[float] = deque(maxlen=9)  # recent cold-start durations
        self._waking: asyncio.Task | None = None
        self._waking_since = 0.0

    def estimate_s(self) -> float:
        return statistics.median(self.observed) if self.observed else self.expected_s

    async def hold(self, wake: Callable[[], Awaitable[None]]) -> None:
        """Return once `wake()` (a call answered by a live replica) completes; 503 if that takes too long."""
        if self._waking is None or self._waking.done():
            self._waking_since = time.monotonic()
            self._waking = asyncio.ensure_future(self._timed(wake))
        try:
            # shield: a client that gives up (or our bound) must not cancel the start for everyone else
            await asyncio.wait_for(asyncio.shield(self._waking), self.max_hold_s)
        except TimeoutError:
            left = self.estimate_s() - (time.monotonic() - self._waking_since)
            retry = max(1, math.ceil(left))
            raise ServiceUnavailable(
                f"Model `{self.model_id}` is starting from zero replicas; retry in {retry} s.",
                code="model_cold_start", headers={"Retry-After": str(retry)}) from None

    async def _timed(self, wake: Callable[[], Awaitable[None]]) -> None:
        started = time.monotonic()
        await wake()
        self.observed.append(time.monotonic() - started)


class ReplicaCounts(Protocol):
    async def running(self, deployment: str) -> int | None:
        """Running replicas of `deployment`, or None when unknown."""


class ReplicaStatus:
    """Replica counts read from the Serve controller and cached briefly; only inside a Serve application."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self._running: dict[str, int] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def running(self, deployment: str) -> int | None:
        """Running replicas of `deployment` in this application, or None when unknown (the controller did
        not answer within READ_TIMEOUT_S, or failed: models then count as ready rather than every request
        and GET /v1/models failing with it)."""
        async with self._lock:
            if time.monotonic() - self._read_at > self.ttl_s:
                try:
                    self._running = await asyncio.wait_for(asyncio.to_thread(_read_running), READ_TIMEOUT_S)
                except Exception as exc:  # noqa: BLE001 - any controller failure: unknown, logged, read again later
                    log.warning("replica counts unavailable from the Serve controller: %r", exc)
                    self._running = {}
                self._read_at = time.monotonic()
        return self._running.get(deployment)


def _read_running() -> dict[str, int]:
    from ray import serve

    app = serve.get_replica_context().app_name
    status = serve.status().applications.get(app)
    if status is None:
        return {}
    return {name: d.replica_states.get("RUNNING", 0) for name, d in status.deployments.items()}


class AlwaysReady:
    """Outside Serve (the in-process gateway) every model counts as ready."""

    async def running(self, deployment: str) -> int | None:
        return None
