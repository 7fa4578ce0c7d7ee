"""Per-key rate limits as token buckets refilled continuously (a limit per minute), and their headers.

One RateLimiter instance holds the state for every gateway replica: under Serve it lives in its own
single-replica deployment (`rate-limiter`), so N replicas cannot each grant the full budget.
"""

from __future__ import annotations

import math
import time
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
    retry_after_s: float = 0.0
    # header suffix -> (limit, remaining, seconds until full)
    state: dict[str, tuple[int, int, float]] = field(default_factory=dict)


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._usage: dict[str, dict[str, float]] = {}

    def admit(self, key: str, limits: RateLimits) -> Decision:
        """Take one request from the key's budget if every dimension still has room."""
        now = self._clock()
        buckets = self._buckets_for(key, limits, now)
        for dimension, bucket in buckets.items():
            need = 1.0 if dimension == "requests" else 1e-9  # usage-based budgets are charged afterwards
            if bucket.level < need:
                wait = (need - bucket.level) / bucket.rate
                return Decision(False, DIMENSIONS[dimension][2], wait, self._state(buckets))
        if "requests" in buckets:
            buckets["requests"].level -= 1
        self._count(key, requests=1)
        return Decision(True, state=self._state(buckets))

    def charge(self, key: str, limits: RateLimits, **amounts: float) -> None:
        """Debit what a finished request used (tokens, audio_seconds, images); budgets may go negative."""
        now = self._clock()
        buckets = self._buckets_for(key, limits, now)
        for dimension, amount in amounts.items():
            if dimension in buckets:
                buckets[dimension].level -= amount
        self._count(key, **amounts)

    def usage(self) -> dict[str, dict[str, float]]:
        return {key: dict(totals) for key, totals in self._usage.items()}

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

    def _count(self, key: str, **amounts: float) -> None:
        totals = self._usage.setdefault(key, {})
        for name, amount in amounts.items():
            totals[name] = totals.get(name, 0) + amount

    @staticmethod
    def _state(buckets: dict[str, _Bucket]) -> dict[str, tuple[int, int, float]]:
        return {
            DIMENSIONS[d][1]: (int(b.capacity), max(0, math.floor(b.level)), (b.capacity - b.level) / b.rate)
            for d, b in buckets.items() if DIMENSIONS[d][1]
        }


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
    """What the gateway asks of the shared limiter: the deployment's handle (gateway/backends.py) or,
    in-process, RateLimiterServer itself."""

    async def admit(self, key: str, limits: RateLimits) -> Decision: ...

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float]) -> None: ...

    async def usage(self) -> dict[str, dict[str, float]]: ...


# One replica on purpose: it is the single place every gateway replica's rate limits are counted.
DEPLOYMENT_OPTIONS = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}, "max_ongoing_requests": 1000}


class RateLimiterServer:
    """The single-replica Serve deployment that owns the shared RateLimiter."""

    def __init__(self) -> None:
        self.limiter = RateLimiter()

    async def admit(self, key: str, limits: RateLimits) -> Decision:
        return self.limiter.admit(key, limits)

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float]) -> None:
        self.limiter.charge(key, limits, **amounts)

    async def usage(self) -> dict[str, dict[str, float]]:
        return self.limiter.usage()
