"""The decisions: pure functions from (state, command or effect result, now) to a ``Decision``.

A decision is what to append (events), at most one effect to perform next, whether to come
back later (``retry``), or a rejection. Nothing here reads a clock, a network or a random
source: the handler passes ``now`` in and performs the effect.

Every decision is a function of the *current* state, never of "where the handler was", so a
redelivered command resumes where the log says the instance is: provisioning that crashed
after the server was created finds it by tag; termination that crashed after the delete
finds nothing and records the end.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts import commands as cmd
from contracts import events as ev

from . import install, reasons, watch
from . import lifecycle as lc
from .decision import (
    DEFAULT_POLICY,
    DONE,
    ORCHESTRATOR_ACTOR,
    Decision,
    Emitter,
    InstanceCommand,
    Policy,
    Rejection,
    RetryLater,
    billing_started,
    check_command_id,
    needs_billing_start,
    reject,
)
from .effects import (
    DeleteServer,
    DriveInstall,
    Effect,
    EffectFailed,
    EffectResult,
    EnsureServer,
    ProbeWorker,
    ServerGone,
    ServerInfo,
    ServerStillPresent,
    WorkerObservation,
)
from .state import InstanceState

__all__ = [
    "DEFAULT_POLICY",
    "ORCHESTRATOR_ACTOR",
    "Decision",
    "InstanceCommand",
    "Policy",
    "RetryLater",
    "check_command_id",
    "decide",
    "give_up",
    "on_effect_result",
]

# --- decide -------------------------------------------------------------------------------


def decide(state: InstanceState, command: InstanceCommand, now: datetime, policy: Policy = DEFAULT_POLICY) -> Decision:
    if command.id in state.rejected:
        # Rejected before: the rejection is recorded; say so again, append nothing.
        return Decision(rejection=Rejection(state.rejected[command.id], "already rejected"))
    if isinstance(command, cmd.ProvisionInstance):
        return _provision(state, command, now)
    if not state.exists:
        return reject(state, command, now, reasons.UNKNOWN_INSTANCE, f"no instance {command.instance_id}")
    if isinstance(command, cmd.TerminateInstance):
        return _terminate(state, command, now)
    if isinstance(command, cmd.CheckInstance):
        return _check(state, command, now, policy)
    if isinstance(command, cmd.ArchiveInstance):
        return _archive(state, command, now)
    if isinstance(command, cmd.ReinstallInstance):
        return _reinstall(state, command, now, policy)
    raise TypeError(f"not an instance command: {command!r}")


def _provision(state: InstanceState, command: cmd.ProvisionInstance, now: datetime) -> Decision:
    if not state.exists:
        if not command.placement.model_name.strip():
            return reject(state, command, now, reasons.MISSING_MODEL, "placement.model_name is empty")
        if command.startup_timeout_s <= 0:
            return reject(state, command, now, reasons.INVALID_STARTUP_TIMEOUT, "startup_timeout_s must be > 0")
        emit = Emitter(state, command, now, command.actor)
        emit(
            ev.InstanceRequested,
            placement=command.placement,
            startup_deadline=now + timedelta(seconds=command.startup_timeout_s),
        )
        return Decision(
            events=tuple(emit.events),
            effect=EnsureServer(command.instance_id, command.org_id, command.placement),
        )
    if state.requested_by != command.id:
        return reject(
            state, command, now, reasons.INSTANCE_ALREADY_EXISTS, f"instance {command.instance_id} already exists"
        )
    # Our own provisioning, redelivered: resume from what the log says.
    if state.status == lc.PROVISIONING:
        return Decision(effect=EnsureServer(command.instance_id, command.org_id, command.placement))
    if state.server_id is None:
        # The instance ended (terminated, failed) before a server was recorded; a create in flight
        # at that moment may still have landed. Sweep by tag, record nothing.
        return Decision(effect=DeleteServer(command.instance_id, state.zone, compensating=True))
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if needs_billing_start(state):
        billing_started(emit, state)
    # A redelivery: if this command was also running elsewhere at the same time (a stalled
    # replica), that delivery may have created a second server before losing the race to record
    # it. Delete every tagged server but the recorded one.
    sweep = None
    if state.has_live_server:
        sweep = DeleteServer(command.instance_id, state.zone, keep=state.server_id, compensating=True)
    return Decision(events=tuple(emit.events), effect=sweep, schedule_check=state.bringing_up)


def _terminate(state: InstanceState, command: cmd.TerminateInstance, now: datetime) -> Decision:
    if state.status in lc.TERMINAL:
        return DONE  # already terminated: terminating twice is not an error
    emit = Emitter(state, command, now, command.actor)
    if needs_billing_start(state):
        billing_started(emit, state)
    if state.status != lc.TERMINATING:
        emit(ev.InstanceTerminationRequested, reason_code=reasons.termination_reason(command.reason))
    server_id = state.server_id if state.has_live_server else None
    return Decision(events=tuple(emit.events), effect=DeleteServer(command.instance_id, state.zone, server_id))


def _check(state: InstanceState, command: cmd.CheckInstance, now: datetime, policy: Policy) -> Decision:
    """One firing of the instance's timer. Whether it fires again is ``timers.next_timer``'s call."""
    if state.bringing_up:
        return _check_bring_up(state, command, now, policy)
    if state.status in lc.SERVING:
        return Decision(effect=watch.probe(state))
    if state.status in (lc.STARTUP_FAILED, lc.FAILED) and state.has_live_server:
        return watch.failed_server(state, command, now, policy)
    if state.status == lc.TERMINATING:
        # Confirm the deletion with the provider, like the terminate command does; a replacement
        # decided with the termination is (re)published here, so a crash cannot lose it.
        publish = (watch.replacement(state, command, now, policy),) if state.replaced_by else ()
        server_id = state.server_id if state.has_live_server else None
        return Decision(effect=DeleteServer(command.instance_id, state.zone, server_id), publish=publish)
    return DONE


def _check_bring_up(state: InstanceState, command: cmd.CheckInstance, now: datetime, policy: Policy) -> Decision:
    deadline = state.startup_deadline
    if deadline is not None and now >= deadline:
        emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
        target = lc.PROVISIONING_FAILED if state.status == lc.PROVISIONING else lc.STARTUP_FAILED
        emit(
            ev.InstanceFailed,
            status=target,
            reason_code=reasons.STARTUP_TIMEOUT,
            message=f"not ready by {deadline.isoformat()} (status {state.status})",
        )
        return Decision(events=tuple(emit.events))
    if state.status == lc.PROVISIONING:
        return Decision(retry=RetryLater("check", not_after=deadline))  # the server is still being created
    if policy.install and state.status in (lc.BOOTING, lc.INSTALLING) and not install.install_done(state):
        return Decision(effect=install.drive_install(state))
    assert state.placement is not None
    return Decision(effect=ProbeWorker(command.org_id, command.instance_id, state.upstream_url, state.placement.model_name))


def _reinstall(state: InstanceState, command: cmd.ReinstallInstance, now: datetime, policy: Policy) -> Decision:
    if command.id in state.handled:
        return DONE  # this reinstall was recorded: a redelivery changes nothing
    if not policy.install:
        return reject(state, command, now, reasons.NOT_SUPPORTED,
                      "this provider starts workers itself; reinstall needs an installer")
    allowed, _ = lc.TRANSITIONS["instance.reinstall_requested"]
    if state.status not in allowed or not state.has_live_server:
        return reject(state, command, now, reasons.INVALID_TRANSITION,
                      f"cannot reinstall a {state.status} instance" + ("" if state.has_live_server else " without a server"))
    emit = Emitter(state, command, now, command.actor)
    emit(ev.InstanceReinstallRequested, generation=state.install_generation + 1,
         reason_code=reasons.USER_REQUEST,
         startup_deadline=now + timedelta(seconds=policy.reinstall_startup_timeout_s))
    # The instance's timer drives the install; make sure one runs (a no-op when it does).
    return Decision(events=tuple(emit.events), schedule_check=True)


def _archive(state: InstanceState, command: cmd.ArchiveInstance, now: datetime) -> Decision:
    if state.status == lc.ARCHIVED:
        return DONE
    if state.status != lc.TERMINATED:
        return reject(state, command, now, reasons.INVALID_TRANSITION, f"cannot archive a {state.status} instance")
    emit = Emitter(state, command, now, command.actor)
    emit(ev.InstanceArchived)
    return Decision(events=tuple(emit.events))


# --- effect results -----------------------------------------------------------------------


def on_effect_result(
    state: InstanceState,
    command: InstanceCommand,
    effect: Effect,
    result: EffectResult,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Decision:
    """What the result of ``effect`` means for the instance *as it is now* (it may have moved on meanwhile)."""
    if isinstance(effect, EnsureServer):
        return _server_ensured(state, command, effect, result, now)
    if isinstance(effect, DeleteServer):
        return _server_deleted(state, command, effect, result, now)
    if isinstance(effect, ProbeWorker):
        return _worker_probed(state, command, result, now, policy)
    if isinstance(effect, DriveInstall):
        return install.install_driven(state, command, effect, result, now)
    raise TypeError(f"unknown effect {effect!r}")


def _retry_provider(failure: EffectFailed) -> Decision:
    return Decision(retry=RetryLater("provider", min_delay_s=failure.retry_after_s or 0.0))


def _server_ensured(
    state: InstanceState, command: InstanceCommand, effect: EnsureServer, result: EffectResult, now: datetime
) -> Decision:
    if isinstance(result, EffectFailed):
        if state.status != lc.PROVISIONING:
            # The instance moved on while we were creating (terminated, failed, or another delivery
            # recorded its own server), and our create's outcome is unknown: it may have landed.
            # Sweep by tag, keep the recorded server if any, record nothing.
            keep = state.server_id if state.has_live_server else None
            return Decision(effect=DeleteServer(effect.instance_id, state.zone, keep=keep, compensating=True))
        if result.kind in ("permanent", "not_found"):
            emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
            emit(
                ev.InstanceFailed,
                status=lc.PROVISIONING_FAILED,
                reason_code=reasons.PROVIDER_CREATE_FAILED,
                message=result.message[:500],
            )
            return Decision(events=tuple(emit.events))
        return _retry_provider(result)
    assert isinstance(result, ServerInfo), result
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if state.status == lc.PROVISIONING:
        emit(
            ev.InstanceServerCreated,
            provider_server_id=result.server_id,
            ip_address=result.ip_address,
            upstream_url=result.upstream_url,
            agent_url=result.agent_url,
        )
        billing_started(emit, state)
        # Then make sure it is the only one: another delivery of this command running at the same
        # time (a stalled replica) may have created one too before we recorded ours.
        sweep = DeleteServer(effect.instance_id, result.zone, keep=result.server_id, compensating=True)
        return Decision(events=tuple(emit.events), effect=sweep, schedule_check=True)
    if state.server_id == result.server_id:
        # Recorded already (by us before a conflict, or by a racing replica): fill what is missing.
        if needs_billing_start(state):
            billing_started(emit, state)
        return Decision(events=tuple(emit.events), schedule_check=state.bringing_up)
    # The log moved on without this server (terminated or failed meanwhile, or another replica
    # recorded a different one): it is an orphan we just made. Delete it, record nothing.
    return Decision(
        effect=DeleteServer(effect.instance_id, result.zone, result.server_id, sweep=False, compensating=True)
    )


def _server_deleted(
    state: InstanceState, command: InstanceCommand, effect: DeleteServer, result: EffectResult, now: datetime
) -> Decision:
    if isinstance(result, EffectFailed):
        return _retry_provider(result)  # only a NotFound proves absence: keep trying
    if isinstance(result, ServerStillPresent):
        return Decision(retry=RetryLater("provider"))
    assert isinstance(result, ServerGone), result
    if effect.compensating or state.status != lc.TERMINATING:
        return DONE
    if state.has_live_server and state.server_id not in result.confirmed_absent:
        return Decision(retry=RetryLater("provider"))
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if state.has_live_server:
        emit(ev.InstanceServerDeleted, provider_server_id=state.server_id)
    if state.billing:
        emit(ev.InstanceBillingStopped)
    emit(ev.InstanceTerminated, reason_code=state.termination_reason or reasons.USER_REQUEST)
    return Decision(events=tuple(emit.events))


def _worker_probed(
    state: InstanceState, command: InstanceCommand, result: EffectResult, now: datetime, policy: Policy
) -> Decision:
    if state.status in lc.SERVING:
        return watch.serving_probed(state, command, result, now, policy)
    if state.status == lc.STARTUP_FAILED:
        return watch.failed_probed(state, command, result, now, policy)
    if state.status not in (lc.BOOTING, lc.INSTALLING, lc.STARTING):
        return DONE  # settled meanwhile
    again = Decision(retry=RetryLater("check", not_after=state.startup_deadline))
    if isinstance(result, EffectFailed) or (policy.install and not install.install_done(state)):
        return again  # nothing to learn, or a probe from before a reinstall: the old worker says nothing
    assert isinstance(result, WorkerObservation), result
    fresh = (
        result.heartbeat_at is not None
        and (now - result.heartbeat_at).total_seconds() <= policy.heartbeat_fresh_s
    )
    if not fresh:
        return again
    emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    status = result.heartbeat_status
    if status == "failed":
        emit(
            ev.InstanceFailed,
            status=lc.STARTUP_FAILED,
            reason_code=reasons.WORKER_FAILED,
            message=(result.heartbeat_reason or "the worker reported failed")[:500],
        )
        return Decision(events=tuple(emit.events))
    if status == "ready" and result.model_listed and state.upstream_url:
        assert state.placement is not None
        emit(ev.InstanceReady, upstream_url=state.upstream_url, model_name=state.placement.model_name)
        return Decision(events=tuple(emit.events))
    if status in ("starting", "ready") and state.status in (lc.BOOTING, lc.INSTALLING):
        emit(ev.InstanceWorkerStarting)
    return Decision(events=tuple(emit.events), retry=again.retry)


# --- giving up ----------------------------------------------------------------------------


def give_up(state: InstanceState, command: InstanceCommand, now: datetime, attempts: int) -> Decision:
    """The command used its attempt budget. Record why, once; for provisioning, fail the instance."""
    if command.id in state.rejected:
        return DONE
    message = f"gave up after {attempts} attempts"
    if (
        isinstance(command, cmd.ProvisionInstance)
        and state.status == lc.PROVISIONING
        and state.requested_by == command.id
    ):
        emit = Emitter(state, command, now, ORCHESTRATOR_ACTOR)
        emit(ev.InstanceFailed, status=lc.PROVISIONING_FAILED, reason_code=reasons.PROVIDER_CREATE_FAILED,
             message=message)
        # A create may have landed unseen: sweep by tag (best effort; the janitor covers the rest).
        return Decision(
            events=tuple(emit.events),
            effect=DeleteServer(command.instance_id, state.zone, compensating=True),
        )
    return reject(state, command, now, reasons.MAX_ATTEMPTS_EXCEEDED, message)
