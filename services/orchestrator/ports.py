"""What the handlers need from the outside world, as Protocols, and the error vocabulary adapters speak.

Adapters translate every SDK / HTTP / NATS error into one of ``Transient``, ``RateLimited``,
``Conflict``, ``NotFound``, ``Permanent`` (style.md §3.3), so the pure core can decide what an
error means without knowing which SDK failed. "Any error means deleted" was the original's
worst bug: here only ``NotFound`` proves absence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Sequence, runtime_checkable

from contracts.catalog import Placement
from contracts.commands import Command
from contracts.events import Event
from contracts.heartbeats import Heartbeat
from services.runtime.eventstore import ConcurrencyConflict, LoadedEvent

from .domain.effects import DriveInstall, InstallObservation, ServerInfo
from .domain.resources import IpInfo, ServerTypeOffer, VolumeInfo

__all__ = [
    "Clock",
    "CommandPublisher",
    "Compute",
    "ComputeError",
    "ConcurrencyConflict",
    "Conflict",
    "EngineProbe",
    "EventStore",
    "HeartbeatReader",
    "InstallDriver",
    "IpInfo",
    "LoadedEvent",
    "NotFound",
    "ObservedHeartbeat",
    "Permanent",
    "RateLimited",
    "ServerInfo",
    "ServerTypeOffer",
    "Transient",
    "VolumeInfo",
]


# --- errors -------------------------------------------------------------------------------


class ComputeError(Exception):
    kind = "permanent"


class Transient(ComputeError):
    """Worth retrying as is: 5xx, timeouts, connection errors. The outcome of a create is unknown."""

    kind = "transient"


class RateLimited(Transient):
    kind = "rate_limited"

    def __init__(self, message: str = "rate limited", retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Conflict(ComputeError):
    """The resource is in a state that forbids the operation now (e.g. delete while running)."""

    kind = "conflict"


class NotFound(ComputeError):
    """The provider answered that the resource does not exist. The only proof of absence."""

    kind = "not_found"


class Permanent(ComputeError):
    """Retrying will not help: bad request, quota, unknown type, credentials."""

    kind = "permanent"


# --- ports --------------------------------------------------------------------------------


@runtime_checkable
class Compute(Protocol):
    """A GPU provider, shaped for Scaleway. Synchronous on purpose (the Scaleway SDK is): the
    handlers call it in worker threads with an outer timeout and bounded concurrency.

    Every server is tagged with the instance id, and ``find_servers_by_tag`` is called before
    every create, so a crash between "created" and "event appended" never makes a second one.
    """

    def find_servers_by_tag(self, instance_id: str, zone: str) -> list[ServerInfo]: ...  # oldest first

    def create_server(
        self, instance_id: str, org_id: str, placement: Placement, user_data: str | None, tags: Sequence[str]
    ) -> ServerInfo: ...

    def get_server(self, server_id: str, zone: str) -> ServerInfo: ...  # NotFound when gone

    def delete_server(self, server_id: str, zone: str) -> None: ...  # NotFound when already gone

    def list_servers(self, zone: str) -> list[ServerInfo]: ...

    def power_on(self, server_id: str, zone: str) -> None: ...  # NotFound when gone; no-op unless stopped

    # --- fleet upkeep: leaked volumes and IPs, catalog prices and stock, SSH host-key pins ---

    def list_volumes(self, zone: str) -> list[VolumeInfo]: ...  # every block volume of the project

    def delete_volume(self, volume_id: str, zone: str) -> None: ...  # NotFound when gone; Conflict in use

    def list_ips(self, zone: str) -> list[IpInfo]: ...  # every reserved public IP of the project

    def delete_ip(self, ip_id: str, zone: str) -> None: ...  # NotFound when gone

    def list_server_types(self, zone: str) -> list[ServerTypeOffer]: ...  # prices from the provider, now

    def host_key_fingerprints(self, server_id: str, zone: str) -> tuple[str, ...]:
        """The server's SSH host-key fingerprints (``SHA256:...``) as published through the
        provider's authenticated API; () while not published yet; NotFound when the server is gone."""
        ...


class EventStore(Protocol):
    async def load(self, aggregate_filter: str, *, from_seq: int = 1) -> list[LoadedEvent]: ...

    async def append(self, event: Event, *, expected_last_seq: int | None) -> int: ...  # ConcurrencyConflict


class Clock(Protocol):
    def now(self) -> datetime: ...  # timezone-aware UTC


@dataclass(frozen=True, slots=True)
class ObservedHeartbeat:
    heartbeat: Heartbeat
    # When the stream stored it (server time), not what the worker claims.
    received_at: datetime


class HeartbeatReader(Protocol):
    async def last(self, org_id: str, instance_id: str) -> ObservedHeartbeat | None: ...


class EngineProbe(Protocol):
    # False on any failure. ``instance_id``: whose engine it is (each engine requires its own key).
    async def lists_model(self, upstream_url: str, model_name: str, instance_id: str) -> bool: ...


class InstallDriver(Protocol):
    """Moves a worker install forward on a server and says where it stands (see domain/install.py).

    Idempotent per generation; raises the error vocabulary above (Permanent: e.g. the server's
    SSH host key does not match what the provider published).
    """

    async def drive(self, effect: DriveInstall) -> InstallObservation: ...


class CommandPublisher(Protocol):
    async def publish(self, command: Command) -> None:
        """Publish to COMMANDS with ``Nats-Msg-Id`` = the command id (duplicates are dropped)."""
        ...
