"""Command handlers: load the instance, decide, append with optimistic concurrency, perform the effect.

One entry point per concern, all taking the command and a ``Ports`` bundle, never a NATS
message or an SDK client (style.md §3.4):

- ``handle(command, ports, attempt=, keepalive=)`` runs the loop below and returns an
  ``Outcome`` (``Done``, ``Retry(delay_s)``, ``Rejected``) that the consumer maps to ack/nak.
- ``give_up(command, ports, attempts=)`` records that a command used its attempt budget.
- ``record_malformed(...)`` records a command that does not even decode.

The loop: load ``evt.<org>.instance.<id>.*`` and fold it; ``decide``; append the events, each
with ``Nats-Expected-Last-Subject-Sequence`` (a ``ConcurrencyConflict`` means someone wrote
first: re-read and decide again); perform the decision's effect through the ports (in a worker
thread, with a timeout, keeping the message alive); hand the result to ``on_effect_result``
on the state as it is *then*, and append what it says. A crash anywhere leaves either nothing
new (the redelivery redoes it; the provider lookup-by-tag finds what was created) or events
already written (the decision on the new state moves on).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import structlog

from contracts import commands as cmd
from contracts import subjects
from contracts.events import CommandRejected, event_tag
from contracts.ids import SYSTEM_ORG, derived_id

from . import metrics
from .domain import backoff, reasons
from .domain.decide import (
    DEFAULT_POLICY,
    ORCHESTRATOR_ACTOR,
    InstanceCommand,
    Policy,
    RetryLater,
    check_command_id,
    decide,
    on_effect_result,
)
from .domain.decide import give_up as decide_give_up
from .domain.effects import Effect, EffectFailed, EffectResult
from .domain.evolve import evolve, fold
from .domain.state import InstanceState
from .domain.timers import next_timer
from .perform import Keepalive, Offload, keeping_alive, perform, provider_call
from .ports import (
    Clock,
    CommandPublisher,
    Compute,
    ConcurrencyConflict,
    EngineProbe,
    EventStore,
    HeartbeatReader,
    InstallDriver,
)

log = structlog.get_logger(__name__)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    provider_timeout_s: float = 60.0  # outer timeout of one provider call (the SDK has none)
    probe_timeout_s: float = 5.0  # heartbeat read + engine probe
    install_step_timeout_s: float = 120.0  # one install step: connect, start or read progress
    keepalive_s: float = 10.0  # in_progress() while an effect runs (ack_wait is 30 s)
    max_conflicts: int = 5  # re-reads after losing an optimistic-concurrency race, per delivery
    max_effects: int = 6  # effects per delivery: a safety valve against a decide/effect loop
    max_retry_delay_s: float = 300.0
    tags_prefix: str = "inv"
    policy: Policy = DEFAULT_POLICY
    check_backoff: backoff.Backoff = backoff.CHECK
    provider_backoff: backoff.Backoff = backoff.PROVIDER
    conflict_backoff: backoff.Backoff = backoff.CONFLICT


@dataclass
class Ports:
    store: EventStore
    compute: Compute
    heartbeats: HeartbeatReader
    probe: EngineProbe
    commands: CommandPublisher
    # None: the provider starts workers itself (the mock); Policy.install must then be off.
    installer: InstallDriver | None = None
    clock: Clock = field(default_factory=SystemClock)
    offload: Offload = asyncio.to_thread
    # Bounded concurrency of provider calls (the SDK is blocking; threads are not free).
    provider_slots: int = 8
    config: HandlerConfig = field(default_factory=HandlerConfig)
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.provider_slots)
        return self._slots


# --- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Done:
    events: int = 0


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason_code: str
    message: str = ""


Outcome = Done | Retry | Rejected


class MalformedCommand(ValueError):
    """A command that decodes but can never be handled (unsafe ids in subject positions)."""


def validate(command: InstanceCommand | cmd.FleetCommand) -> None:
    try:
        subjects.token(command.org_id)
        if not isinstance(command, cmd.FLEET_COMMANDS):
            subjects.token(command.instance_id)
        subjects.token(command.id)
    except subjects.UnsafeSubjectToken as exc:
        raise MalformedCommand(str(exc)) from None


def is_check_nudge(command: InstanceCommand) -> bool:
    """A one-shot CheckInstance published on a worker status change (see heartbeat_watch).

    Nudges never keep a timer of their own: the instance's main check timer does that.
    """
    return isinstance(command, cmd.CheckInstance) and command.id in {
        nudge_command_id(command.instance_id, status) for status in NUDGE_STATUSES
    }


NUDGE_STATUSES = ("starting", "ready", "failed", "unhealthy", "draining")


def nudge_command_id(instance_id: str, worker_status: str) -> str:
    """Id (and Nats-Msg-Id) of the check published when a worker reports ``worker_status``.

    Derived from ``check:<instance>:<status>``: every replica that sees the heartbeat publishes
    the same id, the stream keeps one.
    """
    return derived_id("check", instance_id, worker_status)


def continuation_command_id(command_id: str) -> str:
    """Id of the fresh CheckInstance that takes over a timer which used its attempt budget."""
    return derived_id(command_id, "continue")


# --- the handler --------------------------------------------------------------------------


async def handle(
    command: InstanceCommand,
    ports: Ports,
    *,
    attempt: int = 1,
    keepalive: Keepalive | None = None,
) -> Outcome:
    validate(command)
    cfg = ports.config
    kind = command.__struct_config__.tag
    aggregate = subjects.aggregate_filter(command.org_id, "instance", command.instance_id)
    state: InstanceState | None = None
    last_seq = 0
    pending: tuple[Effect, EffectResult] | None = None
    conflicts = effects = appended = 0

    while True:
        if state is None:
            loaded = await ports.store.load(aggregate)
            state = fold(item.event for item in loaded)
            last_seq = loaded[-1].seq if loaded else 0
        now = ports.clock.now()
        if pending is None:
            decision = decide(state, command, now, cfg.policy)
        else:
            decision = on_effect_result(state, command, pending[0], pending[1], now, cfg.policy)

        try:
            for event in decision.events:
                last_seq = await ports.store.append(event, expected_last_seq=last_seq)
                state = evolve(state, event)
                appended += 1
                metrics.EVENTS_APPENDED.labels(event_tag(event)).inc()
        except ConcurrencyConflict:
            conflicts += 1
            metrics.CONFLICTS.labels(kind).inc()
            log.info("orchestrator.conflict", conflicts=conflicts)
            if conflicts > cfg.max_conflicts:
                return Retry(cfg.conflict_backoff.delay(conflicts, command.id), "conflict")
            state = None  # re-read; a pending effect result stays pending
            continue
        pending = None

        for extra in decision.publish:
            await ports.commands.publish(extra)
        if decision.schedule_check:
            await _schedule_check(ports, command, now)
        if decision.rejection is not None:
            log.info("orchestrator.rejected", reason_code=decision.rejection.reason_code,
                     message=decision.rejection.message)
            return Rejected(decision.rejection.reason_code, decision.rejection.message)
        if decision.effect is not None:
            effects += 1
            if effects > cfg.max_effects:
                log.error("orchestrator.too_many_effects", effect=type(decision.effect).__name__)
                return Retry(cfg.provider_backoff.delay(attempt, command.id), "too_many_effects")
            result = await perform(decision.effect, ports, keepalive)
            pending = (decision.effect, result)
            state = None  # the instance may have moved on while the effect ran: judge the result on fresh state
            continue
        if decision.retry is None and isinstance(command, cmd.CheckInstance):
            # A check is the instance's timer: it fires again while there is something to watch.
            decision = replace(decision, retry=next_timer(state, cfg.policy))
        if decision.retry is not None:
            return Retry(_retry_delay(decision.retry, cfg, attempt, command, now), decision.retry.kind)
        return Done(appended)


def _retry_delay(retry: RetryLater, cfg: HandlerConfig, attempt: int, command: InstanceCommand, now: datetime) -> float:
    if retry.kind == "watch":
        delay = retry.min_delay_s  # a fixed period, not a backoff: detection time must stay bounded
    else:
        curve = cfg.check_backoff if retry.kind == "check" else cfg.provider_backoff
        delay = max(curve.delay(attempt, command.instance_id), retry.min_delay_s)
    if retry.not_after is not None:
        # Wake up just after the deadline at the latest, so the timeout is recorded on time.
        delay = min(delay, max(0.0, (retry.not_after - now).total_seconds()) + 0.05)
    return min(delay, cfg.max_retry_delay_s)


async def _schedule_check(ports: Ports, command: InstanceCommand, now: datetime) -> None:
    check = cmd.CheckInstance(
        id=check_command_id(command.instance_id),
        org_id=command.org_id,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command.correlation_id,
        causation_id=command.id,
        occurred_at=now,
        instance_id=command.instance_id,
    )
    await ports.commands.publish(check)
    metrics.CHECKS_PUBLISHED.labels("provisioned").inc()


async def give_up(command: InstanceCommand, ports: Ports, *, attempts: int) -> Outcome:
    """Record that ``command`` used its attempt budget (a rejection, or a failed instance for provisioning)."""
    validate(command)
    aggregate = subjects.aggregate_filter(command.org_id, "instance", command.instance_id)
    for conflicts in range(ports.config.max_conflicts + 1):
        loaded = await ports.store.load(aggregate)
        state = fold(item.event for item in loaded)
        last_seq = loaded[-1].seq if loaded else 0
        decision = decide_give_up(state, command, ports.clock.now(), attempts)
        try:
            for event in decision.events:
                last_seq = await ports.store.append(event, expected_last_seq=last_seq)
                metrics.EVENTS_APPENDED.labels(event_tag(event)).inc()
        except ConcurrencyConflict:
            metrics.CONFLICTS.labels(command.__struct_config__.tag).inc()
            continue
        if decision.effect is not None:
            # Best effort: the command is being dropped, a failure here changes nothing.
            result = await perform(decision.effect, ports, None)
            if isinstance(result, EffectFailed):
                log.warning("orchestrator.give_up_cleanup_failed", error=result.message)
        return Rejected(reasons.MAX_ATTEMPTS_EXCEEDED, f"gave up after {attempts} attempts")
    return Retry(ports.config.conflict_backoff.delay(ports.config.max_conflicts, command.id), "conflict")


async def record_malformed(
    store: EventStore, *, msg_id: str | None, subject: str, stream_seq: int, message: str, now: datetime
) -> str:
    """Record an undecodable command as ``command.rejected`` on ``evt.system.command.<id>.rejected``.

    Returns the command id used: the message's Nats-Msg-Id when it is a safe token, else an id
    derived from its stream sequence (the same for every redelivery).
    """
    command_id = msg_id if msg_id and _safe_token(msg_id) else derived_id("malformed", str(stream_seq))
    command_type = subject.removeprefix("cmd.") if subject.startswith("cmd.") else "unknown"
    if not all(_safe_token(part) for part in command_type.split(".")):
        command_type = "unknown"
    event = CommandRejected(
        id=derived_id(command_id, "rejected", "malformed"),
        org_id=SYSTEM_ORG,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command_id,
        causation_id=command_id,
        occurred_at=now,
        command_id=command_id,
        command_type=command_type,
        reason_code=reasons.MALFORMED_COMMAND,
        message=message[:500],
    )
    await store.append(event, expected_last_seq=None)
    metrics.EVENTS_APPENDED.labels(event_tag(event)).inc()
    return command_id


def _safe_token(value: str) -> bool:
    try:
        subjects.token(value)
    except subjects.UnsafeSubjectToken:
        return False
    return True


__all__ = [
    "Done",
    "HandlerConfig",
    "MalformedCommand",
    "Outcome",
    "Ports",
    "Rejected",
    "Retry",
    "SystemClock",
    "continuation_command_id",
    "give_up",
    "handle",
    "is_check_nudge",
    "keeping_alive",
    "nudge_command_id",
    "perform",
    "provider_call",
    "record_malformed",
    "validate",
]
