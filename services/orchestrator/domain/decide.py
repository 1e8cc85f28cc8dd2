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

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from contracts import codec
from contracts import commands as cmd
from contracts import events as ev
from contracts.events import Event, event_tag
from contracts.ids import derived_id

from . import lifecycle as lc
from . import reasons
from .effects import (
    DeleteServer,
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

ORCHESTRATOR_ACTOR = "system:orchestrator"


@dataclass(frozen=True, slots=True)
class Policy:
    # A heartbeat older than this says nothing about the worker (the original trusted 30 s).
    heartbeat_fresh_s: float = 30.0


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Rejection:
    reason_code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Come back later. The handler turns this into a delay with ``backoff`` and the attempt number.

    ``kind`` picks the backoff (check timer, provider errors); ``min_delay_s`` is a floor (a
    provider's Retry-After); ``not_after`` is a time the next attempt must not be later than
    (the startup deadline, so the timeout fires on time).
    """

    kind: Literal["check", "provider"]
    min_delay_s: float = 0.0
    not_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[Event, ...] = ()
    effect: Effect | None = None
    retry: RetryLater | None = None
    rejection: Rejection | None = None
    # Publish the instance's CheckInstance timer (idempotent: its id derives from the instance id).
    schedule_check: bool = False


DONE = Decision()

InstanceCommand = (
    cmd.ProvisionInstance | cmd.TerminateInstance | cmd.CheckInstance | cmd.ReinstallInstance | cmd.ArchiveInstance
)


def check_command_id(instance_id: str) -> str:
    """The id (and Nats-Msg-Id) of the check timer started when an instance's server exists."""
    return derived_id("check", instance_id)


# --- event construction -------------------------------------------------------------------


class _Emitter:
    """Builds events caused by ``command``; ids derive from the command, the state version, the
    position and the content.

    The same decision on the same state at the same time yields the same ids, so a publish
    repeated after an ambiguous timeout is dropped by the stream's duplicate window.
    """

    def __init__(self, state: InstanceState, command: InstanceCommand, now: datetime, actor: str):
        self._state, self._command, self._now, self._actor = state, command, now, actor
        self.events: list[Event] = []

    def __call__(self, cls: type[Event], **fields) -> Event:
        tag = event_tag(cls)
        draft = cls(
            id="",
            org_id=self._command.org_id,
            actor=self._actor,
            correlation_id=self._command.correlation_id,
            causation_id=self._command.id,
            occurred_at=self._now,
            instance_id=self._command.instance_id,
            **fields,
        )
        # The content is part of the id: two replicas deciding *different* facts on the same state
        # (two servers created for one instance) must not have the second silently dropped as a
        # duplicate; it must hit the optimistic-concurrency check instead.
        digest = hashlib.blake2b(codec.encode(draft), digest_size=12).hexdigest()
        event = msgspec.structs.replace(
            draft, id=derived_id(self._command.id, str(self._state.version), str(len(self.events)), tag, digest)
        )
        self.events.append(event)
        return event


def _reject(state: InstanceState, command: InstanceCommand, now: datetime, code: str, message: str) -> Decision:
    rejected = ev.CommandRejected(
        id=derived_id(command.id, "rejected"),
        org_id=command.org_id,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command.correlation_id,
        causation_id=command.id,
        occurred_at=now,
        command_id=command.id,
        command_type=command.__struct_config__.tag,
        reason_code=code,
        message=message,
        instance_id=command.instance_id,
    )
    return Decision(events=(rejected,), rejection=Rejection(code, message))


def _needs_billing_start(state: InstanceState) -> bool:
    # A recorded server costs money from its creation until its deletion, whatever happens in between.
    return (
        state.server_id is not None
        and not state.billing
        and not state.billing_stopped
        and state.status in lc.LIVE
    )


def _billing_started(emit: _Emitter, state: InstanceState) -> None:
    placement = state.placement
    assert placement is not None
    emit(
        ev.InstanceBillingStarted,
        hourly_price_eur=placement.hourly_price_eur,
        provider_code=placement.provider_code,
        instance_type_code=placement.instance_type_code,
        model_name=placement.model_name,
    )


# --- decide -------------------------------------------------------------------------------


def decide(state: InstanceState, command: InstanceCommand, now: datetime, policy: Policy = DEFAULT_POLICY) -> Decision:
    if command.id in state.rejected:
        # Rejected before: the rejection is recorded; say so again, append nothing.
        return Decision(rejection=Rejection(state.rejected[command.id], "already rejected"))
    if isinstance(command, cmd.ProvisionInstance):
        return _provision(state, command, now)
    if not state.exists:
        return _reject(state, command, now, reasons.UNKNOWN_INSTANCE, f"no instance {command.instance_id}")
    if isinstance(command, cmd.TerminateInstance):
        return _terminate(state, command, now)
    if isinstance(command, cmd.CheckInstance):
        return _check(state, command, now)
    if isinstance(command, cmd.ArchiveInstance):
        return _archive(state, command, now)
    if isinstance(command, cmd.ReinstallInstance):
        return _reject(state, command, now, reasons.NOT_SUPPORTED, "reinstall is not supported yet")
    raise TypeError(f"not an instance command: {command!r}")


def _provision(state: InstanceState, command: cmd.ProvisionInstance, now: datetime) -> Decision:
    if not state.exists:
        if not command.placement.model_name.strip():
            return _reject(state, command, now, reasons.MISSING_MODEL, "placement.model_name is empty")
        if command.startup_timeout_s <= 0:
            return _reject(state, command, now, reasons.INVALID_STARTUP_TIMEOUT, "startup_timeout_s must be > 0")
        emit = _Emitter(state, command, now, command.actor)
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
        return _reject(
            state, command, now, reasons.INSTANCE_ALREADY_EXISTS, f"instance {command.instance_id} already exists"
        )
    # Our own provisioning, redelivered: resume from what the log says.
    if state.status == lc.PROVISIONING:
        return Decision(effect=EnsureServer(command.instance_id, command.org_id, command.placement))
    if state.server_id is None:
        # The instance ended (terminated, failed) before a server was recorded; a create in flight
        # at that moment may still have landed. Sweep by tag, record nothing.
        return Decision(effect=DeleteServer(command.instance_id, state.zone, compensating=True))
    emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if _needs_billing_start(state):
        _billing_started(emit, state)
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
    emit = _Emitter(state, command, now, command.actor)
    if _needs_billing_start(state):
        _billing_started(emit, state)
    if state.status != lc.TERMINATING:
        emit(ev.InstanceTerminationRequested, reason_code=reasons.termination_reason(command.reason))
    server_id = state.server_id if state.has_live_server else None
    return Decision(events=tuple(emit.events), effect=DeleteServer(command.instance_id, state.zone, server_id))


def _check(state: InstanceState, command: cmd.CheckInstance, now: datetime) -> Decision:
    if not state.bringing_up:
        return DONE  # settled (ready, failed, terminating, ...): the timer stops
    deadline = state.startup_deadline
    if deadline is not None and now >= deadline:
        emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
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
    assert state.placement is not None
    return Decision(effect=ProbeWorker(command.org_id, command.instance_id, state.upstream_url, state.placement.model_name))


def _archive(state: InstanceState, command: cmd.ArchiveInstance, now: datetime) -> Decision:
    if state.status == lc.ARCHIVED:
        return DONE
    if state.status != lc.TERMINATED:
        return _reject(state, command, now, reasons.INVALID_TRANSITION, f"cannot archive a {state.status} instance")
    emit = _Emitter(state, command, now, command.actor)
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
            emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
            emit(
                ev.InstanceFailed,
                status=lc.PROVISIONING_FAILED,
                reason_code=reasons.PROVIDER_CREATE_FAILED,
                message=result.message[:500],
            )
            return Decision(events=tuple(emit.events))
        return _retry_provider(result)
    assert isinstance(result, ServerInfo), result
    emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if state.status == lc.PROVISIONING:
        emit(
            ev.InstanceServerCreated,
            provider_server_id=result.server_id,
            ip_address=result.ip_address,
            upstream_url=result.upstream_url,
            agent_url=result.agent_url,
        )
        _billing_started(emit, state)
        # Then make sure it is the only one: another delivery of this command running at the same
        # time (a stalled replica) may have created one too before we recorded ours.
        sweep = DeleteServer(effect.instance_id, result.zone, keep=result.server_id, compensating=True)
        return Decision(events=tuple(emit.events), effect=sweep, schedule_check=True)
    if state.server_id == result.server_id:
        # Recorded already (by us before a conflict, or by a racing replica): fill what is missing.
        if _needs_billing_start(state):
            _billing_started(emit, state)
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
    emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
    if state.has_live_server:
        emit(ev.InstanceServerDeleted, provider_server_id=state.server_id)
    if state.billing:
        emit(ev.InstanceBillingStopped)
    emit(ev.InstanceTerminated, reason_code=state.termination_reason or reasons.USER_REQUEST)
    return Decision(events=tuple(emit.events))


def _worker_probed(
    state: InstanceState, command: InstanceCommand, result: EffectResult, now: datetime, policy: Policy
) -> Decision:
    if state.status not in (lc.BOOTING, lc.INSTALLING, lc.STARTING):
        return DONE  # settled meanwhile
    again = Decision(retry=RetryLater("check", not_after=state.startup_deadline))
    if isinstance(result, EffectFailed):
        return again
    assert isinstance(result, WorkerObservation), result
    fresh = (
        result.heartbeat_at is not None
        and (now - result.heartbeat_at).total_seconds() <= policy.heartbeat_fresh_s
    )
    if not fresh:
        return again
    emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
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
        emit = _Emitter(state, command, now, ORCHESTRATOR_ACTOR)
        emit(ev.InstanceFailed, status=lc.PROVISIONING_FAILED, reason_code=reasons.PROVIDER_CREATE_FAILED,
             message=message)
        # A create may have landed unseen: sweep by tag (best effort; the janitor covers the rest).
        return Decision(
            events=tuple(emit.events),
            effect=DeleteServer(command.instance_id, state.zone, compensating=True),
        )
    return _reject(state, command, now, reasons.MAX_ATTEMPTS_EXCEEDED, message)
