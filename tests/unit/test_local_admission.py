"""LocalAdmission: a gateway replica admits on its own while a key is far from its limits, and the shared limiter's
counts stay exact for one replica and within a margin for several."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.config import RateLimits
from serve_app.errors import ServiceUnavailable
from serve_app.security.local_admission import VIEW_TTL_S, LocalAdmission, margin
from serve_app.security.rate_limit import RateLimiter, RateLimiterServer

ROOMY = RateLimits(requests_per_minute=600, tokens_per_minute=100_000, max_concurrent_requests=64)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Shared(RateLimiterServer):
    """The shared limiter in-process, recording each call; every call takes a round trip's worth of loop turns."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.limiter = RateLimiter(clock)
        self.calls: list[list[str]] = []
        self.down = False

    async def apply(self, ops: list[tuple]):
        self.calls.append([f"{op[0]}{'!' if op[0] != 'charge' and op[4] else ''}" for op in ops])
        await asyncio.sleep(0.002)
        if self.down:
            raise ServiceUnavailable("down", code="rate_limiter_unavailable")
        return await super().apply(ops)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def shared(clock):
    return Shared(clock)


@pytest.fixture
def local(shared, clock):
    """One gateway replica's admission in front of the shared limiter."""
    return LocalAdmission(shared, clock)


def settle() -> asyncio.Future:
    return asyncio.sleep(0.05)  # long enough for every report to reach the shared limiter


def test_far_from_its_limits_a_key_is_admitted_and_reserved_without_a_round_trip(clock, shared, local):
    async def scenario():
        first = await local.admit("k", ROOMY)  # no view yet: asked
        assert first.allowed and shared.calls == [["admit"]]
        decisions = []
        for _ in range(5):
            decisions.append(await local.admit("k", ROOMY))
            assert (await local.reserve("k", ROOMY, 100)).allowed
        assert len(shared.calls) == 1  # nothing waited for the shared limiter
        assert all(d.allowed and d.lease for d in decisions)
        await settle()
        # every local admission and reservation reached it, batched, as counted and never refused
        assert sum(len(c) for c in shared.calls[1:]) == 10 and len(shared.calls) <= 3
        assert shared.limiter.in_flight("k") == 6
        tokens = (await shared.reserve("k", ROOMY, 1)).state["tokens"][1]
        assert tokens == 100_000 - 500 - 1
    asyncio.run(scenario())


def test_headers_of_local_admissions_count_down(clock, local):
    async def scenario():
        remaining = [(await local.admit("k", ROOMY)).state["requests"][1] for _ in range(4)]
        assert remaining == [599, 598, 597, 596]
    asyncio.run(scenario())


@pytest.mark.parametrize("burst", [False, True])
def test_near_a_limit_the_shared_limiter_decides_and_one_replica_never_passes_it(clock, burst, local):
    limits = RateLimits(requests_per_minute=30)

    async def scenario():
        if burst:
            decisions = await asyncio.gather(*(local.admit("k", limits) for _ in range(45)))
        else:
            decisions = [await local.admit("k", limits) for _ in range(45)]
        assert sum(d.allowed for d in decisions) == 30
        refused = [d for d in decisions if not d.allowed]
        assert refused[0].limit_name == "requests per minute"
    asyncio.run(scenario())


def test_concurrent_places_stay_exact_for_one_replica_and_come_back_when_charged(clock, shared, local):
    limits = RateLimits(max_concurrent_requests=20)

    async def scenario():
        await local.admit("k", limits)  # a view to start from
        decisions = await asyncio.gather(*(local.admit("k", limits) for _ in range(30)))
        admitted = [d for d in decisions if d.allowed]
        assert len(admitted) == 19
        await settle()
        assert shared.limiter.in_flight("k") == 20
        for d in admitted[:5]:
            await local.charge("k", limits, {}, 0.0, d.lease)
        await settle()
        again = await asyncio.gather(*(local.admit("k", limits) for _ in range(8)))
        assert sum(d.allowed for d in again) == 5
    asyncio.run(scenario())


