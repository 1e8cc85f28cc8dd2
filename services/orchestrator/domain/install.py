"""Bring-up through an installer: what an ``InstallObservation`` means for the instance.

Used when ``Policy.install`` is on (a real provider: the worker is installed over SSH). The
install runs detached on the server; each check drives it one step and records the phases it
passed, in order, once each. A failed install fails the instance with the installer's exit code
and log tail; a server that is not reachable yet is simply looked at again later.
"""

from __future__ import annotations

from datetime import datetime

from contracts import events as ev

from . import lifecycle as lc
from . import reasons
from .decision import DONE, ORCHESTRATOR_ACTOR, Decision, Emitter, InstanceCommand, RetryLater
from .effects import INSTALL_PHASES, DriveInstall, EffectFailed, EffectResult, InstallObservation, ProbeWorker
from .state import InstanceState


def drive_install(state: InstanceState) -> DriveInstall:
    assert state.placement is not None and state.server_id is not None and state.instance_id and state.org_id
    return DriveInstall(
        org_id=state.org_id,
        instance_id=state.instance_id,
        server_id=state.server_id,
        zone=state.zone,
        generation=state.install_generation,
        model_name=state.placement.model_name,
    )


def install_done(state: InstanceState) -> bool:
    return state.install_phase == INSTALL_PHASES[-1]


def install_driven(
    state: InstanceState, command: InstanceCommand, effect: DriveInstall, result: EffectResult, now: datetime
) -> Decision:
    if state.status not in (lc.BOOTING, lc.INSTALLING) or state.install_generation != effect.generation:
        return DONE  # moved on meanwhile (terminated, reinstalled again, ...)
    again = Decision(retry=RetryLater("check", not_after=state.startup_deadline))
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if isinstance(result, EffectFailed):
        if result.kind != "permanent":
            return Decision(retry=RetryLater("check", min_delay_s=result.retry_after_s or 0.0,
                                             not_after=state.startup_deadline))
        # e.g. the server's SSH host key does not match what the provider published.
        emit(ev.InstanceFailed, status=lc.STARTUP_FAILED, reason_code=reasons.INSTALL_FAILED,
             message=result.message[:500])
        return Decision(events=tuple(emit.events))
    assert isinstance(result, InstallObservation), result
    if not result.server_ready or result.generation not in (None, effect.generation):
        return again
    if result.state == "failed":
        detail = f"exit code {result.exit_code}: {result.log_tail[-400:]}" if result.exit_code is not None else result.log_tail[-400:]
        emit(ev.InstanceFailed, status=lc.STARTUP_FAILED, reason_code=reasons.INSTALL_FAILED, message=detail)
        return Decision(events=tuple(emit.events))
    for phase in phases_passed(state.install_phase, result):
        emit(ev.InstanceInstallPhaseReached, phase=phase, generation=effect.generation)
    if result.state == "succeeded" or result.phase == INSTALL_PHASES[-1]:
        return Decision(
            events=tuple(emit.events),
            effect=ProbeWorker(effect.org_id, effect.instance_id, state.upstream_url, effect.model_name),
        )
    return Decision(events=tuple(emit.events), retry=again.retry)


def phases_passed(recorded: str | None, result: InstallObservation) -> tuple[str, ...]:
    """The phases between the last recorded one and what the server reports, in order.

    Reaching the server at all is ``ssh_ready``; ``succeeded`` means every phase was passed.
    """
    done = INSTALL_PHASES.index(recorded) if recorded in INSTALL_PHASES else -1
    if result.state == "succeeded":
        reached = len(INSTALL_PHASES) - 1
    elif result.phase in INSTALL_PHASES:
        reached = INSTALL_PHASES.index(result.phase)
    else:
        reached = 0  # reachable, install not (yet) reporting a phase
    return INSTALL_PHASES[done + 1 : reached + 1]
