"""decide / on_effect_result by example: one scenario per rule."""

from __future__ import annotations

from datetime import timedelta

from contracts import events as ev
from services.orchestrator.domain import lifecycle as lc
from services.orchestrator.domain import reasons
from services.orchestrator.domain.decide import check_command_id, decide, give_up, on_effect_result
from services.orchestrator.domain.effects import (
    DeleteServer,
    EffectFailed,
    EnsureServer,
    ProbeWorker,
    ServerGone,
    ServerInfo,
    ServerStillPresent,
    WorkerObservation,
)
from services.orchestrator.domain.evolve import fold
from services.orchestrator.domain.state import EMPTY

from .factories import MODEL, T0, archive, check, provision, reinstall, terminate

INSTANCE = "i-1"
SERVER = ServerInfo("srv-1", "running", "local-1", "10.0.0.1", "http://10.0.0.1:8000", "http://10.0.0.1:8080")


def tags(decision):
    return [ev.event_tag(e) for e in decision.events]


def booted(instance_id: str = INSTANCE):
    """An instance with its server recorded (status booting), and the command that provisioned it."""
    command = provision(instance_id)
    first = decide(EMPTY, command, T0)
    state = fold(first.events)
    second = on_effect_result(state, command, first.effect, SERVER, T0)
    return fold(second.events, state), command


def test_provision_requests_then_ensures_the_server():
    command = provision(INSTANCE, timeout_s=900)
    decision = decide(EMPTY, command, T0)
    assert tags(decision) == ["instance.requested"]
    assert decision.events[0].startup_deadline == T0 + timedelta(seconds=900)
    assert decision.events[0].causation_id == command.id and decision.events[0].actor == command.actor
    assert decision.effect == EnsureServer(INSTANCE, command.org_id, command.placement)
    state = fold(decision.events)
    assert state.status == lc.PROVISIONING

    result = on_effect_result(state, command, decision.effect, SERVER, T0)
    assert tags(result) == ["instance.server_created", "instance.billing_started"]
    assert result.schedule_check and result.retry is None
    assert result.effect == DeleteServer(INSTANCE, "local-1", keep="srv-1", compensating=True)  # no duplicate
    created = result.events[0]
    assert created.upstream_url == SERVER.upstream_url and created.provider_server_id == "srv-1"
    assert result.events[1].hourly_price_eur == command.placement.hourly_price_eur
    after = fold(result.events, state)
    assert (after.status, after.server_id, after.billing) == (lc.BOOTING, "srv-1", True)


def test_a_replayed_provision_changes_nothing():
    state, command = booted()
    again = decide(state, command, T0 + timedelta(seconds=5))
    assert again.events == () and again.rejection is None
    assert again.schedule_check  # re-publishing the check timer is idempotent (derived id)
    # ...and a duplicate another delivery may have created meanwhile is swept, the recorded one kept.
    assert again.effect == DeleteServer(INSTANCE, "local-1", keep="srv-1", compensating=True)


def test_a_provision_redelivered_before_the_server_was_recorded_looks_it_up_again():
    command = provision(INSTANCE)
    state = fold(decide(EMPTY, command, T0).events)
    again = decide(state, command, T0)
    assert again.events == () and isinstance(again.effect, EnsureServer)


def test_same_decision_on_same_state_gives_the_same_event_ids():
    command = provision(INSTANCE)
    assert decide(EMPTY, command, T0).events[0].id == decide(EMPTY, command, T0).events[0].id


def test_another_provision_for_an_existing_instance_is_rejected():
    state, _ = booted()
    decision = decide(state, provision(INSTANCE), T0)
    assert decision.rejection.reason_code == reasons.INSTANCE_ALREADY_EXISTS
    assert tags(decision) == ["command.rejected"] and decision.events[0].instance_id == INSTANCE


def test_provision_without_model_is_rejected():
    decision = decide(EMPTY, provision(INSTANCE, model=""), T0)
    assert decision.rejection.reason_code == reasons.MISSING_MODEL


