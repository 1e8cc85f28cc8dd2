"""Costing: what billing intervals cost, per minute and in aggregate. Pure.

Every amount comes from one function, ``accrued(interval, t)``: the cost from the interval's
start to ``t``, computed exactly (price × microseconds / 3.6e9 in a 50-digit context) and then
quantized once (``money.quantize_amount``). A piece ``[a, b)`` of an interval costs
``accrued(b) - accrued(a)``, so:

- pieces telescope: per-minute buckets, or any split of a window, sum exactly to the whole;
- a piece is never negative (``accrued`` is monotonic in ``t``);
- a zero-length piece costs zero;
- the first and last minute of an interval are prorated to the microsecond, including the
  last partial minute of a stopped instance (the original forgot that one).

Burn rate = Σ hourly prices of the intervals billing at ``now``. Forecasts extrapolate it like
the original: per minute (/60), hour, day (×24), 30-day month (×720) and 365-day year (×8760).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Callable, Hashable, Iterable, Mapping

from .metering import BillingInterval, clip, open_at
from .money import ZERO, context, quantize_amount

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
_MICROS = timedelta(microseconds=1)
_MICROS_PER_HOUR = Decimal(3_600_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Spend windows reported by the dashboard, as in the original (minute/hour/day/30 d).
WINDOWS: dict[str, timedelta] = {
    "minute": MINUTE,
    "hour": timedelta(hours=1),
    "day": DAY,
    "month_30d": timedelta(days=30),
}


def floor_minute(dt: datetime) -> datetime:
    return dt - ((dt - _EPOCH) % MINUTE)


def ceil_minute(dt: datetime) -> datetime:
    floor = floor_minute(dt)
    return floor if floor == dt else floor + MINUTE


def floor_day(dt: datetime) -> datetime:
    return dt - ((dt - _EPOCH) % DAY)


def ceil_day(dt: datetime) -> datetime:
    floor = floor_day(dt)
    return floor if floor == dt else floor + DAY


def accrued_exact(hourly_price_eur: Decimal, started_at: datetime, t: datetime) -> Decimal:
    """Exact (unquantized) cost of ``[started_at, t)``; zero when ``t <= started_at``."""
    micros = (t - started_at) // _MICROS
    if micros <= 0:
        return ZERO
    with localcontext(context()):
        return hourly_price_eur * Decimal(micros) / _MICROS_PER_HOUR


def accrued(interval: BillingInterval, t: datetime) -> Decimal:
    """Quantized cost from the interval's start to ``t`` (clamped to the interval)."""
    if interval.stopped_at is not None and t > interval.stopped_at:
        t = interval.stopped_at
    return quantize_amount(accrued_exact(interval.hourly_price_eur, interval.started_at, t))


def cost_between(interval: BillingInterval, a: datetime, b: datetime) -> Decimal:
    """Cost of the part of ``interval`` inside ``[a, b)``. An open interval is taken to run past
    ``b``: clip it to ``now`` first when ``b`` may be later than now."""
    lo = max(a, interval.started_at)
    hi = b if interval.stopped_at is None else min(b, interval.stopped_at)
    if hi <= lo:
        return ZERO
    return accrued(interval, hi) - accrued(interval, lo)


def cost_of_interval(interval: BillingInterval, now: datetime) -> Decimal:
    """Cost to date: the whole interval if it stopped by ``now``, else its start to ``now``."""
    return accrued(interval, interval.end(now))


def minute_costs(
    interval: BillingInterval, *, until: datetime, from_bucket: datetime | None = None
) -> list[tuple[datetime, Decimal]]:
    """``(bucket_minute, amount)`` for each minute the interval overlaps, up to ``until``
    (exclusive; the interval's stop when earlier), from ``from_bucket`` on.

    The minute closer calls it with ``until`` = the start of the current minute (only complete
    minutes); a stopped interval is written up to its stop, its last partial minute included.
    """
    end = until if interval.stopped_at is None else min(until, interval.stopped_at)
    if end <= interval.started_at:
        return []
    bucket = floor_minute(interval.started_at)
    if from_bucket is not None and from_bucket > bucket:
        bucket = floor_minute(from_bucket)
    rows: list[tuple[datetime, Decimal]] = []
    while bucket < end:
        nxt = bucket + MINUTE
        rows.append((bucket, cost_between(interval, bucket, min(nxt, end))))
        bucket = nxt
    return rows


