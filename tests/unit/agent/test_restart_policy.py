"""Restart backoff: exponential, capped, gives up on a crash loop, forgives a long healthy run."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.restart_policy import RestartPolicy, backoff_delay_s, decide_restart

POLICY = RestartPolicy(base_s=1.0, factor=2.0, cap_s=10.0, max_restarts=4, stable_after_s=300.0)


def test_delays_double_up_to_the_cap():
    assert [backoff_delay_s(POLICY, n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_crash_loop_gives_up_after_max_restarts():
    failures, delays = 0, []
    for _ in range(10):
        decision = decide_restart(POLICY, failures, ran_for_s=0.5)
        failures = decision.consecutive_failures
        if decision.give_up:
            break
        delays.append(decision.delay_s)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert decision.give_up and failures == 5


def test_a_long_healthy_run_resets_the_count():
    decision = decide_restart(POLICY, consecutive_failures=4, ran_for_s=3600)
    assert not decision.give_up
    assert decision.consecutive_failures == 1 and decision.delay_s == 1.0


def test_zero_restarts_allowed_means_give_up_at_once():
    assert decide_restart(RestartPolicy(max_restarts=0), 0, 0.0).give_up


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=1e6))
def test_delay_is_bounded_and_monotonic(failures, ran_for):
    policy = RestartPolicy(base_s=0.5, factor=3.0, cap_s=60.0, max_restarts=10**6)
    assert 0.0 <= backoff_delay_s(policy, failures) <= 60.0
    assert backoff_delay_s(policy, failures) <= backoff_delay_s(policy, failures + 1)
    decision = decide_restart(policy, failures, ran_for)
    assert decision.consecutive_failures >= 1
    assert 0.0 <= decision.delay_s <= 60.0
