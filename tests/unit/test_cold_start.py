"""Scale to zero at the gateway: requests held while the first replica starts, bounded, honest Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.config import ModelConfig
from serve_app.errors import ServiceUnavailable
from serve_app.gateway.registry import ModelRegistry
from serve_app.gateway.scale_to_zero import ColdStart


class SlowStart:
    """A wake-up call that completes after `seconds`, like a replica that takes that long to start."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.finished = seconds, 0, 0

    async def __call__(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        self.finished += 1


def test_request_is_held_until_the_replica_is_up():
    async def go():
        cold, wake = ColdStart("m", max_hold_s=2, expected_s=30), SlowStart(0.3)
        await asyncio.gather(*(cold.hold(wake) for _ in range(5)))  # five waiters, one start
        return cold, wake

    cold, wake = asyncio.run(go())
    assert wake.calls == 1 and wake.finished == 1
    assert 0.25 < cold.estimate_s() < 1.0  # measured, replaces the configured 30 s


def test_hold_bound_gives_503_with_retry_after_and_the_start_goes_on():
    async def go():
        cold, wake = ColdStart("m", max_hold_s=0.2, expected_s=5), SlowStart(0.6)
        with pytest.raises(ServiceUnavailable) as err:
            await cold.hold(wake)
        assert err.value.status_code == 503 and err.value.code == "model_cold_start"
        assert 4 <= int(err.value.headers["Retry-After"]) <= 5  # configured estimate minus time already spent
        await asyncio.sleep(0.6)
        assert wake.finished == 1  # giving up on the client did not cancel the start
        wake.seconds = 0.01  # the replica is up now: waking it is quick
        await cold.hold(wake)
        return cold

    cold = asyncio.run(go())
    assert 0.55 < max(cold.observed) < 1  # the background start was timed to its end


class FakeStatus:
    def __init__(self, running: int | None) -> None:
        self.value = running

    async def running(self, deployment: str) -> int | None:
        return self.value


def test_registry_holds_only_cold_scale_to_zero_models():
    zero = ModelConfig(id="z", kind="text", engine="transformers", source={"path": "/x"},
                       deployment={"autoscaling_config": {"min_replicas": 0, "max_replicas": 1}},
                       cold_start={"max_hold_s": 0.1, "expected_s": 9})
    always = ModelConfig(id="a", kind="text", engine="transformers", source={"path": "/x"})
    assert zero.scales_to_zero and not always.scales_to_zero

    class Backend:
        wake = SlowStart(1.0)

    async def go(running: int | None):
        from serve_app.config import LimitsConfig

        registry = ModelRegistry.from_config([zero, always], {"z": Backend(), "a": Backend()}, LimitsConfig(),
                                             FakeStatus(running))
        await registry.warm(registry.get("a"))  # never held
        states = [await registry.state(registry.get(m)) for m in ("z", "a")]
        await registry.warm(registry.get("z"))
        return states

    assert asyncio.run(go(1)) == ["ready", "ready"]
    with pytest.raises(ServiceUnavailable, match="starting from zero replicas"):
        asyncio.run(go(0))
    assert Backend.wake.calls == 1


def test_replica_counts_the_controller_cannot_give_are_unknown_not_an_error(monkeypatch):
    """A failing or hung Serve controller: models count as ready (None) rather than every request and
    GET /v1/models failing with it; the read is tried again after the cache's lifetime."""
    import time

    from serve_app.gateway import scale_to_zero

    answers = [RuntimeError("controller unavailable"), "hang", {"model-m": 0}]

    def read():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if answer == "hang":
            time.sleep(1)
            return {"model-m": 5}
        return answer

    monkeypatch.setattr(scale_to_zero, "_read_running", read)
    monkeypatch.setattr(scale_to_zero, "READ_TIMEOUT_S", 0.2)
    status = scale_to_zero.ReplicaStatus(ttl_s=0)

    async def three_reads():
        return [await status.running("model-m") for _ in range(3)]

    assert asyncio.run(three_reads()) == [None, None, 0]
