"""The vocabulary of decisions: what a decision may contain, the policy it reads, and how events are built.

Shared by ``decide`` (commands), ``install`` (bring-up through an installer) and ``watch``
(serving instances). Pure values and pure helpers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from contracts import codec
from contracts import commands as cmd
from contracts import events as ev
from contracts.events import Event, event_tag
from contracts.ids import derived_id

from . import lifecycle as lc
from .effects import Effect
from .state import InstanceState

ORCHESTRATOR_ACTOR = "system:orchestrator"


@dataclass(frozen=True, slots=True)
class Policy:
    """What the operator configures about the lifecycle (``bootstrap`` reads it from the environment)."""

    # A heartbeat older than this says nothing about a worker being brought up (the original trusted 30 s).
    heartbeat_fresh_s: float = 30.0
    # Bring-up installs the worker through the installer port (SSH on a real provider).
    install: bool = False
    # A serving instance's heartbeat is looked at this often.
    watch_interval_s: float = 4.0
    # Heartbeat intervals (as the worker announced them) missed before an instance is unavailable.
    stale_after_intervals: float = 3.0
    # Unavailable for this long -> ``unavailable_action``.
    unavailable_limit_s: float = 600.0
    unavailable_action: Literal["reinstall", "replace", "none"] = "reinstall"
    # A startup_failed/failed instance keeps its server this long (a late worker may still come up,
    # an operator may look), then it is terminated: a failed server must not bill forever.
    failed_server_grace_s: float = 900.0
    # Bring-up window of a reinstall (and of a replacement instance).
    reinstall_startup_timeout_s: int = 3600
    # Automatic reinstalls stop at this install generation; then the instance fails (or is replaced).
    max_reinstalls: int = 3

    def __post_init__(self) -> None:
        if self.unavailable_action not in ("reinstall", "replace", "none"):
            raise ValueError(f"unavailable_action must be reinstall, replace or none, not {self.unavailable_action!r}")
        if min(self.watch_interval_s, self.stale_after_intervals, self.heartbeat_fresh_s) <= 0:
            raise ValueError("watch_interval_s, stale_after_intervals and heartbeat_fresh_s must be > 0")


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Rejection:
    reason_code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Come back later. The handler turns this into a delay with ``backoff`` and the attempt number.

    ``kind`` picks the backoff (check timer, provider errors) or, for ``watch``, a fixed period
    of ``min_delay_s`` (a serving instance's heartbeat watch); ``min_delay_s`` is otherwise a floor (a
    provider's Retry-After); ``not_after`` is a time the next attempt must not be later than
    (the startup deadline, so the timeout fires on time).
    """

    kind: Literal["check", "provider", "watch"]
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
    # Commands to publish after the events are appended (ids derived, so a repeat is dropped).
    publish: tuple[cmd.Command, ...] = ()


DONE = Decision()

InstanceCommand = (
    cmd.ProvisionInstance | cmd.TerminateInstance | cmd.CheckInstance | cmd.ReinstallInstance | cmd.ArchiveInstance
)


def check_command_id(instance_id: str) -> str:
    """The id (and Nats-Msg-Id) of the check timer started when an instance's server exists."""
    return derived_id("check", instance_id)


# --- event construction -------------------------------------------------------------------


class Emitter:
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


def reject(state: InstanceState, command: InstanceCommand, now: datetime, code: str, message: str) -> Decision:
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


def needs_billing_start(state: InstanceState) -> bool:
    # A recorded server costs money from its creation until its deletion, whatever happens in between.
    return (
        state.server_id is not None
        and not state.billing
        and not state.billing_stopped
        and state.status in lc.LIVE
    )


def billing_started(emit: Emitter, state: InstanceState) -> None:
    placement = state.placement
    assert placement is not None
    emit(
        ev.InstanceBillingStarted,
        hourly_price_eur=placement.hourly_price_eur,
        provider_code=placement.provider_code,
        instance_type_code=placement.instance_type_code,
        model_name=placement.model_name,
    )




def retry_watch(policy: Policy, not_after: datetime | None = None) -> RetryLater:
    return RetryLater("watch", min_delay_s=policy.watch_interval_s, not_after=not_after)