def test_several_replicas_pass_a_limit_by_at_most_the_margin_each(clock):
    limits = RateLimits(requests_per_minute=200)

    async def scenario():
        shared = Shared(clock)
        replicas = [LocalAdmission(shared, clock) for _ in range(3)]
        for local in replicas:
            await local.admit("k", limits)
        bursts = await asyncio.gather(*(local.admit("k", limits) for local in replicas for _ in range(100)))
        allowed = 3 + sum(d.allowed for d in bursts)
        assert 200 <= allowed <= 200 + 2 * margin(200)
    asyncio.run(scenario())


def test_large_reservations_and_refusals_are_the_shared_limiters_answer(clock, shared, local):
    limits = RateLimits(tokens_per_minute=1000)

    async def scenario():
        await local.admit("k", limits)
        calls = len(shared.calls)
        assert (await local.reserve("k", limits, 50)).allowed and len(shared.calls) == calls  # under the margin
        big = await local.reserve("k", limits, 500)  # more than the margin (100): asked
        assert big.allowed and len(shared.calls) > calls
        refused = await local.reserve("k", limits, 5000)
        assert not refused.allowed and "over the limit of 1,000" in refused.detail
    asyncio.run(scenario())


def test_an_old_view_is_not_trusted(clock, shared, local):
    async def scenario():
        await local.admit("k", ROOMY)
        await local.admit("k", ROOMY)
        await settle()
        calls = len(shared.calls)
        clock.now += VIEW_TTL_S + 0.1
        await local.admit("k", ROOMY)
        assert shared.calls[calls:] == [["admit"]]
    asyncio.run(scenario())


def test_keys_without_limits_cost_no_call(clock, shared, local):
    async def scenario():
        decision = await local.admit("k", RateLimits())
        assert decision.allowed and decision.lease is None
        assert (await local.reserve("k", RateLimits(), 100)).allowed
        await local.charge("k", RateLimits(), {}, 0.0, None)
        await settle()
        assert shared.calls == []
    asyncio.run(scenario())


def test_a_request_cancelled_while_asking_gives_its_place_back(clock, shared, local):
    limits = RateLimits(max_concurrent_requests=2)

    async def scenario():
        asking = asyncio.ensure_future(local.admit("k", limits))
        await asyncio.sleep(0.001)  # sent, not answered
        asking.cancel()
        await settle()
        assert shared.limiter.in_flight("k") == 0
    asyncio.run(scenario())


def test_an_unavailable_shared_limiter_is_a_503_for_askers_and_never_hangs(clock):
    async def scenario():
        shared = Shared(clock)
        shared.down = True
        local = LocalAdmission(shared, clock)
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(local.admit("k", ROOMY), 1)
        shared.down = False
        assert (await local.admit("k", ROOMY)).allowed
    asyncio.run(scenario())


def test_the_reports_of_a_burst_share_one_call_and_an_ask_does_not_wait_for_them(clock, shared, local):
    limits = RateLimits(requests_per_minute=6000)  # room for more than 10 unreported

    async def scenario():
        await local.admit("k", limits)
        for _ in range(10):
            await local.admit("k", limits)
            await asyncio.sleep(0)  # each arrival its own loop turn
        await settle()
        assert shared.calls[1:] == [["admit!"] * 10]
        await local.admit("k", limits)  # a report waits for company...
        clock.now += VIEW_TTL_S + 0.1
        asked = asyncio.get_running_loop().time()
        await local.admit("k", limits)  # ...an ask does not, and takes it along
        assert asyncio.get_running_loop().time() - asked < 0.009
        assert shared.calls[-1] == ["admit!", "admit"]
    asyncio.run(scenario())


