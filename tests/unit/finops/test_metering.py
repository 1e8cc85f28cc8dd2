import random
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.finops.metering import all_intervals, apply_billing_event, clip, fold_billing, open_at

from .lifecycles import T0, events_for, interleave, lifecycles, started, stopped

I = "00000000-0000-0000-0000-00000000000a"


def test_start_then_stop_gives_one_closed_interval_at_the_start_price():
    ivs = fold_billing([started(I, T0, "2.5"), stopped(I, T0 + timedelta(minutes=90))])[I]
    assert len(ivs) == 1
    assert ivs[0].hourly_price_eur == Decimal("2.5")
    assert ivs[0].stopped_at - ivs[0].started_at == timedelta(minutes=90)


def test_the_same_event_twice_changes_nothing():
    s, e = started(I, T0), stopped(I, T0 + timedelta(hours=1))
    assert fold_billing([s, s, e, e, s]) == fold_billing([s, e])


def test_a_second_start_while_running_keeps_the_first_start_and_price():
    ivs = fold_billing([started(I, T0, "1"), started(I, T0 + timedelta(minutes=5), "9")])[I]
    assert len(ivs) == 1 and ivs[0].started_at == T0 and ivs[0].hourly_price_eur == Decimal("1")


def test_a_stop_without_a_running_interval_changes_nothing():
    assert fold_billing([stopped(I, T0)]).get(I, ()) == ()
    closed = fold_billing([started(I, T0), stopped(I, T0 + timedelta(minutes=1))])
    assert fold_billing([stopped(I, T0 + timedelta(minutes=2))], closed) == closed


def test_a_stale_start_dated_inside_a_closed_interval_is_ignored_but_a_restart_opens_a_new_one():
    base = fold_billing([started(I, T0), stopped(I, T0 + timedelta(hours=1))])
    stale = fold_billing([started(I, T0 + timedelta(minutes=30))], base)
    assert stale == base
    restarted = fold_billing([started(I, T0 + timedelta(hours=2), "3")], base)[I]
    assert len(restarted) == 2 and restarted[1].is_open and restarted[1].hourly_price_eur == Decimal("3")


def test_a_stop_dated_before_its_start_closes_an_empty_interval():
    ivs = fold_billing([started(I, T0), stopped(I, T0 - timedelta(minutes=3))])[I]
    assert ivs[0].stopped_at == ivs[0].started_at


def test_negative_price_is_billed_as_zero():
    ivs = fold_billing([started(I, T0, "-4")])[I]
    assert ivs[0].hourly_price_eur == 0


def test_open_interval_runs_to_now():
    ivs = fold_billing([started(I, T0)])[I]
    now = T0 + timedelta(minutes=7)
    assert open_at(ivs, now) == list(ivs)
    assert clip(ivs[0], now).stopped_at == now
    assert open_at(ivs, T0 - timedelta(seconds=1)) == []


def test_non_billing_events_are_skipped():
    assert fold_billing([object()]) == {}
    assert apply_billing_event((), object()) == ()  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.lists(lifecycles(), min_size=1, max_size=5, unique_by=lambda lc: lc.instance_id), st.randoms())
def test_duplicates_and_redeliveries_change_no_interval(lcs, rnd):
    rng = random.Random(rnd.random())
    clean = interleave([events_for(lc) for lc in lcs], rng)
    noisy = interleave([events_for(lc, rng=rng, duplicates=True) for lc in lcs], rng)
    strip = lambda state: sorted((iv.instance_id, iv.started_at, iv.stopped_at, iv.hourly_price_eur)  # noqa: E731
                                 for iv in all_intervals(state))
    assert strip(fold_billing(noisy)) == strip(fold_billing(clean))
    # and they are the lifecycles' true runs
    truth = sorted((lc.instance_id, r.start, r.stop, lc.price) for lc in lcs for r in lc.runs)
    assert strip(fold_billing(clean)) == truth


@settings(max_examples=100, deadline=None)
@given(st.lists(lifecycles(), min_size=1, max_size=4, unique_by=lambda lc: lc.instance_id), st.randoms())
def test_folding_twice_or_in_two_halves_gives_the_same_state(lcs, rnd):
    rng = random.Random(rnd.random())
    events = interleave([events_for(lc, rng=rng, duplicates=True) for lc in lcs], rng)
    once = fold_billing(events)
    assert fold_billing(events) == once
    cut = rng.randint(0, len(events))
    assert fold_billing(events[cut:], fold_billing(events[:cut])) == once
    # redelivering every event that was applied (same ids) changes nothing
    applied = {iv.start_event_id for iv in all_intervals(once)} | {iv.stop_event_id for iv in all_intervals(once)}
    assert fold_billing([e for e in events if e.id in applied], once) == once
