import random
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.finops.costing import (
    WINDOWS,
    CostTotals,
    accrued_exact,
    aggregate_costs,
    burn_rate,
    by_model,
    ceil_minute,
    cost_between,
    cost_of_interval,
    floor_minute,
    forecast,
    last_bucket,
    minute_costs,
)
from services.finops.metering import BillingInterval, all_intervals, fold_billing
from services.finops.money import AMOUNT_QUANTUM, ZERO, sum_amounts

from .lifecycles import T0, events_for, exact_cost, interleave, lifecycles, micros, prices


def iv(start: datetime, stop: datetime | None, price: str | Decimal = "3.6", instance: str = "i", model: str = "m"):
    return BillingInterval(instance_id=instance, org_id="o", model_name=model, provider_code="p",
                           instance_type_code="t", hourly_price_eur=Decimal(price), started_at=start, stopped_at=stop)


def at(us: int) -> datetime:
    return T0 + timedelta(microseconds=us)


# --- examples -----------------------------------------------------------------------------


def test_one_hour_costs_the_hourly_price():
    one_hour = iv(T0, T0 + timedelta(hours=1), "2.5")
    assert cost_of_interval(one_hour, T0 + timedelta(days=1)) == Decimal("2.5")
    assert cost_of_interval(one_hour, T0 + timedelta(minutes=30)) == Decimal("1.25")  # as seen half-way


def test_the_last_partial_minute_of_a_stopped_instance_is_counted():
    start = T0 + timedelta(seconds=15)
    stop = T0 + timedelta(minutes=2, seconds=30)
    rows = minute_costs(iv(start, stop, "3.6"), until=stop + timedelta(hours=1))
    # 3.6 €/h = 0.001 €/s: 45 s, 60 s, 30 s
    assert rows == [(T0, Decimal("0.045")), (T0 + timedelta(minutes=1), Decimal("0.060")),
                    (T0 + timedelta(minutes=2), Decimal("0.030"))]
    assert last_bucket(iv(start, stop)) == T0 + timedelta(minutes=2)
    assert last_bucket(iv(start, T0 + timedelta(minutes=2))) == T0 + timedelta(minutes=1)


def test_an_open_interval_gets_only_complete_minutes_from_the_closer():
    rows = minute_costs(iv(T0 + timedelta(seconds=30), None), until=floor_minute(T0 + timedelta(minutes=3, seconds=10)))
    assert [b for b, _ in rows] == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert rows[0][1] == Decimal("0.030")
    resumed = minute_costs(iv(T0 + timedelta(seconds=30), None), until=T0 + timedelta(minutes=3),
                           from_bucket=T0 + timedelta(minutes=2))
    assert resumed == rows[2:]


def test_zero_length_intervals_cost_nothing_and_write_no_rows():
    empty = iv(T0, T0)
    assert cost_of_interval(empty, T0 + timedelta(days=1)) == 0
    assert minute_costs(empty, until=T0 + timedelta(days=1)) == []
    assert last_bucket(empty) is None


def test_minute_rounding_never_drifts_from_the_interval_total():
    # 1 €/h: each minute is 0.016666…; rounded minute by minute it would drift
    day = iv(T0 + timedelta(seconds=7), T0 + timedelta(days=1, seconds=7), "1")
    rows = minute_costs(day, until=T0 + timedelta(days=2))
    assert len(rows) == 24 * 60 + 1
    assert sum_amounts(a for _, a in rows) == Decimal("24")


def test_burn_rate_and_forecasts():
    now = T0 + timedelta(hours=1)
    ivs = [iv(T0, None, "2.5"), iv(T0, None, "1.5"), iv(T0, T0 + timedelta(minutes=5), "10"),
           iv(now + timedelta(minutes=1), None, "7")]
    assert burn_rate(ivs, now) == Decimal("4.0")
    f = forecast(Decimal("4.0"))
    assert f.forecast_eur_per_minute == Decimal("0.066666667")
    assert f.forecast_eur_per_hour == Decimal("4")
    assert f.forecast_eur_per_day == Decimal("96")
    assert f.forecast_eur_per_month_30d == Decimal("2880")
    assert f.forecast_eur_per_year_365d == Decimal("35040")


def test_aggregation_by_model_with_windows():
    now = T0 + timedelta(days=2)
    ivs = [iv(T0, None, "1", instance="a", model="x"), iv(T0, T0 + timedelta(hours=1), "2", instance="b", model="x"),
           iv(now - timedelta(seconds=30), None, "3.6", instance="c", model="y")]
    out = aggregate_costs(ivs, now, by_model)
    assert out["x"].burn_rate_eur_per_hour == Decimal("1") and out["x"].running_instances == 1
    assert out["x"].cumulative_amount_eur == Decimal("48") + Decimal("2")
    assert out["x"].spend_eur == {"minute": Decimal("0.016666667"), "hour": Decimal("1"), "day": Decimal("24"),
                                  "month_30d": Decimal("50")}
    assert out["y"].spend_eur["minute"] == Decimal("0.030")
    assert out["y"].cumulative_amount_eur == Decimal("0.030")


