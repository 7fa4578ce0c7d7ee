"""Rate-limit admission in each gateway replica, off the first token's path while a key is far from its limits.

The shared limiter (one replica, security/rate_limit.py) is the one count of every key's budgets. Asking it
before each request put two Ray round trips (admit, then reserve tokens) on the way to the first token, and a
burst of N requests queued N of each (bench/RESULTS.md, "Local admission").

So each gateway replica keeps a view of each key: what the shared limiter last said was left in every limited
dimension and how many of the key's requests were running. While each has more than its margin left (a tenth
of the limit, at least 8), the replica admits and reserves on its own and reports afterwards: forced (counted,
never refused), with everything else reported at that moment in one `apply` call. Near a limit, with no view
younger than VIEW_TTL_S, or past `margin` unreported requests, it asks first, exactly as before.

What that costs in exactness: a replica reports at most `margin` requests (or tokens) late and only admits with
more than that left, so one replica never passes a limit; R replicas admitting a key at the same moment can pass
it by at most (R - 1) x margin. Charges (usage, released places) go the same batched way, after the response.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.config import RateLimits
from serve_app.errors import APIError, ServiceUnavailable
from serve_app.security.rate_limit import DIMENSIONS, Decision, SharedLimiter

log = logging.getLogger(__name__)

VIEW_TTL_S = 2.0  # an older view may miss what other replicas took: ask the shared limiter instead
MIN_MARGIN = 8
REPORT_DELAY_S = 0.01  # reports wait this long for others to share their call; an ask never waits
UNLIMITED = RateLimits()


def margin(limit: int) -> int:
    """How much of a limit stays for the shared limiter to decide exactly."""
    return max(MIN_MARGIN, limit // 10)


@dataclass
class _View:
    """One key as the shared limiter last described it, and what this replica took since without reporting."""

    limits: RateLimits
    room: dict[str, float]  # dimension -> what was left
    in_flight: int | None
    at: float
    unreported_requests: int = 0
    unreported_tokens: int = 0

    def fresh(self, limits: RateLimits, now: float) -> bool:
        return self.limits == limits and now - self.at < VIEW_TTL_S

    def can_admit(self) -> bool:
        for dimension, (field_name, _, _) in DIMENSIONS.items():
            limit = getattr(self.limits, field_name)
            if limit is None:
                continue
            left = self.room.get(dimension, 0.0)
            if dimension == "requests":
                left -= self.unreported_requests + 1
            elif dimension == "tokens":
                left -= self.unreported_tokens
            if left < margin(limit):
                return False
        cap = self.limits.max_concurrent_requests
        if cap is not None:
            running = (self.in_flight if self.in_flight is not None else cap) + self.unreported_requests
            if cap - running - 1 < margin(cap):
                return False
        counted = [limit for limit in (self.limits.requests_per_minute, cap) if limit is not None]
        return not counted or self.unreported_requests < min(margin(limit) for limit in counted)

    def can_reserve(self, tokens: int) -> bool:
        limit = self.limits.tokens_per_minute
        left = self.room.get("tokens", 0.0) - self.unreported_tokens - tokens
        return limit is not None and left >= margin(limit) and self.unreported_tokens + tokens < margin(limit)

    def decision(self, lease: str | None) -> Decision:
        """What the shared limiter would have answered, for the x-ratelimit-* headers."""
        state = {}
        for dimension, (field_name, suffix, _) in DIMENSIONS.items():
            limit = getattr(self.limits, field_name)
            if limit is None or suffix is None:
                continue
            taken = self.unreported_requests if dimension == "requests" else self.unreported_tokens
            level = self.room.get(dimension, 0.0) - taken
            state[suffix] = (limit, max(0, math.floor(level)), max(0.0, (limit - level) * 60.0 / limit))
        return Decision(True, state=state, lease=lease)


@dataclass
class LocalAdmission:
    """The gateway's limiter (the Limiter the rate-limit middleware asks): local while a key has room, else the
    shared one's answer. Every call to the shared limiter goes through one queue, sent a batch at a time in order,
    so an exact answer always counts what this replica admitted on its own before it."""

    shared: SharedLimiter
    clock: Callable[[], float] = time.monotonic
    _views: dict[str, _View] = field(default_factory=dict)
    _queue: list[tuple[tuple, asyncio.Future | None]] = field(default_factory=list)  # (op, who waits for it)
    _sender: asyncio.Task | None = None
    _timer: asyncio.TimerHandle | None = None

    async def admit(self, key: str, limits: RateLimits) -> Decision:
        if limits == UNLIMITED:
            return Decision(True)  # nothing to count: no call
        lease = uuid.uuid4().hex if limits.max_concurrent_requests is not None else None
        view = self._view(key, limits)
        if view is not None and view.can_admit():
            view.unreported_requests += 1
            self._send(("admit", key, limits, lease, True))
            return view.decision(lease)
        return await self._ask(("admit", key, limits, lease, False))

    async def reserve(self, key: str, limits: RateLimits, tokens: int) -> Decision:
        if limits.tokens_per_minute is None or tokens <= 0:
            return Decision(True)  # nothing to hold: no call
        view = self._view(key, limits)
        if view is not None and view.can_reserve(tokens):
            view.unreported_tokens += tokens
            self._send(("reserve", key, limits, tokens, True))
            return view.decision(None)
        return await self._ask(("reserve", key, limits, tokens, False))

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float = 0.0,
                     lease: str | None = None) -> None:
        if amounts or reserved_tokens or lease:
            self._send(("charge", key, limits, amounts, reserved_tokens, lease))

    def _view(self, key: str, limits: RateLimits) -> _View | None:
        view = self._views.get(key)
        return view if view is not None and view.fresh(limits, self.clock()) else None

    async def _ask(self, op: tuple) -> Decision:
        waiter = asyncio.get_running_loop().create_future()
        self._send(op, waiter)
        return await waiter

    def _send(self, op: tuple, waiter: asyncio.Future | None = None) -> None:
        """An ask goes at once (with every report before it); reports alone wait up to REPORT_DELAY_S, so a
        burst's reports share a call."""
        self._queue.append((op, waiter))
        if self._sender is not None and not self._sender.done():
            return  # the batch on its way is answered first, then the queue goes
        loop = asyncio.get_running_loop()
        if waiter is not None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._sender = loop.create_task(self._send_batches())
        elif self._timer is None:
            self._timer = loop.call_later(REPORT_DELAY_S, self._start_sender)

    def _start_sender(self) -> None:
        self._timer = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_batches())

    async def _send_batches(self) -> None:
        await asyncio.sleep(0)  # asks of the same loop turn go in the same call
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                answers = await self.shared.apply([op for op, _ in batch])
            except Exception as exc:  # noqa: BLE001 - a waiter must never hang: exact askers get a 503
                log.warning("%d rate-limit calls failed: %r", len(batch), exc)
                error = exc if isinstance(exc, APIError) else ServiceUnavailable(
                    "The rate limiter is not answering; please retry shortly.", code="rate_limiter_unavailable",
                    headers={"Retry-After": "2"})
                answers = [error] * len(batch)
            for (op, waiter), answer in zip(batch, answers, strict=True):
                self._settle(op, answer)
                if waiter is None:
                    continue
                if waiter.done():  # its request was cancelled meanwhile: give back what it was granted
                    self._give_back(op, answer)
                elif isinstance(answer, Exception):
                    waiter.set_exception(answer)
                else:
                    waiter.set_result(answer)

    def _settle(self, op: tuple, answer: Decision | Exception | None) -> None:
        """The view learns the shared limiter's answer, and no longer counts a report it has had."""
        name, key, limits = op[:3]
        view = self._views.get(key)
        if view is not None and view.limits == limits and name in ("admit", "reserve") and op[4]:
            if name == "admit":
                view.unreported_requests -= 1
            else:
                view.unreported_tokens -= op[3]
        if isinstance(answer, Decision):
            kept = (view.unreported_requests, view.unreported_tokens) if view and view.limits == limits else (0, 0)
            self._views[key] = _View(limits, answer.room, answer.in_flight, self.clock(), *kept)

    def _give_back(self, op: tuple, answer: Decision | Exception | None) -> None:
        if not isinstance(answer, Decision) or not answer.allowed:
            return
        name, key, limits = op[:3]
        if name == "admit" and answer.lease:
            self._send(("charge", key, limits, {}, 0.0, answer.lease))
        elif name == "reserve":
            self._send(("charge", key, limits, {}, float(op[3]), None))
