"""Rate-limit admission in each gateway replica, off the first token's path while a key is far from its limits.

The shared limiter (one replica, security/rate_limit.py) is the one count of every key's budgets. Asking it
before each request put two Ray round trips (admit, then reserve tokens) on the way to the first token, and a
burst of N requests queued N of each (bench/RESULTS.md, "Local admission").

So each gateway replica keeps a view of each key: what the shared limiter last said was left in every limited
dimension and how many of the key's requests were running. While each has more than its margin left (a tenth
of the limit, at least 8), the replica admits and reserves on its own and reports afterwards: forced (counted,
never refused), after up to REPORT_DELAY_S so that a burst's reports share one `apply` call. Near a limit, with
no view younger than VIEW_TTL_S, or past `margin` unreported requests, it asks first and waits for the answer,
exact as before: asks go at once, behind every report still queued, so the answer counts them.

What that costs in exactness: a replica reports at most `margin` requests (or tokens) late and only admits with
more than that left, so one replica never passes a limit; R replicas admitting a key at the same moment can pass
it by at most (R - 1) x margin. Charges (usage, released places) count in the view at once and are sent at once
(with whatever is queued), as before: the client's next request may reach another replica right after.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.config import RateLimits
from serve_app.errors import APIError, rate_limiter_unavailable
from serve_app.security.rate_limit import DIMENSIONS, Decision, SharedLimiter, debits, header_state

log = logging.getLogger(__name__)

VIEW_TTL_S = 2.0  # an older view may miss what other replicas took: ask the shared limiter instead
MIN_MARGIN = 8
REPORT_DELAY_S = 0.01  # reports wait this long for others to share their call; an ask never waits
# Reports and charges of a failed call are sent again this long after (with whatever comes meanwhile): dropped,
# a finished request's place would stay taken at the shared limiter for its whole lease (an hour).
RETRY_S = 1.0
# While the shared limiter is down every refused ask queues the release of a place it may have been granted, so
# the queue is bounded (the oldest releases go first: a place never released lapses with its lease) and sent in
# calls of bounded size, so that one call after an outage does not outlast the limiter's timeout and fail again.
MAX_QUEUED_OPS = 10_000
MAX_OPS_PER_CALL = 1000
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
    unreported: dict[str, float] = field(default_factory=dict)  # dimension -> taken, not yet reported
    unreported_admits: int = 0  # requests admitted here and not yet reported (the key's places)

    def fresh(self, limits: RateLimits, now: float) -> bool:
        return self.limits == limits and now - self.at < VIEW_TTL_S

    def left(self, dimension: str) -> float:
        return self.room.get(dimension, 0.0) - self.unreported.get(dimension, 0.0)

    def count(self, amounts: dict[str, float], admits: int, sign: int = 1) -> None:
        for dimension, amount in amounts.items():
            self.unreported[dimension] = self.unreported.get(dimension, 0.0) + sign * amount
        self.unreported_admits += sign * admits

    def learn(self, decision: Decision, now: float) -> None:
        self.room, self.in_flight, self.at = decision.room, decision.in_flight, now

    def can_admit(self) -> bool:
        for dimension, (field_name, _, _) in DIMENSIONS.items():
            limit = getattr(self.limits, field_name)
            need = 1 if dimension == "requests" else 0
            if limit is not None and self.left(dimension) - need < margin(limit):
                return False
        cap = self.limits.max_concurrent_requests
        if cap is not None:
            running = (self.in_flight if self.in_flight is not None else cap) + self.unreported_admits
            if cap - running - 1 < margin(cap):
                return False
        counted = [limit for limit in (self.limits.requests_per_minute, cap) if limit is not None]
        return not counted or self.unreported_admits < min(margin(limit) for limit in counted)

    def can_reserve(self, tokens: int) -> bool:
        limit = self.limits.tokens_per_minute
        return (limit is not None and self.left("tokens") - tokens >= margin(limit)
                and self.unreported.get("tokens", 0.0) + tokens < margin(limit))

    def decision(self, lease: str | None) -> Decision:
        """What the shared limiter would have answered, for the x-ratelimit-* headers."""
        state = {}
        for dimension, (field_name, suffix, _) in DIMENSIONS.items():
            limit = getattr(self.limits, field_name)
            if limit is not None and suffix is not None:
                state[suffix] = header_state(limit, self.left(dimension))
        return Decision(True, state=state, lease=lease)


def _taken(op: tuple) -> tuple[dict[str, float], int]:
    """What an op takes from each dimension once the shared limiter has it, and the places it holds."""
    name = op[0]
    if name == "admit":
        return {"requests": 1.0}, 1
    if name == "reserve":
        return {"tokens": float(op[3])}, 0
    return debits(op[3], op[4]), 0  # a charge: its usage, less what it had reserved


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
            self._report(view, ("admit", key, limits, lease, True))
            return view.decision(lease)
        return await self._ask(("admit", key, limits, lease, False))

    async def reserve(self, key: str, limits: RateLimits, tokens: int) -> Decision:
        if limits.tokens_per_minute is None or tokens <= 0:
            return Decision(True)  # nothing to hold: no call
        view = self._view(key, limits)
        if view is not None and view.can_reserve(tokens):
            self._report(view, ("reserve", key, limits, tokens, True))
            return view.decision(None)
        return await self._ask(("reserve", key, limits, tokens, False))

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float = 0.0,
                     lease: str | None = None) -> None:
        """Sent at once, not batched: the client may send its next request, to another replica, the moment
        this one's answer ends."""
        if amounts or reserved_tokens or lease:
            view = self._views.get(key)
            self._report(view if view is not None and view.limits == limits else None,
                         ("charge", key, limits, amounts, reserved_tokens, lease), at_once=True)

    def _view(self, key: str, limits: RateLimits) -> _View | None:
        view = self._views.get(key)
        return view if view is not None and view.fresh(limits, self.clock()) else None

    async def _ask(self, op: tuple) -> Decision:
        waiter = asyncio.get_running_loop().create_future()
        self._queue.append((op, None, waiter))
        self._start(at_once=True)
        return await waiter

    def _report(self, view: _View | None, op: tuple, at_once: bool = False) -> None:
        """Counted in the view now, sent later (up to REPORT_DELAY_S later, so a burst's reports share a call)."""
        if view is not None:
            view.count(*_taken(op))
        self._queue.append((op, view, None))
        self._start(at_once)

    def _start(self, at_once: bool) -> None:
        """at_once: an ask, a charge, or the report timer firing; otherwise a report, which waits for the timer."""
        if at_once and self._timer is not None:
            self._timer.cancel()  # a no-op once it has fired
            self._timer = None
        if self._sender is not None and not self._sender.done():
            return  # the batch on its way is answered first, then the queue goes
        loop = asyncio.get_running_loop()
        if at_once:
            self._sender = loop.create_task(self._send_batches())
        elif self._timer is None:
            self._timer = loop.call_later(REPORT_DELAY_S, self._start, True)

    async def _send_batches(self) -> None:
        await asyncio.sleep(0)  # asks of the same loop turn go in the same call
        while self._queue:
            batch, self._queue = self._queue[:MAX_OPS_PER_CALL], self._queue[MAX_OPS_PER_CALL:]
            try:
                answers = await self.shared.apply([op for op, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - a waiter must never hang: exact askers get a 503
                # The calls still queued behind this one would fail alike: their askers are answered now too
                batch, self._queue = batch + self._queue, []
                log.warning("%d rate-limit calls failed: %r", len(batch), exc)
                error = exc if isinstance(exc, APIError) else rate_limiter_unavailable()
                for _, _, waiter in batch:
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(error)
                # Reports and charges go again, first in line, still counted in their views until they land;
                # so does the release of any place a refused-here ask may have been granted there (a call that
                # timed out here may have landed). A debit counted twice refills within the minute; a lease
                # released twice, or never granted, is a no-op.
                again = [item for item in batch if item[2] is None]
                again += [(("charge", op[1], op[2], {}, 0.0, op[3]), None, None) for op, _, waiter in batch
                          if waiter is not None and op[0] == "admit" and op[3]]
                self._queue = _bounded(again)
                if self._queue:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._start, True)
                return
            for (op, counted_in, waiter), answer in zip(batch, answers, strict=True):
                if counted_in is not None:  # reported now: the shared limiter's answer includes it
                    counted_in.count(*_taken(op), sign=-1)
                if isinstance(answer, Decision):
                    self._learn(op[1], op[2], answer)
                if waiter is None:
                    continue
                if waiter.done():  # its request was cancelled meanwhile: give back what it was granted
                    self._give_back(op, answer)
                elif isinstance(answer, Exception):
                    waiter.set_exception(answer)
                else:
                    waiter.set_result(answer)

    def _learn(self, key: str, limits: RateLimits, answer: Decision) -> None:
        view = self._views.get(key)
        if view is not None and view.limits == limits:
            view.learn(answer, self.clock())
        else:
            self._views[key] = _View(limits, answer.room, answer.in_flight, self.clock())

    def _give_back(self, op: tuple, answer: Decision | Exception) -> None:
        if not isinstance(answer, Decision) or not answer.allowed:
            return
        name, key, limits = op[:3]
        if name == "admit" and answer.lease:
            self._report(None, ("charge", key, limits, {}, 0.0, answer.lease), at_once=True)
        elif name == "reserve":
            self._report(None, ("charge", key, limits, {}, float(op[3]), None), at_once=True)


def _bounded(queue: list) -> list:
    """The queue within MAX_QUEUED_OPS, dropping the oldest releases of places first (their leases lapse on their
    own); reports of usage and asks are kept."""
    excess = len(queue) - MAX_QUEUED_OPS
    if excess <= 0:
        return queue
    releases = [i for i, (op, _, waiter) in enumerate(queue) if waiter is None and _releases_only(op)]
    dropped = set(releases[:excess])
    log.warning("rate-limit retry queue full: %d releases of places dropped (their leases lapse)", len(dropped))
    return [item for i, item in enumerate(queue) if i not in dropped]


def _releases_only(op: tuple) -> bool:
    """A charge that only frees a place: nothing used, nothing reserved."""
    return op[0] == "charge" and not op[3] and not op[4] and op[5] is not None

