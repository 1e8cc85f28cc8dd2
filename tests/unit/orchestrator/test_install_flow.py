"""Bring-up through an installer, and reinstall: phases once and in order, failures with their reason."""

from __future__ import annotations

from datetime import timedelta

from contracts import events as ev
from services.orchestrator.domain import lifecycle as lc
from services.orchestrator.domain import reasons
from services.orchestrator.domain.decide import decide, on_effect_result
from services.orchestrator.domain.decision import Policy
from services.orchestrator.domain.effects import (
    INSTALL_PHASES,
    DriveInstall,
    EffectFailed,
    InstallObservation,
    ProbeWorker,
    ServerInfo,
    WorkerObservation,
)
from services.orchestrator.domain.evolve import fold
from services.orchestrator.domain.lifecycle import progress_percent
from services.orchestrator.domain.state import EMPTY

from .factories import T0, check, provision, reinstall

INSTANCE = "i-1"
SERVER = ServerInfo("srv-1", "starting", "local-1", "10.0.0.1", "http://10.0.0.1:8000", "http://10.0.0.1:8080")
POLICY = Policy(install=True)
TIMER = check(INSTANCE)


def tags(decision):
    return [ev.event_tag(e) for e in decision.events]


def booted():
    command = provision(INSTANCE)
    first = decide(EMPTY, command, T0, POLICY)
    state = fold(first.events)
    return fold(on_effect_result(state, command, first.effect, SERVER, T0, POLICY).events, state)


def drive(state, observation, now=T0):
    decision = decide(state, TIMER, now, POLICY)
    assert isinstance(decision.effect, DriveInstall), decision
    result = on_effect_result(state, TIMER, decision.effect, observation, now, POLICY)
    return result, fold(result.events, state)


def test_a_booting_instance_drives_its_install():
    state = booted()
    decision = decide(state, TIMER, T0, POLICY)
    assert decision.effect == DriveInstall(state.org_id, INSTANCE, "srv-1", "local-1", 0, state.placement.model_name)


def test_a_server_not_reachable_yet_is_looked_at_again_without_events():
    result, state = drive(booted(), InstallObservation(server_ready=False))
    assert tags(result) == [] and result.retry.kind == "check" and state.status == lc.BOOTING


def test_phases_are_recorded_once_in_order_even_when_some_were_missed():
    state = booted()
    result, state = drive(state, InstallObservation(True, "running", "installing", 0))
    assert [e.phase for e in result.events] == ["ssh_ready", "installing"]
    assert state.status == lc.INSTALLING and progress_percent(state.status, state.install_phase) == 50
    again, state = drive(state, InstallObservation(True, "running", "installing", 0))
    assert tags(again) == []  # nothing new: nothing recorded
    done, state = drive(state, InstallObservation(True, "succeeded", "agent_started", 0))
    assert [e.phase for e in done.events] == ["engine_starting", "agent_started"]
    assert isinstance(done.effect, ProbeWorker)  # installed: now wait for the worker's own word
    assert state.install_phase == INSTALL_PHASES[-1]


def test_after_the_install_the_worker_brings_the_instance_to_ready():
    state = booted()
    _, state = drive(state, InstallObservation(True, "succeeded", None, 0))
    decision = decide(state, TIMER, T0, POLICY)
    assert isinstance(decision.effect, ProbeWorker)
    starting = on_effect_result(state, TIMER, decision.effect, WorkerObservation("starting", T0), T0, POLICY)
    state = fold(starting.events, state)
    ready = on_effect_result(state, TIMER, decision.effect, WorkerObservation("ready", T0, None, True, 4.0), T0, POLICY)
    assert tags(ready) == ["instance.ready"]


def test_a_failed_install_fails_the_instance_with_the_log_tail():
    state = booted()
    result, state = drive(state, InstallObservation(True, "failed", "installing", 0, 7, "pip: no such package"))
    assert tags(result) == ["instance.failed"]
    failed = result.events[0]
    assert (failed.status, failed.reason_code) == (lc.STARTUP_FAILED, reasons.INSTALL_FAILED)
    assert "exit code 7" in failed.message and "no such package" in failed.message


def test_a_host_key_mismatch_is_permanent_and_a_timeout_is_not():
    state = booted()
    transient, _ = drive(state, EffectFailed("transient", "connection refused"))
    assert tags(transient) == [] and transient.retry is not None
    permanent, after = drive(state, EffectFailed("permanent", "host key mismatch"))
    assert tags(permanent) == ["instance.failed"] and after.failure_reason == reasons.INSTALL_FAILED


def test_the_progress_of_another_generation_is_ignored():
    state = booted()
    result, _ = drive(state, InstallObservation(True, "running", "agent_started", 5))
    assert tags(result) == []


def ready():
    state = booted()
    _, state = drive(state, InstallObservation(True, "succeeded", None, 0))
    probe = decide(state, TIMER, T0, POLICY).effect
    done = on_effect_result(state, TIMER, probe, WorkerObservation("ready", T0, None, True, 4.0), T0, POLICY)
    return fold(done.events, state)


def test_reinstall_starts_a_new_generation_and_a_redelivery_changes_nothing():
    state = ready()
    command = reinstall(INSTANCE)
    now = T0 + timedelta(hours=2)
    decision = decide(state, command, now, POLICY)
    assert tags(decision) == ["instance.reinstall_requested"] and decision.schedule_check
    assert decision.events[0].startup_deadline == now + timedelta(seconds=POLICY.reinstall_startup_timeout_s)
    after = fold(decision.events, state)
    assert (after.status, after.install_generation, after.install_phase) == (lc.INSTALLING, 1, None)
    assert decide(after, command, now, POLICY).events == ()
    assert decide(after, TIMER, now, POLICY).effect.generation == 1
    # A probe answered by the old worker before the new install finished is not trusted.
    stale_probe = ProbeWorker(after.org_id, INSTANCE, after.upstream_url, after.placement.model_name)
    old_worker = on_effect_result(after, TIMER, stale_probe, WorkerObservation("ready", now, None, True), now, POLICY)
    assert tags(old_worker) == []


def test_reinstall_is_refused_without_an_installer_or_a_server():
    state = ready()
    refused = decide(state, reinstall(INSTANCE), T0, Policy(install=False))
    assert refused.rejection.reason_code == reasons.NOT_SUPPORTED
    never = decide(fold(decide(EMPTY, provision(INSTANCE), T0, POLICY).events), reinstall(INSTANCE), T0, POLICY)
    assert never.rejection.reason_code == reasons.INVALID_TRANSITION