def test_a_rejected_command_replayed_is_done():
    command = terminate(INSTANCE)
    first = decide(EMPTY, command, T0)
    assert first.rejection.reason_code == reasons.UNKNOWN_INSTANCE
    state = fold(first.events)
    assert state.status is None and command.id in state.rejected
    again = decide(state, command, T0)
    assert again.events == () and again.effect is None
    assert again.rejection.reason_code == reasons.UNKNOWN_INSTANCE


def test_commands_for_unknown_instances_are_rejected():
    for command in (terminate(INSTANCE), check(INSTANCE), archive(INSTANCE), reinstall(INSTANCE)):
        decision = decide(EMPTY, command, T0)
        assert decision.rejection.reason_code == reasons.UNKNOWN_INSTANCE, command


def test_terminate_deletes_the_server_stops_billing_and_ends():
    state, _ = booted()
    command = terminate(INSTANCE)
    decision = decide(state, command, T0)
    assert tags(decision) == ["instance.termination_requested"]
    assert decision.events[0].reason_code == reasons.USER_REQUEST
    assert decision.effect == DeleteServer(INSTANCE, "local-1", "srv-1")
    state = fold(decision.events, state)
    assert state.status == lc.TERMINATING

    still = on_effect_result(state, command, decision.effect, ServerStillPresent("srv-1", "stopping"), T0)
    assert still.events == () and still.retry is not None
    failed = on_effect_result(state, command, decision.effect, EffectFailed("transient", "503"), T0)
    assert failed.events == () and failed.retry is not None

    gone = on_effect_result(state, command, decision.effect, ServerGone(("srv-1",)), T0)
    assert tags(gone) == ["instance.server_deleted", "instance.billing_stopped", "instance.terminated"]
    end = fold(gone.events, state)
    assert end.status == lc.TERMINATED and not end.billing and end.server_deleted
    assert decide(end, terminate(INSTANCE), T0).events == ()  # terminating twice is fine


def test_terminate_while_provisioning_sweeps_by_tag():
    command = provision(INSTANCE)
    state = fold(decide(EMPTY, command, T0).events)
    stop = terminate(INSTANCE)
    decision = decide(state, stop, T0)
    assert tags(decision) == ["instance.termination_requested"]
    assert decision.effect == DeleteServer(INSTANCE, "local-1", None, sweep=True)
    state = fold(decision.events, state)
    gone = on_effect_result(state, stop, decision.effect, ServerGone(()), T0)
    assert tags(gone) == ["instance.terminated"]  # never billed, nothing to record as deleted
    # The create that was in flight lands now: the provision handler deletes its orphan.
    ended = fold(gone.events, state)
    orphan = on_effect_result(ended, command, EnsureServer(INSTANCE, command.org_id, command.placement), SERVER, T0)
    assert orphan.events == () and orphan.effect == DeleteServer(INSTANCE, "local-1", "srv-1", sweep=False,
                                                                  compensating=True)
    assert on_effect_result(ended, command, orphan.effect, ServerGone(("srv-1",)), T0).events == ()


def test_provider_errors_retry_or_fail_provisioning():
    command = provision(INSTANCE)
    first = decide(EMPTY, command, T0)
    state = fold(first.events)
    limited = on_effect_result(state, command, first.effect, EffectFailed("rate_limited", "429", 7.0), T0)
    assert limited.events == () and limited.retry.min_delay_s == 7.0
    permanent = on_effect_result(state, command, first.effect, EffectFailed("permanent", "bad type"), T0)
    assert tags(permanent) == ["instance.failed"]
    assert (permanent.events[0].status, permanent.events[0].reason_code) == (
        lc.PROVISIONING_FAILED, reasons.PROVIDER_CREATE_FAILED)


