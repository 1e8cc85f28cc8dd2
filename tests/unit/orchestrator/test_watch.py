"""Serving instances: heartbeats in, unavailable / recovered / draining out, and what happens after."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import commands as cmd
from contracts import events as ev
from services.orchestrator.domain import lifecycle as lc
from services.orchestrator.domain import reasons
from services.orchestrator.domain.decide import decide, on_effect_result
from services.orchestrator.domain.decision import Policy
from services.orchestrator.domain.effects import (
    DeleteServer,
    DriveInstall,
    InstallObservation,
    ProbeWorker,
    ServerInfo,
    WorkerObservation,
)
from services.orchestrator.domain.evolve import fold
from services.orchestrator.domain.state import EMPTY
from services.orchestrator.domain.timers import next_timer
from services.orchestrator.domain.watch import replacement_id

from .factories import T0, check, provision, terminate

INSTANCE = "i-1"
SERVER = ServerInfo("srv-1", "running", "local-1", "10.0.0.1", "http://10.0.0.1:8000", "http://10.0.0.1:8080")
POLICY = Policy(watch_interval_s=4.0, stale_after_intervals=3.0, unavailable_limit_s=600.0)
TIMER = check(INSTANCE)


def tags(decision):
    return [ev.event_tag(e) for e in decision.events]


def ready_instance(policy: Policy = POLICY):
    command = provision(INSTANCE)
    first = decide(EMPTY, command, T0, policy)
    state = fold(first.events)
    state = fold(on_effect_result(state, command, first.effect, SERVER, T0, policy).events, state)
    if policy.install:
        drive = decide(state, TIMER, T0, policy).effect
        done = on_effect_result(state, TIMER, drive, InstallObservation(True, "succeeded", None, 0), T0, policy)
        state = fold(done.events, state)
    probe = ProbeWorker(state.org_id, INSTANCE, SERVER.upstream_url, state.placement.model_name)
    ready = on_effect_result(state, TIMER, probe, WorkerObservation("ready", T0, None, True, 4.0), T0, policy)
    state = fold(ready.events, state)
    assert state.status == lc.READY
    return state


def watch(state, observation, now, policy: Policy = POLICY):
    decision = decide(state, TIMER, now, policy)
    assert isinstance(decision.effect, ProbeWorker), decision
    result = on_effect_result(state, TIMER, decision.effect, observation, now, policy)
    return result, fold(result.events, state)


def heartbeat(status: str, at, interval_s: float = 4.0, reason: str | None = None, listed: bool | None = None):
    return WorkerObservation(status, at, reason, listed, interval_s)


def test_a_ready_instance_is_watched_on_a_fixed_period_without_asking_the_engine():
    state = ready_instance()
    decision = decide(state, TIMER, T0, POLICY)
    assert decision.effect.probe_engine is False
    assert next_timer(state, POLICY).kind == "watch" and next_timer(state, POLICY).min_delay_s == 4.0


def test_stale_heartbeats_make_it_unavailable_after_three_of_its_own_intervals():
    state = ready_instance()
    last = T0
    just_in_time, _ = watch(state, heartbeat("ready", last, 4.0), last + timedelta(seconds=12))
    assert tags(just_in_time) == []
    late, after = watch(state, heartbeat("ready", last, 4.0), last + timedelta(seconds=12.1))
    assert tags(late) == ["instance.unavailable"]
    assert late.events[0].reason_code == reasons.WORKER_HEARTBEAT_TIMEOUT
    assert (after.status, after.unavailable_since) == (lc.UNAVAILABLE, last + timedelta(seconds=12.1))
    # A worker announcing a slower interval is judged against its own interval.
    slow, _ = watch(state, heartbeat("ready", last, 10.0), last + timedelta(seconds=25))
    assert tags(slow) == []


@given(interval=st.floats(0.5, 30.0), watch_every=st.floats(0.5, 5.0))
def test_detection_is_bounded_by_three_intervals_plus_one_watch_period(interval, watch_every):
    """Whatever the phase of the watch timer, the first check past 3 intervals flags the instance."""
    policy = Policy(watch_interval_s=watch_every)
    state = ready_instance(policy)
    last = T0
    now = last
    while True:
        now += timedelta(seconds=watch_every)
        decision, after = watch(state, heartbeat("ready", last, interval), now, policy)
        if after.status == lc.UNAVAILABLE:
            break
    assert (now - last).total_seconds() <= 3 * interval + watch_every + 1e-6


@pytest.mark.parametrize(("status", "code"), [("unhealthy", reasons.WORKER_UNHEALTHY), ("failed", reasons.WORKER_FAILED)])
def test_a_worker_that_says_it_is_unhealthy_is_unavailable_at_once(status, code):
    state = ready_instance()
    decision, after = watch(state, heartbeat(status, T0, reason="stalled"), T0)
    assert tags(decision) == ["instance.unavailable"]
    assert (decision.events[0].reason_code, decision.events[0].message) == (code, "stalled")
    assert after.status == lc.UNAVAILABLE


def test_draining_then_gone_is_unavailable():
    state = ready_instance()
    decision, state = watch(state, heartbeat("draining", T0), T0)
    assert tags(decision) == ["instance.draining"] and state.status == lc.DRAINING
    decision, state = watch(state, heartbeat("draining", T0), T0 + timedelta(seconds=30))
    assert tags(decision) == ["instance.unavailable"] and state.status == lc.UNAVAILABLE


def test_recovery_needs_a_fresh_ready_heartbeat_and_the_engine_listing_the_model():
    state = ready_instance()
    _, state = watch(state, heartbeat("ready", T0), T0 + timedelta(seconds=20))
    assert state.status == lc.UNAVAILABLE
    now = T0 + timedelta(seconds=30)
    assert decide(state, TIMER, now, POLICY).effect.probe_engine is True
    not_listed, _ = watch(state, heartbeat("ready", now, listed=False), now)
    assert tags(not_listed) == []
    back, state = watch(state, heartbeat("ready", now, listed=True), now)
    assert tags(back) == ["instance.recovered"]
    assert (state.status, state.unavailable_since) == (lc.READY, None)


def unavailable(policy: Policy):
    state = ready_instance(policy)
    _, state = watch(state, heartbeat("ready", T0), T0 + timedelta(seconds=20), policy)
    assert state.status == lc.UNAVAILABLE
    return state


def test_unavailable_past_the_limit_is_reinstalled_when_configured():
    policy = Policy(install=True, unavailable_action="reinstall", unavailable_limit_s=60)
    state = unavailable(policy)
    early, _ = watch(state, heartbeat("ready", T0), T0 + timedelta(seconds=50), policy)
    assert tags(early) == []
    now = T0 + timedelta(seconds=81)
    decision, after = watch(state, heartbeat("ready", T0), now, policy)
    assert tags(decision) == ["instance.reinstall_requested"]
    assert decision.events[0].generation == 1 and decision.events[0].reason_code == reasons.UNAVAILABLE_TOO_LONG
    assert decision.effect == DriveInstall(after.org_id, INSTANCE, "srv-1", "local-1", 1, after.placement.model_name)
    assert (after.status, after.install_generation, after.install_phase) == (lc.INSTALLING, 1, None)


def test_reinstalls_stop_at_the_limit_and_the_instance_fails():
    policy = Policy(install=True, unavailable_action="reinstall", unavailable_limit_s=0, max_reinstalls=0)
    state = unavailable(policy)
    decision, after = watch(state, heartbeat("ready", T0), T0 + timedelta(seconds=21), policy)
    assert tags(decision) == ["instance.failed"] and after.status == lc.FAILED
    assert next_timer(after, policy) is not None  # still holds a server: the timer releases it later


def test_unavailable_past_the_limit_is_replaced_when_configured():
    policy = Policy(unavailable_action="replace", unavailable_limit_s=0)
    state = unavailable(policy)
    now = T0 + timedelta(seconds=21)
    decision, after = watch(state, heartbeat("ready", T0), now, policy)
    assert tags(decision) == ["instance.termination_requested"]
    assert decision.events[0].replaced_by == replacement_id(state)
    [new] = decision.publish
    assert isinstance(new, cmd.ProvisionInstance) and new.instance_id == replacement_id(state)
    assert new.placement == state.placement and new.org_id == state.org_id
    assert decision.effect == DeleteServer(INSTANCE, "local-1", "srv-1")
    # A crash before the replacement was published: the terminating instance's timer publishes it again.
    again = decide(after, TIMER, now + timedelta(seconds=4), policy)
    assert [c.id for c in again.publish] == [new.id] and isinstance(again.effect, DeleteServer)


def test_nothing_happens_past_the_limit_when_the_action_is_none():
    policy = Policy(unavailable_action="none", unavailable_limit_s=0)
    state = unavailable(policy)
    decision, after = watch(state, heartbeat("ready", T0), T0 + timedelta(days=1), policy)
    assert tags(decision) == [] and after.status == lc.UNAVAILABLE


def timed_out():
    command = provision(INSTANCE)
    first = decide(EMPTY, command, T0)
    state = fold(first.events)
    state = fold(on_effect_result(state, command, first.effect, SERVER, T0).events, state)
    deadline = state.startup_deadline
    failed = decide(state, TIMER, deadline, POLICY)
    state = fold(failed.events, state)
    assert state.status == lc.STARTUP_FAILED and state.has_live_server
    return state, deadline


def test_a_late_worker_recovers_a_startup_failed_instance():
    state, deadline = timed_out()
    decision = decide(state, TIMER, deadline + timedelta(seconds=60), POLICY)
    assert decision.effect.probe_engine is True
    late = heartbeat("ready", deadline + timedelta(seconds=60), listed=True)
    back = on_effect_result(state, TIMER, decision.effect, late, deadline + timedelta(seconds=60), POLICY)
    assert tags(back) == ["instance.recovered"] and fold(back.events, state).status == lc.READY


def test_a_failed_server_is_released_after_the_grace_period():
    state, deadline = timed_out()
    before = decide(state, TIMER, deadline + timedelta(seconds=POLICY.failed_server_grace_s - 1), POLICY)
    assert tags(before) == []
    after_grace = decide(state, TIMER, deadline + timedelta(seconds=POLICY.failed_server_grace_s), POLICY)
    assert tags(after_grace) == ["instance.termination_requested"]
    assert after_grace.events[0].reason_code == reasons.FAILED_SERVER_RELEASED
    assert after_grace.effect == DeleteServer(INSTANCE, "local-1", "srv-1")


def test_the_timer_stops_only_when_nothing_is_left_to_watch():
    state = ready_instance()
    ended = fold(decide(state, terminate(INSTANCE), T0, POLICY).events, state)
    assert ended.status == lc.TERMINATING and next_timer(ended, POLICY).kind == "provider"
    assert next_timer(EMPTY, POLICY) is None