def test_usage_charged_counts_at_once_in_the_view_and_reaches_the_shared_limiter_at_once(clock, shared, local):
    limits = RateLimits(audio_seconds_per_minute=8)  # margin 8: decided locally only while the budget is full

    async def scenario():
        codes = []
        for _ in range(3):
            decision = await local.admit("k", limits)
            codes.append(decision.allowed)
            if decision.allowed:
                await local.charge("k", limits, {"audio_seconds": 5.0}, 0.0, decision.lease)
                assert shared.calls[-1][-1] != "charge"  # not sent yet...
                await asyncio.sleep(0.003)  # ...but within a round trip, unbatched
                assert "charge" in shared.calls[-1]
        assert codes == [True, True, False]  # admitted while above zero: 8 -> 3 -> -2
    asyncio.run(scenario())


def test_charges_of_a_failed_call_are_sent_again_so_places_come_back(clock, shared, local, monkeypatch):
    from serve_app.security import local_admission

    monkeypatch.setattr(local_admission, "RETRY_S", 0.05)
    limits = RateLimits(max_concurrent_requests=2)

    async def scenario():
        leases = [(await local.admit("k", limits)).lease for _ in range(2)]
        await settle()
        assert shared.limiter.in_flight("k") == 2
        shared.down = True
        for lease in leases:  # the requests end while the shared limiter cannot answer
            await local.charge("k", limits, {"tokens": 5}, 0.0, lease)
        await settle()
        shared.down = False
        await asyncio.sleep(0.2)
        assert shared.limiter.in_flight("k") == 0  # dropped, they would stay taken for the lease's hour
        assert all([(await local.admit("k", limits)).allowed for _ in range(2)])
    asyncio.run(scenario())


def test_a_place_granted_by_a_call_that_failed_on_the_way_back_is_released(clock, monkeypatch):
    from serve_app.security import local_admission

    monkeypatch.setattr(local_admission, "RETRY_S", 0.05)

    class AnswersLost(Shared):
        """Applies every call, then (while `lose`) fails it, as a call timed out after it landed."""

        lose = True

        async def apply(self, ops):
            answers = await super().apply(ops)
            if self.lose:
                raise ServiceUnavailable("timed out", code="rate_limiter_unavailable")
            return answers

    async def scenario():
        shared = AnswersLost(clock)
        local = LocalAdmission(shared, clock)
        limits = RateLimits(max_concurrent_requests=1)
        with pytest.raises(ServiceUnavailable):
            await local.admit("k", limits)
        assert shared.limiter.in_flight("k") == 1  # granted there, refused here
        shared.lose = False
        await asyncio.sleep(0.2)
        assert shared.limiter.in_flight("k") == 0
    asyncio.run(scenario())


def test_an_outage_queues_a_bounded_number_of_releases_and_sends_them_in_bounded_calls(shared, local, monkeypatch):
    """Every refused ask queues the release of a place it may have been granted; unbounded, an outage grew the
    queue with every request and the first call after it carried them all."""
    from serve_app.security import local_admission

    monkeypatch.setattr(local_admission, "MAX_QUEUED_OPS", 50)
    monkeypatch.setattr(local_admission, "MAX_OPS_PER_CALL", 20)
    monkeypatch.setattr(local_admission, "RETRY_S", 0.01)
    limits = RateLimits(max_concurrent_requests=4)

    async def outage_then_back():
        shared.down = True
        refused = 0
        for _ in range(200):
            try:
                await asyncio.wait_for(local.admit("k", limits), 1)
            except ServiceUnavailable:
                refused += 1
        queued = len(local._queue)
        shared.down, shared.calls = False, []
        await asyncio.sleep(0.3)
        return refused, queued

    refused, queued = asyncio.run(outage_then_back())
    assert refused == 200  # each ask answered at once, none left waiting behind queued releases
    assert queued <= 50 and not local._queue  # bounded while down, all sent once back
    assert shared.calls and max(len(call) for call in shared.calls) <= 20
