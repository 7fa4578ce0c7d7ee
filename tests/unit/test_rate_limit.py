import pytest

from serve_app.config import RateLimits
from serve_app.security.rate_limit import RateLimiter, duration_header, rate_limit_headers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_requests_per_minute_refill_continuously(clock):
    limiter, limits = RateLimiter(clock), RateLimits(requests_per_minute=3)
    assert [limiter.admit("k", limits).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.admit("k", limits)
    assert refused.limit_name == "requests per minute" and refused.retry_after_s == pytest.approx(20)
    clock.now += 20  # one request's worth refilled, exactly what Retry-After promised
    assert limiter.admit("k", limits).allowed and not limiter.admit("k", limits).allowed


def test_keys_have_separate_budgets(clock):
    limiter, limits = RateLimiter(clock), RateLimits(requests_per_minute=1)
    assert limiter.admit("a", limits).allowed and limiter.admit("b", limits).allowed
    assert not limiter.admit("a", limits).allowed


def test_tokens_are_charged_after_use_and_block_when_spent(clock):
    limiter, limits = RateLimiter(clock), RateLimits(tokens_per_minute=100)
    assert limiter.admit("k", limits).allowed
    limiter.charge("k", limits, tokens=150)  # a completion may overshoot; the debt is paid by waiting
    refused = limiter.admit("k", limits)
    assert not refused.allowed and refused.limit_name == "tokens per minute"
    assert refused.retry_after_s == pytest.approx(30, abs=0.01)
    clock.now += 31
    assert limiter.admit("k", limits).allowed


def test_unlimited_dimensions_never_refuse_and_add_no_headers(clock):
    limiter = RateLimiter(clock)
    decision = limiter.admit("k", RateLimits())
    assert decision.allowed and rate_limit_headers(decision) == []


def test_headers_count_down(clock):
    limiter, limits = RateLimiter(clock), RateLimits(requests_per_minute=10, tokens_per_minute=1000)
    first = dict(rate_limit_headers(limiter.admit("k", limits)))
    second = dict(rate_limit_headers(limiter.admit("k", limits)))
    assert first[b"x-ratelimit-limit-requests"] == b"10" and first[b"x-ratelimit-remaining-requests"] == b"9"
    assert second[b"x-ratelimit-remaining-requests"] == b"8" and second[b"x-ratelimit-reset-requests"] == b"12s"
    assert first[b"x-ratelimit-remaining-tokens"] == b"1000"


@pytest.mark.parametrize("seconds, text", [(0.012, "12ms"), (6, "6s"), (5.2, "6s"), (90, "1m30s"), (0, "0ms")])
def test_duration_format(seconds, text):
    assert duration_header(seconds) == text


def test_concurrent_requests_per_key_are_capped_and_freed_when_they_finish(clock):
    from serve_app.security.rate_limit import LEASE_S

    limiter, limits = RateLimiter(clock), RateLimits(max_concurrent_requests=2)
    first, second, third = (limiter.admit("k", limits) for _ in range(3))
    assert first.allowed and second.allowed and not third.allowed
    assert third.limit_name == "concurrent requests" and "at most 2" in third.detail
    assert limiter.admit("other", limits).allowed  # per key
    limiter.charge("k", limits, lease=first.lease)
    assert limiter.in_flight("k") == 1 and limiter.admit("k", limits).allowed
    clock.now += LEASE_S + 1  # a gateway that died never releases: its places lapse
    assert limiter.in_flight("k") == 0


def test_tokens_are_reserved_before_work_and_settled_with_real_usage(clock):
    limiter, limits = RateLimiter(clock), RateLimits(tokens_per_minute=100)
    assert limiter.reserve("k", limits, 80).allowed
    refused = limiter.reserve("k", limits, 30)  # 20 left: a second large request waits
    assert not refused.allowed and refused.limit_name == "tokens per minute"
    limiter.charge("k", limits, reserved_tokens=80, tokens=10)  # it used 10 of the 80 it held
    assert limiter.reserve("k", limits, 85).allowed  # 90 left: the 70 held but not used came back
    assert not limiter.reserve("k", limits, 6).allowed


def test_a_request_larger_than_the_whole_budget_is_refused_with_the_reason(clock):
    limiter, limits = RateLimiter(clock), RateLimits(tokens_per_minute=100)
    refused = limiter.reserve("k", limits, 500)
    assert not refused.allowed and "over the limit of 100" in refused.detail
    assert refused.retry_after_s is None  # no wait lets it through
