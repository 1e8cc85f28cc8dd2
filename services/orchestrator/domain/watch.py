"""Watching instances that are up: heartbeats in, ``unavailable`` / ``recovered`` / ``draining`` out.

A ready worker's heartbeat is read every ``Policy.watch_interval_s``. It is stale when older
than ``stale_after_intervals`` × the interval the worker itself announced, so an instance goes
``unavailable`` within 3 intervals + one watch period (4 s by default, < 5 s) of its last
heartbeat. A worker that says ``unhealthy`` (its agent saw the engine stall) or ``failed`` is
unavailable at once. Unavailable for longer than ``unavailable_limit_s`` (a failed worker: at
once) leads to ``unavailable_action``: reinstall on the same server, replace with a new
instance, or nothing. A failed instance keeps its server for ``failed_server_grace_s`` (a late
worker recovers it) and is then terminated so it stops billing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from contracts import commands as cmd
from contracts import events as ev
from contracts.ids import derived_id

from . import lifecycle as lc
from . import reasons
from .decision import DONE, ORCHESTRATOR_ACTOR, Decision, Emitter, InstanceCommand, Policy
from .effects import DeleteServer, EffectFailed, EffectResult, ProbeWorker, WorkerObservation
from .install import drive_install
from .state import InstanceState
from .timers import release_time


def probe(state: InstanceState) -> ProbeWorker:
    """Read the heartbeat; ask the engine too when the answer could bring the instance (back) to ready."""
    assert state.placement is not None and state.org_id and state.instance_id
    return ProbeWorker(
        state.org_id, state.instance_id, state.upstream_url, state.placement.model_name,
        probe_engine=state.status in (lc.UNAVAILABLE, lc.STARTUP_FAILED),
    )


def is_stale(result: WorkerObservation, now: datetime, policy: Policy) -> bool:
    if result.heartbeat_at is None:
        return True
    interval = result.heartbeat_interval_s if result.heartbeat_interval_s and result.heartbeat_interval_s > 0 else policy.watch_interval_s
    return (now - result.heartbeat_at).total_seconds() > policy.stale_after_intervals * interval


def healthy(state: InstanceState, result: WorkerObservation, now: datetime, policy: Policy) -> bool:
    """Fresh, says ready, and (when we can ask) the engine lists the model."""
    return (
        not is_stale(result, now, policy)
        and result.heartbeat_status == "ready"
        and state.upstream_url is not None
        and result.model_listed is True
    )


def serving_probed(
    state: InstanceState, command: InstanceCommand, result: EffectResult, now: datetime, policy: Policy
) -> Decision:
    if isinstance(result, EffectFailed):
        return DONE  # heartbeats unreadable (NATS trouble) says nothing about the worker: look again later
    assert isinstance(result, WorkerObservation), result
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    status = result.heartbeat_status
    if state.status in (lc.READY, lc.DRAINING):
        if is_stale(result, now, policy):
            emit(ev.InstanceUnavailable, reason_code=reasons.WORKER_HEARTBEAT_TIMEOUT,
                 message=_last_seen(result, now))
        elif status in ("unhealthy", "failed"):
            code = reasons.WORKER_FAILED if status == "failed" else reasons.WORKER_UNHEALTHY
            emit(ev.InstanceUnavailable, reason_code=code, message=(result.heartbeat_reason or status)[:200])
        elif status == "draining" and state.status == lc.READY:
            emit(ev.InstanceDraining, reason_code=reasons.WORKER_DRAINING)
        return Decision(events=tuple(emit.events))
    if state.status != lc.UNAVAILABLE:
        return DONE
    if healthy(state, result, now, policy):
        emit(ev.InstanceRecovered)
        return Decision(events=tuple(emit.events))
    worker_failed = not is_stale(result, now, policy) and status == "failed"
    since = state.unavailable_since or now
    if worker_failed or (now - since).total_seconds() >= policy.unavailable_limit_s:
        return unavailable_too_long(state, command, now, policy)
    return DONE


def _last_seen(result: WorkerObservation, now: datetime) -> str:
    if result.heartbeat_at is None:
        return "no heartbeat"
    return f"last heartbeat {(now - result.heartbeat_at).total_seconds():.1f}s ago"


def unavailable_too_long(state: InstanceState, command: InstanceCommand, now: datetime, policy: Policy) -> Decision:
    action = policy.unavailable_action
    if action == "none":
        return DONE
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if action == "reinstall" and policy.install and state.install_generation < policy.max_reinstalls:
        emit(ev.InstanceReinstallRequested, generation=state.install_generation + 1,
             reason_code=reasons.UNAVAILABLE_TOO_LONG,
             startup_deadline=now + timedelta(seconds=policy.reinstall_startup_timeout_s))
        # The handler judges the effect's result on the state after this event (the new generation).
        effect = replace(drive_install(state), generation=state.install_generation + 1)
        return Decision(events=tuple(emit.events), effect=effect)
    if action == "replace":
        emit(ev.InstanceTerminationRequested, reason_code=reasons.REPLACED,
             replaced_by=replacement_id(state))
        return Decision(
            events=tuple(emit.events),
            effect=DeleteServer(state.instance_id or "", state.zone, state.server_id if state.has_live_server else None),
            publish=(replacement(state, command, now, policy),),
        )
    # Reinstall wanted but not possible (no installer, or too many already): give up on this worker.
    emit(ev.InstanceFailed, status=lc.FAILED, reason_code=reasons.UNAVAILABLE_TOO_LONG,
         message=f"unavailable since {(state.unavailable_since or now).isoformat()}")
    return Decision(events=tuple(emit.events))


def replacement_id(state: InstanceState) -> str:
    return derived_id(state.instance_id or "", "replacement")


def replacement(state: InstanceState, command: InstanceCommand, now: datetime, policy: Policy) -> cmd.ProvisionInstance:
    """The ProvisionInstance for the instance that takes this one's place (same id on every retry)."""
    assert state.placement is not None and state.org_id
    new_id = replacement_id(state)
    return cmd.ProvisionInstance(
        id=derived_id(new_id, "provision"),
        org_id=state.org_id,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command.correlation_id,
        causation_id=command.id,
        occurred_at=now,
        instance_id=new_id,
        placement=state.placement,
        startup_timeout_s=policy.reinstall_startup_timeout_s,
    )


# --- failed instances that still hold a server --------------------------------------------


def failed_server(state: InstanceState, command: InstanceCommand, now: datetime, policy: Policy) -> Decision:
    """Release the server once the grace period is over; until then a startup_failed worker may still come up."""
    release_at = release_time(state, policy)
    if release_at is not None and now >= release_at:
        emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
        emit(ev.InstanceTerminationRequested, reason_code=reasons.FAILED_SERVER_RELEASED)
        return Decision(events=tuple(emit.events),
                        effect=DeleteServer(state.instance_id or "", state.zone, state.server_id))
    if state.status == lc.STARTUP_FAILED and state.upstream_url:
        return Decision(effect=probe(state))
    return DONE


def failed_probed(state: InstanceState, command: InstanceCommand, result: EffectResult, now: datetime,
                  policy: Policy) -> Decision:
    if state.status != lc.STARTUP_FAILED or not isinstance(result, WorkerObservation):
        return DONE
    if healthy(state, result, now, policy):
        emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
        emit(ev.InstanceRecovered)
        return Decision(events=tuple(emit.events))
    return DONE
