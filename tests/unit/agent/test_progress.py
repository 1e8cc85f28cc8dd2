"""Forward progress: requests running and the generation counter frozen for stall_after_s -> stalled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.progress import ProgressMark, ProgressSample, observe_progress

AFTER = 10.0


def run(samples: list[tuple[float, float, float | None]], stall_after_s: float = AFTER) -> list[bool]:
    """Feed (now, running, generation_total) readings in order; the stalled flag after each."""
    mark: ProgressMark | None = None
    out = []
    for now, running, tokens in samples:
        mark = observe_progress(mark, ProgressSample(requests_running=running, generation_tokens_total=tokens),
                                now, stall_after_s)
        out.append(mark.stalled)
    return out


def test_a_frozen_counter_with_running_requests_stalls_after_the_threshold():
    assert run([(0, 1, 100), (5, 1, 100), (9.9, 1, 100), (10, 1, 100), (30, 1, 100)]) == [
        False, False, False, True, True]


def test_tokens_moving_clears_the_stall_and_restarts_the_clock():
    assert run([(0, 2, 100), (12, 2, 100), (13, 2, 101), (22, 2, 101), (23, 2, 101)]) == [
        False, True, False, False, True]


def test_nothing_running_is_never_stalled_and_restarts_the_clock():
    # An idle engine produces no tokens, rightly; the clock starts again when work arrives.
    assert run([(0, 0, 100), (50, 0, 100), (55, 1, 100), (64, 1, 100), (65, 1, 100)]) == [
        False, False, False, False, True]
    assert run([(0, 1, 100), (15, 1, 100), (16, 0, 100)]) == [False, True, False]


def test_waiting_requests_alone_do_not_count():
    # Only running requests promise tokens; a queue with nothing admitted is load, not a stall.
    samples = [(t, 0, 7) for t in (0, 20, 40)]
    assert run(samples) == [False, False, False]


def test_an_engine_without_a_counter_is_never_judged():
    assert run([(0, 3, None), (100, 3, None), (200, 3, None)]) == [False, False, False]


def test_a_counter_reset_after_an_engine_restart_is_movement():
    assert run([(0, 1, 500), (11, 1, 500), (12, 1, 0), (13, 1, 0)]) == [False, True, False, False]


def test_zero_disables_the_check():
    assert run([(0, 1, 1), (1000, 1, 1)], stall_after_s=0) == [False, False]


def test_the_first_reading_is_never_stalled():
    assert run([(1000, 5, 42)]) == [False]


def test_silent_for_is_measured_from_the_last_progress():
    mark = observe_progress(None, ProgressSample(requests_running=1, generation_tokens_total=3), 5.0, AFTER)
    mark = observe_progress(mark, ProgressSample(requests_running=1, generation_tokens_total=3), 9.0, AFTER)
    assert mark.silent_for_s(9.0) == 4.0 and mark.progress_at == 5.0


readings = st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.sampled_from([0.0, 1.0, 4.0]),
                              st.one_of(st.none(), st.integers(0, 3).map(float))), min_size=1, max_size=40)


@given(readings, st.floats(0.5, 20))
def test_stalled_means_running_and_a_frozen_counter_for_the_whole_threshold(steps, stall_after_s):
    now = 0.0
    mark: ProgressMark | None = None
    history: list[tuple[float, float, float | None]] = []
    for dt, running, tokens in steps:
        now += dt
        history.append((now, running, tokens))
        mark = observe_progress(mark, ProgressSample(requests_running=running, generation_tokens_total=tokens),
                                now, stall_after_s)
        assert mark.progress_at <= now
        if mark.stalled:
            # Every reading in the window [progress_at, now] had work running and the same counter,
            # and the window is at least the threshold long.
            window = [h for h in history if h[0] >= mark.progress_at]
            assert now - mark.progress_at >= stall_after_s
            assert tokens is not None and all(r > 0 and t == tokens for _, r, t in window[1:])
        if running <= 0 or tokens is None:
            assert not mark.stalled and mark.progress_at == now


@given(readings)
def test_a_moving_counter_never_stalls(steps):
    now, total = 0.0, 0.0
    mark: ProgressMark | None = None
    for dt, running, _ in steps:
        now += dt + 1.0
        total += 1.0
        mark = observe_progress(mark, ProgressSample(requests_running=running, generation_tokens_total=total),
                                now, 0.5)
        assert not mark.stalled
