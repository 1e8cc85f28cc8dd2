"""Token usage: totals per org / API key / model from usage records, and how a time window
splits into stored buckets. Pure.

A request counts once (records are deduplicated by their id before they reach these
functions), whatever its status; ``error_requests`` counts those with status >= 400.
Requests made without an API key (a session in the UI) are grouped under ``NO_API_KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Literal

from contracts.usage import UsageRecord

from .costing import DAY, MINUTE, ceil_day, ceil_minute, floor_day, floor_minute
from .metering import utc

NO_API_KEY = ""  # stored value for "no API key"; the API shows it as null

Grain = Literal["minute", "day"]


@dataclass(frozen=True, slots=True)
class TokenTotals:
    requests: int = 0
    error_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "TokenTotals") -> "TokenTotals":
        return TokenTotals(
            self.requests + other.requests,
            self.error_requests + other.error_requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    @classmethod
    def of(cls, record: UsageRecord) -> "TokenTotals":
        return cls(
            requests=1,
            error_requests=1 if record.status_code >= 400 else 0,
            prompt_tokens=max(0, record.prompt_tokens),
            completion_tokens=max(0, record.completion_tokens),
        )


UsageKey = tuple[datetime, str, str, str]  # (bucket, org_id, api_key_id or NO_API_KEY, model)


def bucket_of(at: datetime, grain: Grain) -> datetime:
    at = utc(at)
    return floor_minute(at) if grain == "minute" else floor_day(at)


def bucket_usage(records: Iterable[UsageRecord], grain: Grain) -> dict[UsageKey, TokenTotals]:
    """Totals per (bucket, org, api key, model)."""
    out: dict[UsageKey, TokenTotals] = {}
    for rec in records:
        key = (bucket_of(rec.occurred_at, grain), rec.org_id, rec.api_key_id or NO_API_KEY, rec.model)
        out[key] = out.get(key, TokenTotals()) + TokenTotals.of(rec)
    return out


def total_usage(records: Iterable[UsageRecord], *, by: Literal["org", "api_key", "model"]) -> dict[str, TokenTotals]:
    """Totals per org, API key or model (an independent, in-memory calculation)."""
    attr = {"org": "org_id", "api_key": "api_key_id", "model": "model"}[by]
    out: dict[str, TokenTotals] = {}
    for rec in records:
        key = getattr(rec, attr) or NO_API_KEY
        out[key] = out.get(key, TokenTotals()) + TokenTotals.of(rec)
    return out


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """Half-open ranges that partition a window ``[start, end)``: whole days read from the daily
    totals, whole minutes from the minute totals, and the ragged edges from raw records."""

    raw: tuple[tuple[datetime, datetime], ...]
    minutes: tuple[tuple[datetime, datetime], ...]
    days: tuple[tuple[datetime, datetime], ...]


def window_plan(start: datetime, end: datetime) -> WindowPlan:
    if end <= start:
        return WindowPlan((), (), ())
    m0, m1 = ceil_minute(start), floor_minute(end)
    if m0 >= m1:
        return WindowPlan(((start, end),), (), ())
    raw = tuple(r for r in ((start, m0), (m1, end)) if r[0] < r[1])
    d0, d1 = ceil_day(m0), floor_day(m1)
    if d0 < d1:
        minutes = tuple(r for r in ((m0, d0), (d1, m1)) if r[0] < r[1])
        return WindowPlan(raw, minutes, ((d0, d1),))
    return WindowPlan(raw, ((m0, m1),), ())


def plan_covers(plan: WindowPlan) -> timedelta:
    """Total length the plan covers (for tests: equals the window's length)."""
    return sum(((b - a) for a, b in (*plan.raw, *plan.minutes, *plan.days)), timedelta(0))


__all__ = [
    "DAY",
    "MINUTE",
    "NO_API_KEY",
    "TokenTotals",
    "WindowPlan",
    "bucket_of",
    "bucket_usage",
    "plan_covers",
    "total_usage",
    "window_plan",
]