def test_check_probes_then_follows_the_worker_to_ready():
    state, _ = booted()
    timer = check(INSTANCE, command_id=check_command_id(INSTANCE))
    decision = decide(state, timer, T0)
    assert decision.effect == ProbeWorker(timer.org_id, INSTANCE, SERVER.upstream_url, MODEL)

    nothing = on_effect_result(state, timer, decision.effect, WorkerObservation(None, None), T0)
    assert nothing.events == () and nothing.retry.kind == "check"
    assert nothing.retry.not_after == state.startup_deadline

    starting = on_effect_result(state, timer, decision.effect, WorkerObservation("starting", T0), T0)
    assert tags(starting) == ["instance.worker_starting"] and starting.retry is not None
    state = fold(starting.events, state)
    assert state.status == lc.STARTING

    not_listed = on_effect_result(state, timer, decision.effect, WorkerObservation("ready", T0, None, False), T0)
    assert not_listed.events == () and not_listed.retry is not None

    stale = WorkerObservation("ready", T0 - timedelta(minutes=5), None, True)
    assert on_effect_result(state, timer, decision.effect, stale, T0).events == ()

    ready = on_effect_result(state, timer, decision.effect, WorkerObservation("ready", T0, None, True), T0)
    assert tags(ready) == ["instance.ready"] and ready.retry is None
    assert ready.events[0].upstream_url == SERVER.upstream_url  # from the provider, never the worker
    state = fold(ready.events, state)
    # Ready: the timer goes on as a heartbeat watch, reading the heartbeat only (no engine call).
    watching = decide(state, timer, T0)
    assert watching.events == () and watching.effect == ProbeWorker(
        state.org_id, INSTANCE, SERVER.upstream_url, state.placement.model_name, probe_engine=False)


def test_check_fails_the_instance_at_its_deadline():
    state, _ = booted()
    timer = check(INSTANCE)
    late = decide(state, timer, state.startup_deadline)
    assert tags(late) == ["instance.failed"]
    assert (late.events[0].status, late.events[0].reason_code) == (lc.STARTUP_FAILED, reasons.STARTUP_TIMEOUT)


def test_a_worker_that_reports_failed_fails_startup():
    state, _ = booted()
    timer = check(INSTANCE)
    probe = decide(state, timer, T0).effect
    failed = on_effect_result(state, timer, probe, WorkerObservation("failed", T0, "engine_exited"), T0)
    assert tags(failed) == ["instance.failed"]
    assert failed.events[0].reason_code == reasons.WORKER_FAILED and "engine_exited" in failed.events[0].message


def test_check_while_provisioning_waits():
    state = fold(decide(EMPTY, provision(INSTANCE), T0).events)
    decision = decide(state, check(INSTANCE), T0)
    assert decision.events == () and decision.effect is None and decision.retry.kind == "check"


def test_archive_only_after_terminated():
    state, _ = booted()
    assert decide(state, archive(INSTANCE), T0).rejection.reason_code == reasons.INVALID_TRANSITION
    stop = terminate(INSTANCE)
    d = decide(state, stop, T0)
    state = fold(d.events, state)
    state = fold(on_effect_result(state, stop, d.effect, ServerGone(("srv-1",)), T0).events, state)
    done = decide(state, archive(INSTANCE), T0)
    assert tags(done) == ["instance.archived"]
    assert fold(done.events, state).status == lc.ARCHIVED


def test_giving_up_provisioning_fails_the_instance_and_sweeps():
    command = provision(INSTANCE)
    state = fold(decide(EMPTY, command, T0).events)
    decision = give_up(state, command, T0, attempts=30)
    assert tags(decision) == ["instance.failed"]
    assert decision.events[0].status == lc.PROVISIONING_FAILED
    assert decision.effect == DeleteServer(INSTANCE, "local-1", None, sweep=True, compensating=True)
    other = give_up(state, terminate(INSTANCE), T0, attempts=200)
    assert other.rejection.reason_code == reasons.MAX_ATTEMPTS_EXCEEDED


def test_termination_reason_codes_stay_a_small_vocabulary():
    assert reasons.termination_reason("user_request") == "USER_REQUEST"
    assert reasons.termination_reason("idle-timeout") == "IDLE_TIMEOUT"
    assert reasons.termination_reason("evil.sub>ject") == "USER_REQUEST"
