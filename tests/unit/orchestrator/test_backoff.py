from hypothesis import given
from hypothesis import strategies as st

from services.orchestrator.domain.backoff import CHECK, Backoff, unit_fraction

attempts = st.integers(min_value=-5, max_value=10_000)
keys = st.text(max_size=40)


@given(attempts, keys)
def test_delays_stay_between_the_jittered_base_and_the_cap(attempt, key):
    delay = CHECK.delay(attempt, key)
    assert CHECK.base_s * (1 - CHECK.jitter) <= delay <= CHECK.cap_s


@given(attempts, keys)
def test_delays_are_deterministic(attempt, key):
    assert CHECK.delay(attempt, key) == CHECK.delay(attempt, key)


@given(st.integers(min_value=1, max_value=500))
def test_the_ceiling_never_decreases_and_reaches_the_cap(attempt):
    assert CHECK.ceiling(attempt) <= CHECK.ceiling(attempt + 1)
    assert CHECK.ceiling(10_000) == CHECK.cap_s


def test_the_check_timer_starts_at_half_a_second_and_doubles_to_fifteen():
    assert [CHECK.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


@given(keys, attempts)
def test_jitter_fraction_is_in_the_unit_interval(key, attempt):
    assert 0.0 <= unit_fraction(key, attempt) < 1.0


def test_different_keys_spread_out():
    delays = {CHECK.delay(8, f"instance-{i}") for i in range(50)}
    assert len(delays) > 40


def test_invalid_curves_are_refused():
    import pytest

    for bad in (dict(base_s=0), dict(factor=0.5), dict(cap_s=0.1), dict(jitter=1.0)):
        with pytest.raises(ValueError):
            Backoff(**bad)
