"""Domain events: the source of truth, appended to the EVENTS stream.

Subject: ``evt.<org>.<aggregate>.<id>.<name>`` where ``<aggregate>.<name>`` is the tag.
Past tense, one fact each. Fields are only added with defaults, never renamed or removed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, Union

import msgspec

from .base import Event
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
    # Which install this phase belongs to: 0 for the first, +1 per reinstall.
    generation: int = 0


class InstanceWorkerStarting(InstanceEvent, frozen=True, kw_only=True, tag="instance.worker_starting"):
    pass


class InstanceReady(InstanceEvent, frozen=True, kw_only=True, tag="instance.ready"):
    upstream_url: str
    model_name: str


class InstanceUnavailable(InstanceEvent, frozen=True, kw_only=True, tag="instance.unavailable"):
    reason_code: str
    # What the worker said, e.g. "stalled" (its heartbeat reason), for people reading the log.
    message: str = ""


class InstanceRecovered(InstanceEvent, frozen=True, kw_only=True, tag="instance.recovered"):
    pass


class InstanceDraining(InstanceEvent, frozen=True, kw_only=True, tag="instance.draining"):
    """The worker said it is draining: it finishes in-flight requests and takes no new ones."""

    reason_code: str


class InstanceReinstallRequested(InstanceEvent, frozen=True, kw_only=True, tag="instance.reinstall_requested"):
    """The worker is installed again on the same server, as install ``generation``."""

    generation: int
    reason_code: str
    # A fresh bring-up window for the new install.
    startup_deadline: datetime


class InstanceTerminationRequested(InstanceEvent, frozen=True, kw_only=True, tag="instance.termination_requested"):
    reason_code: str
    # Set when the instance is replaced: the id of the instance provisioned in its place.
    replaced_by: str | None = None


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


# --- catalog ------------------------------------------------------------------------------


class ProviderOffer(msgspec.Struct, frozen=True, kw_only=True):
    """One server type as a provider offered it in a zone when observed."""

    name: str
    hourly_price_eur: Decimal
    gpu_count: int
    gpu_memory_gb: int | None = None
    ram_gb: int | None = None
    available: bool = True
    diskless: bool = False


class CatalogOffersObserved(Event, frozen=True, kw_only=True, tag="catalog.offers_observed"):
    """What the provider offered in one zone (types, prices, stock), read by a catalog sync.

    Subject ``evt.system.catalog.<provider>-<zone>.offers_observed``; the newest observation wins.
    """

    provider_code: str
    zone_code: str
    offers: tuple[ProviderOffer, ...] = ()

    @property
    def catalog_key(self) -> str:
        return f"{self.provider_code}-{self.zone_code}"


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
    InstanceDraining,
    InstanceReinstallRequested,
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
    InstanceDraining,
    InstanceReinstallRequested,
    InstanceTerminationRequested,
    InstanceServerDeleted,
    InstanceTerminated,
    InstanceFailed,
    InstanceArchived,
    CommandRejected,
    CatalogOffersObserved,
    IdentityAnyEvent,
]


def event_tag(event_or_type) -> str:
    cls = event_or_type if isinstance(event_or_type, type) else type(event_or_type)
    return cls.__struct_config__.tag


def split_tag(tag: str) -> tuple[str, str]:
    """``"instance.ready"`` -> ("instance", "ready")."""
    aggregate, _, name = tag.partition(".")
    return aggregate, name
