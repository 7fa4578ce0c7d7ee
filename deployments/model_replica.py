"""What every model replica answers besides its own work: its load (the batch runner sends work only while it
is low), the wake-up call of a model scaled to zero, health, and teardown of its engine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from deployments.engines.base import Engine


class ModelReplica:
    engine: Engine

    def __init__(self) -> None:
        self._running = 0

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1

    async def pending(self) -> int:
        """Requests this replica is answering or holding."""
        return self._running

    async def ready(self) -> None:
        """Answered once this replica is up: the gateway's wake-up call for a model scaled to zero."""

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        """Let the engine stop its threads or processes."""
        if hasattr(self, "engine"):  # absent when the engine failed to start
            self.engine.shutdown()

    def __del__(self) -> None:
        self.shutdown()  # Serve calls this when the replica is torn down
