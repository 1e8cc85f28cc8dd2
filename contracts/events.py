"""Domain events: the source of truth, appended to the EVENTS stream.

Subject: ``evt.<org>.<aggregate>.<id>.<name>`` where ``<aggregate>.<name>`` is the tag.
Past tense, one fact each. Fields are only added with defaults, never renamed or removed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, Union

from .base import Envelope, Event
from .catalog import Placement
from .identity import *  # noqa: F403  (identity events are part of this vocabulary)
from .identity import IdentityAnyEvent

FailureStatus = Literal["provisioning_failed", "startup_failed", "failed"]




# --- instance lifecycle -------------------------------------------------------------------


class InstanceEvent(Event, frozen=True, kw_only=True):
    instance_id: str


class InstanceRequested(InstanceEvent, frozen=True, kw_only=True, tag="instance.requested"):
    placement: Placement
    startup_deadline: datetime


class InstanceServerCreated(InstanceEvent, frozen=True, kw_only=True, tag="instance.server_created"):
    provider_server_id: str
    ip_address: str | None = None
    # Where the proxy reaches the engine. Set by the orchestrator from provider facts, never by a worker.
    upstream_url: str | None = None
    agent_url: str | None = None


class InstanceBillingStarted(InstanceEvent, frozen=True, kw_only=True, tag="instance.billing_started"):
    hourly_price_eur: Decimal
    provider_code: str
    instance_type_code: str
    model_name: str


class InstanceBillingStopped(InstanceEvent, frozen=True, kw_only=True, tag="instance.billing_stopped"):
    pass


class InstanceInstallPhaseReached(InstanceEvent, frozen=True, kw_only=True, tag="instance.install_phase_reached"):
    phase: str


class InstanceWorkerStarting(InstanceEvent, frozen=True, kw_only=True, tag="instance.worker_starting"):
    pass


class InstanceReady(InstanceEvent, frozen=True, kw_only=True, tag="instance.ready"):
    upstream_url: str
    model_name: str


class InstanceUnavailable(InstanceEvent, frozen=True, kw_only=True, tag="instance.unavailable"):
    reason_code: str


class InstanceRecovered(InstanceEvent, frozen=True, kw_only=True, tag="instance.recovered"):
    pass


class InstanceTerminationRequested(InstanceEvent, frozen=True, kw_only=True, tag="instance.termination_requested"):
    reason_code: str


class InstanceServerDeleted(InstanceEvent, frozen=True, kw_only=True, tag="instance.server_deleted"):
    provider_server_id: str


class InstanceTerminated(InstanceEvent, frozen=True, kw_only=True, tag="instance.terminated"):
    reason_code: str


class InstanceFailed(InstanceEvent, frozen=True, kw_only=True, tag="instance.failed"):
    status: FailureStatus
    reason_code: str
    message: str = ""


class InstanceArchived(InstanceEvent, frozen=True, kw_only=True, tag="instance.archived"):
    pass


class CommandRejected(Event, frozen=True, kw_only=True, tag="command.rejected"):
    """A command that can never succeed; acknowledged, not retried. Visible in the action log."""

    command_id: str
    command_type: str
    reason_code: str
    message: str = ""
    instance_id: str | None = None


InstanceAnyEvent = Union[
    InstanceRequested,
    InstanceServerCreated,
    InstanceBillingStarted,
    InstanceBillingStopped,
    InstanceInstallPhaseReached,
    InstanceWorkerStarting,
    InstanceReady,
    InstanceUnavailable,
    InstanceRecovered,
    InstanceTerminationRequested,
    InstanceServerDeleted,
    InstanceTerminated,
    InstanceFailed,
    InstanceArchived,
]

AnyEvent = Union[
    InstanceRequested,
    InstanceServerCreated,
    InstanceBillingStarted,
    InstanceBillingStopped,
    InstanceInstallPhaseReached,
    InstanceWorkerStarting,
    InstanceReady,
    InstanceUnavailable,
    InstanceRecovered,
    InstanceTerminationRequested,
    InstanceServerDeleted,
    InstanceTerminated,
    InstanceFailed,
    InstanceArchived,
    CommandRejected,
    IdentityAnyEvent,
]


def event_tag(event_or_type) -> str:
    cls = event_or_type if isinstance(event_or_type, type) else type(event_or_type)
    return cls.__struct_config__.tag


def split_tag(tag: str) -> tuple[str, str]:
    """``"instance.ready"`` -> ("instance", "ready")."""
    aggregate, _, name = tag.partition(".")
    return aggregate, name
