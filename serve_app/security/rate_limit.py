"""Per-key rate limits as token buckets refilled continuously (a limit per minute), and their headers.

One RateLimiter instance holds the state for every gateway replica: under Serve it lives in its own
single-replica deployment (`rate-limiter`), so N replicas cannot each grant the full budget. Gateway replicas
ask it through LocalAdmission (security/local_admission.py), which admits on its own while a key is far from
its limits and tells the shared limiter afterwards, in batches (`apply`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from serve_app.config import RateLimits

# dimension -> (RateLimits field, header suffix or None, noun for messages)
DIMENSIONS = {
    "requests": ("requests_per_minute", "requests", "requests per minute"),
    "tokens": ("tokens_per_minute", "tokens", "tokens per minute"),
    "audio_seconds": ("audio_seconds_per_minute", None, "audio seconds per minute"),
    "images": ("images_per_minute", None, "images per minute"),
}


@dataclass
class _Bucket:
    capacity: float
    level: float
    updated: float

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now


@dataclass
class Decision:
    allowed: bool
    limit_name: str | None = None  # the limit that refused, e.g. "requests per minute"
    retry_after_s: float | None = 0.0  # None: waiting cannot help (the request alone is over a limit)
    # header suffix -> (limit, remaining, seconds until full)
    state: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    lease: str | None = None  # an admitted request's place among the key's concurrent requests
    detail: str = ""  # why, when the reason is more than an empty budget
    room: dict[str, float] = field(default_factory=dict)  # dimension -> what is left in its bucket now
    in_flight: int | None = None  # the key's requests running now, when its concurrency is limited


# A gateway replica that dies cannot release its requests' places: each lease lapses after this long.
LEASE_S = 3600.0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._leases: dict[str, dict[str, float]] = {}  # key -> lease -> expiry

    def admit(self, key: str, limits: RateLimits, lease: str | None = None, force: bool = False) -> Decision:
        """Take one request from the key's budget if every dimension still has room and the key has a free
        place among its concurrent requests. `lease`: the id the caller gives the request's place (one is made
        up otherwise); `force`: a request a gateway already let through (LocalAdmission): counted, never refused."""
        now = self._clock()
        buckets = self._buckets_for(key, limits, now)
        for dimension, bucket in buckets.items():
            need = 1.0 if dimension == "requests" else 1e-9  # usage-based budgets are charged afterwards
            if bucket.level < need and not force:
                wait = (need - bucket.level) / bucket.rate
                return self._decision(False, buckets, DIMENSIONS[dimension][2], wait)
        leases = None
        if limits.max_concurrent_requests is not None:
            leases = self._live_leases(key, now)
            if len(leases) >= limits.max_concurrent_requests and not force:
                return self._decision(False, buckets, "concurrent requests", 1.0, leases,
                                      detail=f"at most {limits.max_concurrent_requests} at once")
            lease = lease or uuid.uuid4().hex
            leases[lease] = now + LEASE_S
        else:
            lease = None
        if "requests" in buckets:
            buckets["requests"].level -= 1
        return self._decision(True, buckets, leases=leases, lease=lease)

    def reserve(self, key: str, limits: RateLimits, tokens: int, force: bool = False) -> Decision:
        """Hold `tokens` of the key's token budget for a request about to run (its prompt and the most it may
        generate), so one key cannot queue more work than its budget; settled by `charge(reserved=...)`.
        `force`: a reservation a gateway already granted (LocalAdmission): held, never refused."""
        buckets = self._buckets_for(key, limits, self._clock())
        bucket = buckets.get("tokens")
        if bucket is None or tokens <= 0:
            return self._decision(True, buckets)
        if tokens > bucket.capacity and not force:
            return self._decision(False, buckets, "tokens per minute", None,
                                  detail=f"this request alone may need {tokens:,} tokens, over the limit of "
                                         f"{int(bucket.capacity):,}")
        if bucket.level < tokens and not force:
            return self._decision(False, buckets, "tokens per minute", (tokens - bucket.level) / bucket.rate)
        bucket.level -= tokens
        return self._decision(True, buckets)

    def apply(self, ops: list[tuple]) -> list[Decision]:
        """Several calls in one, in order: each op is (method name, *its arguments)."""
        methods = {"admit": self.admit, "reserve": self.reserve, "charge": self._charge_op}
        return [methods[name](*args) for name, *args in ops]

    def _charge_op(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float = 0.0,
                   lease: str | None = None) -> Decision:
        """A charge, answered with what is left afterwards (for LocalAdmission's view)."""
        self.charge(key, limits, reserved_tokens, lease, **amounts)
        now = self._clock()
        leases = self._live_leases(key, now) if limits.max_concurrent_requests is not None else None
        return self._decision(True, self._buckets_for(key, limits, now), leases=leases)

    def charge(self, key: str, limits: RateLimits, reserved_tokens: float = 0.0, lease: str | None = None,
               **amounts: float) -> None:
        """Debit what a finished request used (tokens, audio_seconds, images) less what it had reserved, and
        free its place; budgets may go negative."""
        now = self._clock()
        if lease is not None:
            self._leases.get(key, {}).pop(lease, None)
        buckets = self._buckets_for(key, limits, now)
        for dimension, amount in debits(amounts, reserved_tokens).items():
            if dimension in buckets:
                buckets[dimension].level -= amount

    def in_flight(self, key: str) -> int:
        return len(self._live_leases(key, self._clock()))

    def _live_leases(self, key: str, now: float) -> dict[str, float]:
        leases = self._leases.setdefault(key, {})
        for lease in [lease for lease, expiry in leases.items() if expiry < now]:
            del leases[lease]
        return leases

    def _buckets_for(self, key: str, limits: RateLimits, now: float) -> dict[str, _Bucket]:
        out = {}
        for dimension, (field_name, _, _) in DIMENSIONS.items():
            limit = getattr(limits, field_name)
            if limit is None:
                continue
            bucket = self._buckets.get((key, dimension))
            if bucket is None or bucket.capacity != limit:  # new key, or its limit changed in the config
                bucket = self._buckets[(key, dimension)] = _Bucket(limit, limit, now)
            bucket.refill(now)
            out[dimension] = bucket
        return out

    def _decision(self, allowed: bool, buckets: dict[str, _Bucket], limit_name: str | None = None,
                  retry_after_s: float | None = 0.0, leases: dict[str, float] | None = None, **extra) -> Decision:
        return Decision(allowed, limit_name, retry_after_s, self._state(buckets),
                        room={d: b.level for d, b in buckets.items()},
                        in_flight=None if leases is None else len(leases), **extra)

    @staticmethod
    def _state(buckets: dict[str, _Bucket]) -> dict[str, tuple[int, int, float]]:
        return {DIMENSIONS[d][1]: header_state(b.capacity, b.level) for d, b in buckets.items() if DIMENSIONS[d][1]}


def debits(amounts: dict[str, float], reserved_tokens: float) -> dict[str, float]:
    """What a finished request takes from each budget: its usage, less the tokens it had reserved."""
    return {**amounts, "tokens": amounts.get("tokens", 0.0) - reserved_tokens}


def header_state(capacity: float, level: float) -> tuple[int, int, float]:
    """(limit, remaining, seconds until full) of one bucket, as the x-ratelimit-* headers give them."""
    return int(capacity), max(0, math.floor(level)), max(0.0, (capacity - level) / (capacity / 60.0))


def duration_header(seconds: float) -> str:
    """OpenAI's reset format: '6s', '12ms', '1m30s'."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    headers = []
    for suffix, (limit, remaining, reset) in decision.state.items():
        headers += [
            (f"x-ratelimit-limit-{suffix}".encode(), str(limit).encode()),
            (f"x-ratelimit-remaining-{suffix}".encode(), str(remaining).encode()),
            (f"x-ratelimit-reset-{suffix}".encode(), duration_header(reset).encode()),
        ]
    return headers


class Limiter(Protocol):
    """What the gateway's middleware asks of a limiter: LocalAdmission in front of the shared one, or (tests, the
    shared deployment's own view) RateLimiterServer itself."""

    async def admit(self, key: str, limits: RateLimits) -> Decision: ...

    async def reserve(self, key: str, limits: RateLimits, tokens: int) -> Decision: ...

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float = 0.0,
                     lease: str | None = None) -> None: ...


class SharedLimiter(Limiter, Protocol):
    """The shared limiter as LocalAdmission sees it: the deployment's handle (gateway/backends.py) or, in-process,
    RateLimiterServer."""

    async def apply(self, ops: list[tuple]) -> list[Decision]: ...


# One replica on purpose: it is the single place every gateway replica's rate limits are counted.
DEPLOYMENT_OPTIONS = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}, "max_ongoing_requests": 1000}


class RateLimiterServer:
    """The single-replica Serve deployment that owns the shared RateLimiter."""

    def __init__(self) -> None:
        self.limiter = RateLimiter()

    async def admit(self, key: str, limits: RateLimits) -> Decision:
        return self.limiter.admit(key, limits)

    async def reserve(self, key: str, limits: RateLimits, tokens: int) -> Decision:
        return self.limiter.reserve(key, limits, tokens)

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float = 0.0,
                     lease: str | None = None) -> None:
        self.limiter.charge(key, limits, reserved_tokens, lease, **amounts)

    async def apply(self, ops: list[tuple]) -> list[Decision]:
        return self.limiter.apply(ops)
