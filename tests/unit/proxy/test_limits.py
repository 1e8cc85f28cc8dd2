"""Per-key limits: the GCRA rate limiter, the concurrency counter and admission (examples + Hypothesis)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.proxy import errors
from services.api.proxy.admission import Admission
from services.api.proxy.limits import (
    NS_PER_MIN,
    NS_PER_S,
    ConcurrencyLimiter,
    RateLimiter,
    gcra,
    interval_ns,
    retry_after_s,
)

# --- examples --------------------------------------------------------------------------------


def test_a_full_bucket_allows_rpm_back_to_back_then_refuses_with_the_exact_wait():
    lim = RateLimiter()
    t = 5 * NS_PER_S
    assert all(lim.take("k", t, 3).allowed for _ in range(3))
    d = lim.take("k", t, 3)
    assert not d.allowed and d.retry_after_ns == 20 * NS_PER_S  # one request every 60/3 = 20 s
    assert retry_after_s(d.retry_after_ns) == 20
    assert not lim.take("k", t + 20 * NS_PER_S - 1, 3).allowed
    assert lim.take("k", t + 20 * NS_PER_S, 3).allowed


def test_keys_are_independent_and_refusals_cost_nothing():
    lim = RateLimiter()
    assert lim.take("a", 0, 1).allowed
    for _ in range(5):
        assert not lim.take("a", 0, 1).allowed
    assert lim.take("b", 0, 1).allowed
    assert lim.take("a", NS_PER_MIN, 1).allowed  # five refusals did not push the next slot back


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one():
    assert retry_after_s(1) == 1
    assert retry_after_s(NS_PER_S) == 1
    assert retry_after_s(NS_PER_S + 1) == 2
    assert retry_after_s(0) == 1


def test_refilled_keys_are_forgotten_when_the_table_is_full():
    lim = RateLimiter(max_keys=3)
    for k in "abc":
        lim.take(k, 0, 60)
    assert len(lim) == 3
    lim.take("d", 2 * NS_PER_S, 60)  # a, b, c refilled after 1 s: dropped, d stored
    assert len(lim) == 1


def test_concurrency_counter():
    c = ConcurrencyLimiter()
    assert c.acquire("k", 2) and c.acquire("k", 2)
    assert not c.acquire("k", 2)
    c.release("k")
    assert c.acquire("k", 2)
    c.release("k")
    c.release("k")
    assert c.in_flight("k") == 0 and len(c) == 0


def _principal(**kw):
    base = dict(key_id="key-1", user_id="u", org_id="o", requests_per_minute=None, max_concurrent_requests=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_admission_uses_the_keys_own_limits_else_the_defaults():
    clock = [0]
    adm = Admission(rpm=2, concurrency=10, clock=lambda: clock[0])
    p = _principal()
    for _ in range(2):
        adm.release(adm.admit(p))
    with pytest.raises(errors.ProxyError) as exc:
        adm.admit(p)
    assert exc.value.status == 429 and exc.value.headers == [(b"retry-after", b"30")]
    own = _principal(key_id="key-2", requests_per_minute=5)
    for _ in range(5):
        adm.release(adm.admit(own))
    with pytest.raises(errors.ProxyError):
        adm.admit(own)
    unlimited = _principal(key_id="key-3", requests_per_minute=0, max_concurrent_requests=0)
    assert all(adm.admit(unlimited) is None for _ in range(100))


def test_admission_concurrency_refusal_takes_no_rate_token_and_release_frees_the_slot():
    adm = Admission(rpm=3, concurrency=1, clock=lambda: 0)
    p = _principal()
    slot = adm.admit(p)
    with pytest.raises(errors.ProxyError) as exc:
        adm.admit(p)
    assert exc.value.status == 429 and exc.value.headers == [(b"retry-after", b"1")]
    adm.release(slot)
    adm.release(adm.admit(p))
    adm.release(adm.admit(p))  # 3 admitted in all: the refused one did not use the bucket
    with pytest.raises(errors.ProxyError) as exc:
        adm.admit(p)
    assert b"rate_limit_exceeded" in exc.value.body


def test_sessions_are_limited_per_user():
    adm = Admission(rpm=1, concurrency=0, clock=lambda: 0)
    adm.admit(_principal(key_id=None, user_id="u1"))
    adm.admit(_principal(key_id=None, user_id="u2"))
    with pytest.raises(errors.ProxyError):
        adm.admit(_principal(key_id=None, user_id="u1"))


# --- properties ------------------------------------------------------------------------------

rpm_st = st.integers(1, 10_000)
# Arrival gaps in ns, from "at once" to a few minutes, as sorted absolute times.
times_st = st.lists(st.integers(0, 3 * NS_PER_MIN // 10), min_size=1, max_size=80).map(
    lambda gaps: [sum(gaps[:i + 1]) for i in range(len(gaps))])


def _replay(times, rpm):
    lim = RateLimiter()
    return [(t, lim.take("k", t, rpm)) for t in times]


@settings(max_examples=300, deadline=None)
@given(times_st, rpm_st)
def test_never_more_than_burst_plus_the_rate_over_any_span(times, rpm):
    allowed = [t for t, d in _replay(times, rpm) if d.allowed]
    step = interval_ns(rpm)
    for i in range(len(allowed)):
        for j in range(i, len(allowed)):
            span = allowed[j] - allowed[i]
            assert j - i + 1 <= rpm + span // step


@settings(max_examples=300, deadline=None)
@given(times_st, rpm_st)
def test_retry_after_is_exact(times, rpm):
    lim = RateLimiter()
    for t in times:
        before = dict(lim._tat)
        d = lim.take("k", t, rpm)
        if d.allowed:
            continue
        assert lim._tat == before  # a refusal changes nothing
        wait = d.retry_after_ns
        assert gcra(before.get("k"), t + wait, rpm, rpm).allowed
        assert not gcra(before.get("k"), t + wait - 1, rpm, rpm).allowed
        secs = retry_after_s(wait)
        assert gcra(before.get("k"), t + secs * NS_PER_S, rpm, rpm).allowed
        if secs > 1:
            assert not gcra(before.get("k"), t + (secs - 1) * NS_PER_S, rpm, rpm).allowed


@settings(max_examples=200, deadline=None)
@given(rpm_st, st.integers(0, 10 * NS_PER_MIN))
def test_a_steady_client_at_the_rate_is_never_refused(rpm, start):
    lim = RateLimiter()
    step = interval_ns(rpm)
    assert all(lim.take("k", start + i * step, rpm).allowed for i in range(min(200, 3 * rpm)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["acquire", "release"]), max_size=60), st.integers(1, 5))
def test_concurrency_never_exceeds_its_limit(ops, limit):
    c = ConcurrencyLimiter()
    held = 0
    for op in ops:
        if op == "acquire":
            ok = c.acquire("k", limit)
            assert ok == (held < limit)
            held += ok
        elif held:
            c.release("k")
            held -= 1
        assert c.in_flight("k") == held <= limit
