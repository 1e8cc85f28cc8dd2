"""The transition table against evolve and decide: whatever the core decides, evolve accepts.

Hypothesis drives decide / on_effect_result / give_up with arbitrary commands, arbitrary
effect results, results that arrive late (after other commands moved the instance on:
the races between replicas), and a clock that jumps past deadlines. Folding every decided
event must never raise IllegalTransition, and a few facts must hold all along.
"""

from __future__ import annotations

import typing
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import events as ev
from services.orchestrator.domain import lifecycle as lc
from services.orchestrator.domain.decide import decide, give_up, on_effect_result
from services.orchestrator.domain.decision import Policy
from services.orchestrator.domain.effects import (
    INSTALL_PHASES,
    DeleteServer,
    DriveInstall,
    EffectFailed,
    EnsureServer,
    ProbeWorker,
    ServerGone,
    ServerInfo,
    ServerStillPresent,
    InstallObservation,
    WorkerObservation,
)
from services.orchestrator.domain.evolve import evolve, fold
from services.orchestrator.domain.state import EMPTY

from .factories import T0, archive, check, provision, reinstall, terminate

INSTANCE = "i-1"
ERROR_KINDS = ["transient", "rate_limited", "conflict", "not_found", "permanent", "timeout"]


def test_every_instance_event_is_in_the_table():
    instance_tags = {ev.event_tag(cls) for cls in typing.get_args(ev.InstanceAnyEvent)}
    assert instance_tags - set(lc.TRANSITIONS) == {"instance.failed"}
    assert set(lc.TRANSITIONS) - instance_tags == {"command.rejected"}


def test_every_status_is_reachable_from_requested():
    reachable, frontier = {lc.PROVISIONING}, [lc.PROVISIONING]
    while frontier:
        here = frontier.pop()
        targets = [t for allowed, t in lc.TRANSITIONS.values() if here in allowed and t not in (lc.SAME,)]
        targets += [t for t, sources in lc.FAILURE_FROM.items() if here in sources]
        for t in targets:
            if t not in reachable:
                reachable.add(t)
                frontier.append(t)
    assert reachable == set(lc.STATUSES)


def result_for(effect, data):
    failure = st.builds(EffectFailed, st.sampled_from(ERROR_KINDS), st.just("boom"),
                        st.one_of(st.none(), st.floats(0, 60)))
    if isinstance(effect, EnsureServer):
        server = st.builds(lambda n: ServerInfo(f"srv-{n}", "running", "local-1", None, f"http://e{n}"),
                           st.integers(0, 2))
        return data.draw(st.one_of(server, failure))
    if isinstance(effect, DeleteServer):
        ids = st.lists(st.sampled_from(["srv-0", "srv-1", "srv-2"]), max_size=3).map(tuple)
        return data.draw(st.one_of(st.builds(ServerGone, ids),
                                   st.builds(ServerStillPresent, st.just("srv-0"), st.just("stopping")), failure))
    if isinstance(effect, DriveInstall):
        observation = st.builds(
            InstallObservation,
            st.booleans(),
            st.sampled_from(["not_started", "running", "running", "succeeded", "failed"]),
            st.sampled_from([None, *INSTALL_PHASES]),
            st.sampled_from([None, effect.generation, effect.generation + 1]),
        )
        return data.draw(st.one_of(observation, failure))
    assert isinstance(effect, ProbeWorker)
    observation = st.builds(
        WorkerObservation,
        st.sampled_from([None, "starting", "ready", "ready", "ready", "failed", "unhealthy", "draining"]),
        st.sampled_from([None, "now", "now", "old"]),
        st.none(),
        st.sampled_from([None, True, True, False]),
    )
    return data.draw(st.one_of(observation, failure))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_whatever_the_core_decides_evolve_accepts(data):
    state, now = EMPTY, T0
    policy = Policy(install=data.draw(st.booleans()),
                    unavailable_action=data.draw(st.sampled_from(["reinstall", "replace", "none"])),
                    unavailable_limit_s=data.draw(st.sampled_from([0.0, 30.0, 600.0])))
    first = provision(INSTANCE, timeout_s=data.draw(st.integers(1, 3600)))
    timer = check(INSTANCE)
    # Repeats weight the draw towards the commands that move an instance forward.
    commands = [first, first, timer, timer, timer, terminate(INSTANCE), archive(INSTANCE), provision(INSTANCE),
                reinstall(INSTANCE), check(INSTANCE)]
    pending: list[tuple] = []  # (command, effect) whose result has not arrived yet
    if data.draw(st.booleans()):  # half the runs start from a booted instance, to reach the later statuses
        requested = decide(state, first, now, policy)
        state = fold(requested.events, state)
        server = ServerInfo("srv-0", "running", "local-1", None, "http://e0")
        state = fold(on_effect_result(state, first, requested.effect, server, now, policy).events, state)
    for _ in range(data.draw(st.integers(1, 30))):
        now += timedelta(seconds=data.draw(st.sampled_from([0, 0, 1, 1, 30, 600, 4000])))
        step = data.draw(st.sampled_from(["command", "command", "result", "result", "result", "give_up"]))
        if step == "result" and pending:
            command, effect = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
            result = result_for(effect, data)
            if isinstance(result, WorkerObservation) and result.heartbeat_at is not None:
                result = WorkerObservation(result.heartbeat_status,
                                           now if result.heartbeat_at == "now" else now - timedelta(hours=1),
                                           None, result.model_listed, 4.0)
            decision = on_effect_result(state, command, effect, result, now, policy)
        elif step == "give_up":
            command = data.draw(st.sampled_from(commands))
            decision = give_up(state, command, now, attempts=99)
        else:
            command = data.draw(st.sampled_from(commands))
            decision = decide(state, command, now, policy)
        for event in decision.events:
            state = evolve(state, event)  # raises IllegalTransition if the core broke the table
        if decision.effect is not None:
            pending.append((command, decision.effect))
        assert decision.rejection is None or [ev.event_tag(e) for e in decision.events] in ([], ["command.rejected"])
        # Facts that must hold whatever happened:
        assert not state.billing or state.server_id is not None  # billing only for a recorded server
        assert state.status not in lc.TERMINAL or not state.billing  # terminated instances cost nothing
        if state.status == lc.READY:
            assert state.upstream_url is not None
        brought_up = {ev.event_tag(e) for e in decision.events} & {"instance.worker_starting", "instance.ready"}
        if brought_up and policy.install:
            # With an installer, bring-up trusts a worker only once its install (of this generation)
            # finished. (A startup_failed instance may still be *recovered* by a late, healthy worker.)
            assert state.install_phase == INSTALL_PHASES[-1]
    assert fold([]) == EMPTY
