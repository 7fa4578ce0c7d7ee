"""Per-key spend budgets (tokens and audio seconds per UTC day and month), checked against the usage ledger
before a request runs. Requests still running are not counted (their usage is not known yet), so a key can
pass its budget by what its requests in flight use. A key's spend is read from the store at most once a second
and this replica's unwritten rows are added, so a burst can also overshoot by about a second of traffic. While
the store is down, requests pass (fail open) rather than locking every key out."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from serve_app.errors import RateLimited
from serve_app.security.auth import Caller
from serve_app.state.ledger import Spend, UsageLedger

log = logging.getLogger(__name__)
_REFRESH_S = 1.0


@dataclass(frozen=True)
class Period:
    name: str  # daily, monthly
    start: datetime
    end: datetime


def periods(now: datetime) -> dict[str, Period]:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(
        month=month.month + 1)
    return {"day": Period("daily", day, datetime.fromtimestamp(day.timestamp() + 86400, UTC)),
            "month": Period("monthly", month, next_month)}


class BudgetGuard:
    def __init__(self, ledger: UsageLedger) -> None:
        self.ledger = ledger
        # (key, day|month) -> (period start, read at, spend): one entry per key and unit, whatever the date
        self._seen: dict[tuple[str, str], tuple[int, float, Spend]] = {}

    async def _spend(self, key: str, unit: str, since: datetime) -> Spend:
        since_ms = int(since.timestamp() * 1000)
        cached = self._seen.get((key, unit))
        if cached is not None and cached[0] == since_ms and time.monotonic() - cached[1] < _REFRESH_S:
            return cached[2]
        spend = await self.ledger.spend(key, since_ms)
        self._seen[(key, unit)] = (since_ms, time.monotonic(), spend)
        return spend

    async def check(self, caller: Caller) -> None:
        budgets = caller.budgets
        if not budgets.any():
            return
        now = datetime.now(UTC)
        for unit, period in periods(now).items():
            token_budget = getattr(budgets, f"tokens_per_{unit}")
            audio_budget = getattr(budgets, f"audio_seconds_per_{unit}")
            if token_budget is None and audio_budget is None:
                continue
            try:
                spend = await self._spend(caller.name, unit, period.start)
            except Exception as exc:  # noqa: BLE001 - fail open, see the module's docstring
                log.warning("budget of key %s not checked (state store unavailable): %s", caller.name, exc)
                return
            if token_budget is not None and spend.tokens >= token_budget:
                raise _spent(caller.name, period, now, f"{token_budget:,} tokens", f"{spend.tokens:,} used")
            if audio_budget is not None and spend.audio_seconds >= audio_budget:
                raise _spent(caller.name, period, now, f"{audio_budget:,} audio seconds",
                             f"{spend.audio_seconds:,.0f} used")


def _spent(key: str, period: Period, now: datetime, budget: str, used: str) -> RateLimited:
    retry = max(1, math.ceil((period.end - now).total_seconds()))
    resets = period.end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return RateLimited(f"The {period.name} budget of {budget} for key `{key}` is spent ({used}); it resets at "
                       f"{resets}.", code="budget_exceeded", headers={"Retry-After": str(retry)})
