"""How many replicas each model deployment has running, read from the Serve controller and cached briefly.

Only available inside a Serve application; elsewhere (the in-process gateway) every model counts as ready.
"""

from __future__ import annotations

import asyncio
import time


class ReplicaStatus:
    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self._running: dict[str, int] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def running(self, deployment: str) -> int | None:
        """Running replicas of `deployment` in this application, or None when unknown."""
        async with self._lock:
            if time.monotonic() - self._read_at > self.ttl_s:
                self._running = await asyncio.to_thread(_read_running)
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
    async def running(self, deployment: str) -> int | None:
        return None