def last_bucket(interval: BillingInterval) -> datetime | None:
    """The last minute a stopped interval overlaps (None for an empty or open interval)."""
    if interval.stopped_at is None or interval.stopped_at <= interval.started_at:
        return None
    return floor_minute(interval.stopped_at - _MICROS)


# --- burn rate and forecasts --------------------------------------------------------------


def burn_rate(intervals: Iterable[BillingInterval], now: datetime) -> Decimal:
    """EUR per hour of everything billing at ``now``."""
    with localcontext(context()):
        return sum((iv.hourly_price_eur for iv in open_at(intervals, now)), ZERO)


@dataclass(frozen=True, slots=True)
class Forecast:
    burn_rate_eur_per_hour: Decimal
    forecast_eur_per_minute: Decimal
    forecast_eur_per_hour: Decimal
    forecast_eur_per_day: Decimal
    forecast_eur_per_month_30d: Decimal
    forecast_eur_per_year_365d: Decimal


def forecast(burn_rate_eur_per_hour: Decimal) -> Forecast:
    """What the current burn rate costs if nothing changes (quantized like every amount)."""
    with localcontext(context()):
        rate = burn_rate_eur_per_hour
        return Forecast(
            burn_rate_eur_per_hour=rate,
            forecast_eur_per_minute=quantize_amount(rate / 60),
            forecast_eur_per_hour=quantize_amount(rate),
            forecast_eur_per_day=quantize_amount(rate * 24),
            forecast_eur_per_month_30d=quantize_amount(rate * 720),
            forecast_eur_per_year_365d=quantize_amount(rate * 8760),
        )


# --- aggregation --------------------------------------------------------------------------


@dataclass(slots=True)
class CostTotals:
    """Burn rate, cost to date and spend per window for one group (instance, model, org)."""

    burn_rate_eur_per_hour: Decimal = ZERO
    cumulative_amount_eur: Decimal = ZERO
    spend_eur: dict[str, Decimal] = field(default_factory=lambda: {name: ZERO for name in WINDOWS})
    running_instances: int = 0

    def add_interval(self, interval: BillingInterval, now: datetime,
                     windows: Mapping[str, timedelta] = WINDOWS) -> None:
        if interval.started_at > now:
            return  # not billed yet as of ``now``
        seen = clip(interval, now)
        running = interval.started_at <= now and (interval.stopped_at is None or interval.stopped_at > now)
        if running:
            self.burn_rate_eur_per_hour += interval.hourly_price_eur
            self.running_instances += 1
        self.cumulative_amount_eur += cost_of_interval(seen, now)
        for name, width in windows.items():
            self.spend_eur[name] = self.spend_eur.get(name, ZERO) + cost_between(seen, now - width, now)

    def add_settled(self, amount_eur: Decimal) -> None:
        """A closed interval that ended before every window: it only adds to the cost to date."""
        self.cumulative_amount_eur += amount_eur


def aggregate_costs(
    intervals: Iterable[BillingInterval],
    now: datetime,
    key: Callable[[BillingInterval], Hashable],
    *,
    windows: Mapping[str, timedelta] = WINDOWS,
) -> dict[Hashable, CostTotals]:
    """Totals per ``key(interval)``, e.g. ``lambda iv: iv.model_name``."""
    out: dict[Hashable, CostTotals] = {}
    for iv in intervals:
        totals = out.get(key(iv))
        if totals is None:
            totals = out[key(iv)] = CostTotals(spend_eur={name: ZERO for name in windows})
        totals.add_interval(iv, now, windows)
    return out


def by_instance(iv: BillingInterval) -> str:
    return iv.instance_id


def by_model(iv: BillingInterval) -> str:
    return iv.model_name


def by_org(iv: BillingInterval) -> str:
    return iv.org_id
