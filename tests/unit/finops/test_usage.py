import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.usage import UsageRecord
from services.finops.costing import ceil_day, ceil_minute, floor_day, floor_minute
from services.finops.usage import NO_API_KEY, TokenTotals, bucket_usage, plan_covers, total_usage, window_plan

from .lifecycles import T0

instants = st.integers(min_value=0, max_value=40 * 24 * 3600 * 1_000_000).map(lambda us: T0 + timedelta(microseconds=us))


def rec(at: datetime, *, key: str | None = "k1", model: str = "m", prompt: int = 10, completion: int = 5,
        status: int = 200, org: str = "o") -> UsageRecord:
    return UsageRecord(id=str(uuid.uuid4()), org_id=org, occurred_at=at, endpoint="/v1/chat/completions", model=model,
                       api_key_id=key, prompt_tokens=prompt, completion_tokens=completion, status_code=status)


def test_totals_per_key_and_model():
    records = [rec(T0), rec(T0, key=None), rec(T0, model="n", status=500, prompt=3, completion=0)]
    by_key = total_usage(records, by="api_key")
    assert by_key["k1"] == TokenTotals(requests=2, error_requests=1, prompt_tokens=13, completion_tokens=5)
    assert by_key[NO_API_KEY].total_tokens == 15
    assert total_usage(records, by="model")["n"].requests == 1
    assert total_usage(records, by="org")["o"].requests == 3


def test_negative_token_counts_count_as_zero():
    assert TokenTotals.of(rec(T0, prompt=-5, completion=-1)).total_tokens == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(instants, max_size=30))
def test_buckets_add_up_to_the_totals(times):
    records = [rec(t, key=("k1", "k2", None)[i % 3], model=("a", "b")[i % 2]) for i, t in enumerate(times)]
    for grain in ("minute", "day"):
        buckets = bucket_usage(records, grain)
        total = sum(buckets.values(), TokenTotals())
        assert total == sum((TokenTotals.of(r) for r in records), TokenTotals())
        floor = floor_minute if grain == "minute" else floor_day
        assert all(floor(key[0]) == key[0] for key in buckets)


@settings(max_examples=400, deadline=None)
@given(instants, st.integers(min_value=0, max_value=35 * 24 * 3600 * 1_000_000))
def test_a_window_plan_partitions_the_window(start, width_us):
    end = start + timedelta(microseconds=width_us)
    plan = window_plan(start, end)
    assert plan_covers(plan) == end - start
    ranges = sorted((*plan.raw, *plan.minutes, *plan.days))
    for (a, b), (c, d) in zip(ranges, ranges[1:]):
        assert b == c  # contiguous, no overlap
    if ranges:
        assert ranges[0][0] == start and ranges[-1][1] == end
    assert all(floor_minute(a) == a and floor_minute(b) == b for a, b in plan.minutes)
    assert all(floor_day(a) == a and floor_day(b) == b for a, b in plan.days)
    assert sum((b - a for a, b in plan.raw), timedelta(0)) < timedelta(minutes=2)
    assert len(plan.raw) <= 2 and len(plan.minutes) <= 2 and len(plan.days) <= 1


def test_rounding_helpers():
    t = datetime(2025, 1, 1, 10, 0, 30, tzinfo=timezone.utc)
    assert ceil_minute(t) == datetime(2025, 1, 1, 10, 1, tzinfo=timezone.utc)
    assert ceil_minute(floor_minute(t)) == floor_minute(t)
    assert ceil_day(t) == datetime(2025, 1, 2, tzinfo=timezone.utc)