# --- properties ---------------------------------------------------------------------------


@st.composite
def intervals(draw, open_: bool | None = None):
    start = at(draw(micros))
    is_open = draw(st.booleans()) if open_ is None else open_
    stop = None if is_open else start + timedelta(microseconds=draw(micros))
    return iv(start, stop, draw(prices))


@settings(max_examples=300, deadline=None)
@given(intervals(), micros, micros)
def test_cost_is_never_negative(interval, a, b):
    assert cost_between(interval, at(a), at(b)) >= 0
    assert cost_of_interval(interval, at(a)) >= 0
    assert all(amount >= 0 for _, amount in minute_costs(interval, until=at(b), from_bucket=at(a)))


@settings(max_examples=300, deadline=None)
@given(intervals(), micros)
def test_a_zero_length_window_costs_zero(interval, a):
    assert cost_between(interval, at(a), at(a)) == 0


@settings(max_examples=300, deadline=None)
@given(intervals(), st.lists(micros, min_size=2, max_size=6))
def test_cost_is_additive_over_any_split_of_a_window(interval, cuts):
    points = [at(c) for c in sorted(cuts)]
    pieces = sum_amounts(cost_between(interval, a, b) for a, b in zip(points, points[1:]))
    assert pieces == cost_between(interval, points[0], points[-1])


@settings(max_examples=300, deadline=None)
@given(prices, micros, micros)
def test_splitting_an_interval_in_two_costs_the_same_up_to_one_quantum(price, first, second):
    start = T0
    mid = start + timedelta(microseconds=first)
    end = mid + timedelta(microseconds=second)
    whole = cost_of_interval(iv(start, end, price), end)
    halves = cost_of_interval(iv(start, mid, price), end) + cost_of_interval(iv(mid, end, price), end)
    assert abs(whole - halves) <= AMOUNT_QUANTUM
    # unrounded, it is additive to the 50-digit working precision
    exact = sum_amounts([accrued_exact(Decimal(price), start, mid), accrued_exact(Decimal(price), mid, end)])
    assert abs(exact - accrued_exact(Decimal(price), start, end)) < Decimal("1e-30")


@settings(max_examples=200, deadline=None)
@given(intervals(open_=False))
def test_minute_buckets_sum_exactly_to_the_interval_cost(interval):
    rows = minute_costs(interval, until=interval.stopped_at + timedelta(days=1))
    assert sum_amounts(a for _, a in rows) == cost_of_interval(interval, interval.stopped_at)
    buckets = [b for b, _ in rows]
    assert buckets == sorted(set(buckets))
    if rows:
        assert buckets[0] == floor_minute(interval.started_at)
        assert buckets[-1] == last_bucket(interval)
        assert ceil_minute(interval.stopped_at) == buckets[-1] + timedelta(minutes=1)


@settings(max_examples=200, deadline=None)
@given(intervals(open_=True), micros, micros)
def test_closer_pieces_then_the_stop_rewrite_agree_with_the_whole(interval, run_for, extra):
    """Rows written minute by minute while open, then finished at stop, equal one-shot rows."""
    now = interval.started_at + timedelta(microseconds=run_for)
    stop = now + timedelta(microseconds=extra)
    while_open = dict(minute_costs(interval, until=floor_minute(now)))
    stopped = BillingInterval(**{**{f: getattr(interval, f) for f in interval.__slots__}, "stopped_at": stop})
    final = dict(minute_costs(stopped, until=stop, from_bucket=min(floor_minute(now), floor_minute(stop))))
    merged = {**while_open, **final}
    assert merged == dict(minute_costs(stopped, until=stop))


@settings(max_examples=150, deadline=None)
@given(st.lists(lifecycles(), min_size=1, max_size=6, unique_by=lambda lc: lc.instance_id), st.randoms(),
       st.integers(min_value=0, max_value=10 * 24 * 3600))
def test_f19_costs_equal_an_independent_calculation_and_replays_agree(lcs, rnd, now_s):
    """F19: Σ running intervals × price, despite duplicates; replaying gives identical amounts."""
    rng = random.Random(rnd.random())
    now = T0 + timedelta(seconds=now_s)
    events = interleave([events_for(lc, rng=rng, duplicates=True) for lc in lcs], rng)
    first = all_intervals(fold_billing(events))
    second = all_intervals(fold_billing(list(events)))
    total = sum_amounts(cost_of_interval(x, now) for x in first if x.started_at <= now)
    assert total == sum_amounts(cost_of_interval(x, now) for x in second if x.started_at <= now)
    truth = sum_amounts(exact_cost(lc, now) for lc in lcs)
    # each interval is rounded once, by at most half a quantum
    assert abs(total - truth) <= AMOUNT_QUANTUM / 2 * len(first)
    totals = CostTotals()
    for x in first:
        totals.add_interval(x, now)
    assert totals.cumulative_amount_eur == total
    assert totals.burn_rate_eur_per_hour == burn_rate(first, now)


def test_windows_are_the_original_four():
    assert list(WINDOWS) == ["minute", "hour", "day", "month_30d"]
    assert ZERO == 0
