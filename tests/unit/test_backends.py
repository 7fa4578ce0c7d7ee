"""A full model queue (Serve's BackPressureError) reaches the client as 503 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from serve_app.errors import ServiceUnavailable
from serve_app.gateway.backends import SpeechBackend, TextBackend
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest


class FullQueueHandle:
    """Stands in for a DeploymentHandle whose deployment's queue is full."""

    def options(self, **_):
        return self

    def __getattr__(self, method):
        return self

    def remote(self, *args):
        raise BackPressureError(num_queued_requests=8, max_queued_requests=8, retry_after_s=2.5)


CHAT = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}])


def test_full_queue_is_503_with_retry_after():
    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(TextBackend(FullQueueHandle()).complete(CHAT))
    assert err.value.status_code == 503 and err.value.headers["Retry-After"] == "3"
    assert err.value.code == "model_overloaded"
    with pytest.raises(ServiceUnavailable):
        asyncio.run(SpeechBackend(FullQueueHandle()).transcribe(b"", TranscriptionRequest(model="w")))


class FakeStream:
    """Stands in for a streaming DeploymentResponseGenerator; like Serve's, cancel() re-raises a failure."""

    def __init__(self, items: list, failure: Exception | None = None) -> None:
        self.items, self.failure, self.cancelled = items, failure, False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.items:
            return self.items.pop(0)
        raise self.failure or StopAsyncIteration

    def cancel(self):
        self.cancelled = True
        if self.failure:
            raise self.failure


def stream_backend(stream: FakeStream) -> TextBackend:
    handle = FullQueueHandle()
    handle.remote = lambda *args: stream
    return TextBackend(handle)


def test_stream_refused_by_full_queue_is_503_not_serves_plain_text():
    stream = FakeStream([], BackPressureError(num_queued_requests=2, max_queued_requests=1, retry_after_s=None))
    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(anext(stream_backend(stream).stream(CHAT)))
    assert err.value.code == "model_overloaded" and err.value.headers["Retry-After"] == "1"


def test_stream_closed_early_cancels_the_call_and_a_finished_one_is_left_alone():
    async def first_then_close(stream):
        steps = stream_backend(stream).stream(CHAT)
        assert await anext(steps) == 1
        await steps.aclose()

    early = FakeStream([1, 2, 3])
    asyncio.run(first_then_close(early))
    assert early.cancelled

    async def drain(stream):
        return [item async for item in stream_backend(stream).stream(CHAT)]

    finished = FakeStream([1, 2])
    assert asyncio.run(drain(finished)) == [1, 2] and not finished.cancelled


def lost_replica() -> ActorDiedError:
    return ActorDiedError()


class ScriptedHandle(FullQueueHandle):
    """Each remote() call takes the next outcome: an exception to raise or a value (or stream) to return."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes, self.calls = list(outcomes), 0

    def remote(self, *args):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            async def fail():
                raise outcome
            return fail()
        if isinstance(outcome, FakeStream):
            return outcome

        async def value():
            return outcome
        return value()


def test_whole_call_on_a_lost_replica_is_retried_once_then_a_retryable_503():
    handle = ScriptedHandle([lost_replica(), "done"])
    assert asyncio.run(TextBackend(handle).complete(CHAT)) == "done" and handle.calls == 2
    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(TextBackend(ScriptedHandle([lost_replica(), lost_replica()])).complete(CHAT))
    assert err.value.code == "model_unavailable" and err.value.headers["Retry-After"] == "1"


def test_stream_lost_before_its_first_item_is_retried_and_after_it_fails_typed():
    async def drain(handle):
        return [item async for item in TextBackend(handle).stream(CHAT)]

    handle = ScriptedHandle([FakeStream([], lost_replica()), FakeStream([1, 2])])
    assert asyncio.run(drain(handle)) == [1, 2] and handle.calls == 2
    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(drain(ScriptedHandle([FakeStream([1], lost_replica())])))
    assert err.value.code == "model_unavailable"


def test_an_unanswering_rate_limiter_is_a_503_in_bounded_time_never_a_hang():
    from serve_app.config import RateLimits
    from serve_app.gateway.backends import LimiterBackend

    class Hanging(FullQueueHandle):
        def remote(self, *args):
            return asyncio.sleep(3600)

    async def admit():
        return await LimiterBackend(Hanging(), timeout_s=0.2).admit("k", RateLimits())

    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(admit())
    assert err.value.code == "rate_limiter_unavailable" and err.value.headers["Retry-After"]
    with pytest.raises(ServiceUnavailable):
        asyncio.run(LimiterBackend(ScriptedHandle([lost_replica()])).admit("k", RateLimits()))


def test_a_charge_the_rate_limiter_missed_is_sent_again_in_the_background(monkeypatch):
    from serve_app.config import RateLimits
    from serve_app.gateway import backends
    from serve_app.gateway.backends import LimiterBackend

    monkeypatch.setattr(backends, "CHARGE_RETRY_S", 0.01)

    class DownThenUp(FullQueueHandle):
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def remote(self, *args):
            self.calls.append(args)
            if len(self.calls) <= 2:
                raise lost_replica()  # restarting: the first try and one retry fail
            return asyncio.sleep(0)

    async def charge():
        handle = DownThenUp()
        limiter = LimiterBackend(handle, timeout_s=0.2)
        await limiter.charge("k", RateLimits(), {"tokens": 5}, 0.0, "lease-1")  # returns at once: the answer is sent
        assert len(handle.calls) == 1
        await asyncio.sleep(0.2)
        return handle.calls

    calls = asyncio.run(charge())
    assert len(calls) == 3 and calls[-1][-1] == "lease-1"  # the lease is released in the end


class PendingHandle:
    """A handle whose calls never answer, recording which were cancelled."""

    def __init__(self) -> None:
        self.cancelled = 0

    def options(self, **_):
        return self

    def __getattr__(self, method):
        return self

    def remote(self, *args):
        handle = self

        class Response:
            def __await__(self):
                return asyncio.sleep(3600).__await__()

            def cancel(self):
                handle.cancelled += 1

        return Response()


def test_a_whole_call_given_up_cancels_the_replicas_work():
    """Serve cancels a replica's call only with its own request: a gateway that stops waiting must say so."""
    handle = PendingHandle()

    async def give_up():
        task = asyncio.ensure_future(TextBackend(handle).complete(CHAT))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(give_up())
    assert handle.cancelled == 1
