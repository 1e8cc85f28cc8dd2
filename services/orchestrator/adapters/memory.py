"""In-memory adapters for tests and for reasoning: same semantics as the real ones, no I/O.

- ``InMemoryEventStore``: per-aggregate optimistic concurrency and ``Nats-Msg-Id`` dedupe the
  way the EVENTS stream does it (nats-server 2.15 checks the expected last subject sequence
  first: a stale duplicate is a conflict; a duplicate without the check returns the original
  sequence).
- ``FakeCompute``: a provider ledger with tags, classified errors and injectable faults,
  including the ambiguous create (the server exists but the caller sees an error).
- ``ManualClock``, ``StaticHeartbeats``, ``StaticProbe``, ``RecordingPublisher``, ``inline``.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from contracts import codec
from contracts.catalog import Placement
from contracts.commands import Command
from contracts.events import Event, event_tag
from contracts.heartbeats import Heartbeat
from services.runtime.eventstore import ConcurrencyConflict, LoadedEvent

from ..domain.effects import ServerInfo
from ..domain.resources import IpInfo, ServerTypeOffer, VolumeInfo
from ..ports import NotFound, ObservedHeartbeat, Transient


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


class InjectedCrash(RuntimeError):
    """Raised by a fake to simulate the process dying at that point."""


class InMemoryEventStore:
    def __init__(self) -> None:
        self.messages: list[LoadedEvent] = []
        self._by_id: dict[str, int] = {}
        self.crash_before_next_append = 0  # how many upcoming appends die before being stored
        self.crash_before_tags: list[str] = []  # the next append of each listed event type dies (once per entry)

    async def load(self, aggregate_filter: str, *, from_seq: int = 1) -> list[LoadedEvent]:
        return [m for m in self.messages if m.seq >= from_seq and subject_matches(aggregate_filter, m.subject)]

    async def append(self, event: Event, *, expected_last_seq: int | None) -> int:
        if self.crash_before_next_append > 0:
            self.crash_before_next_append -= 1
            raise InjectedCrash("append lost")
        tag = event_tag(event)
        if tag in self.crash_before_tags:
            self.crash_before_tags.remove(tag)
            raise InjectedCrash(f"crashed before appending {tag}")
        if expected_last_seq is not None:
            scope = codec.aggregate_filter_for(event)
            last = max((m.seq for m in self.messages if subject_matches(scope, m.subject)), default=0)
            if last != expected_last_seq:
                raise ConcurrencyConflict(f"wrong last sequence: {last} (expected {expected_last_seq})")
        if event.id in self._by_id:
            return self._by_id[event.id]
        seq = len(self.messages) + 1
        self.messages.append(LoadedEvent(seq, codec.event_subject_for(event), event))
        self._by_id[event.id] = seq
        return seq

    def events(self, aggregate_filter: str = "evt.>") -> list[Event]:
        return [m.event for m in self.messages if subject_matches(aggregate_filter, m.subject)]


@dataclass
class FakeServer:
    info: ServerInfo
    instance_id: str
    deleted: bool = False


@dataclass
class FakeCompute:
    """A synchronous provider ledger. ``faults[op]`` is a list of exceptions raised by the next calls of ``op``."""

    upstream_url_for: Callable[[str], str | None] = lambda instance_id: None
    servers: dict[str, FakeServer] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    faults: dict[str, list[Exception]] = field(default_factory=dict)
    # Creates that succeed at the provider but report a Transient error to the caller.
    ambiguous_creates: int = 0
    # Fleet upkeep state, seeded by tests: volume id -> VolumeInfo, ip id -> IpInfo, zone -> offers,
    # server id -> published host-key fingerprints.
    volumes: dict[str, VolumeInfo] = field(default_factory=dict)
    ips: dict[str, IpInfo] = field(default_factory=dict)
    server_types: dict[str, list[ServerTypeOffer]] = field(default_factory=dict)
    host_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, op: str) -> None:
        self.calls[op] += 1
        queued = self.faults.get(op)
        if queued:
            raise queued.pop(0)

    def fail_next(self, op: str, *errors: Exception) -> None:
        self.faults.setdefault(op, []).extend(errors)

    def find_servers_by_tag(self, instance_id: str, zone: str) -> list[ServerInfo]:
        with self._lock:
            self._enter("find_servers_by_tag")
            return [s.info for s in self.servers.values() if s.instance_id == instance_id and not s.deleted]

    def create_server(
        self, instance_id: str, org_id: str, placement: Placement, user_data: str | None, tags: Sequence[str]
    ) -> ServerInfo:
        with self._lock:
            self._enter("create_server")
            server_id = f"fake-{next(self._ids)}"
            info = ServerInfo(
                server_id=server_id,
                state="running",
                zone=placement.zone_code,
                ip_address="127.0.0.1",
                upstream_url=self.upstream_url_for(instance_id),
                agent_url=None,
                tags=tuple(tags),
            )
            self.servers[server_id] = FakeServer(info, instance_id)
            if self.ambiguous_creates > 0:
                self.ambiguous_creates -= 1
                raise Transient("create timed out (but the server was created)")
            return info

    def get_server(self, server_id: str, zone: str) -> ServerInfo:
        with self._lock:
            self._enter("get_server")
            server = self.servers.get(server_id)
            if server is None or server.deleted:
                raise NotFound(server_id)
            return server.info

    def delete_server(self, server_id: str, zone: str) -> None:
        with self._lock:
            self._enter("delete_server")
            server = self.servers.get(server_id)
            if server is None or server.deleted:
                raise NotFound(server_id)
            server.deleted = True
            server.info = replace(server.info, state="deleted")

    def power_on(self, server_id: str, zone: str) -> None:
        with self._lock:
            self._enter("power_on")
            server = self.servers.get(server_id)
            if server is None or server.deleted:
                raise NotFound(server_id)
            server.info = replace(server.info, state="running")

    def list_servers(self, zone: str) -> list[ServerInfo]:
        with self._lock:
            self._enter("list_servers")
            return [s.info for s in self.servers.values() if not s.deleted and s.info.zone == zone]

    def list_volumes(self, zone: str) -> list[VolumeInfo]:
        with self._lock:
            self._enter("list_volumes")
            return [v for v in self.volumes.values() if v.zone == zone]

    def delete_volume(self, volume_id: str, zone: str) -> None:
        with self._lock:
            self._enter("delete_volume")
            volume = self.volumes.get(volume_id)
            if volume is None or volume.zone != zone:
                raise NotFound(volume_id)
            del self.volumes[volume_id]

    def list_ips(self, zone: str) -> list[IpInfo]:
        with self._lock:
            self._enter("list_ips")
            return [ip for ip in self.ips.values() if ip.zone == zone]

    def delete_ip(self, ip_id: str, zone: str) -> None:
        with self._lock:
            self._enter("delete_ip")
            ip = self.ips.get(ip_id)
            if ip is None or ip.zone != zone:
                raise NotFound(ip_id)
            del self.ips[ip_id]

    def list_server_types(self, zone: str) -> list[ServerTypeOffer]:
        with self._lock:
            self._enter("list_server_types")
            return list(self.server_types.get(zone, ()))

    def host_key_fingerprints(self, server_id: str, zone: str) -> tuple[str, ...]:
        with self._lock:
            self._enter("host_key_fingerprints")
            server = self.servers.get(server_id)
            if server is None or server.deleted:
                raise NotFound(server_id)
            return self.host_keys.get(server_id, ())

    def live_servers(self, instance_id: str | None = None) -> list[ServerInfo]:
        return [s.info for s in self.servers.values()
                if not s.deleted and (instance_id is None or s.instance_id == instance_id)]


class ManualClock:
    def __init__(self, start: datetime | None = None):
        self.t = start or datetime(2026, 1, 1, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class StaticHeartbeats:
    def __init__(self) -> None:
        self.last_seen: dict[tuple[str, str], ObservedHeartbeat] = {}

    def set(self, org_id: str, instance_id: str, status: str, at: datetime, model: str = "m", reason: str | None = None):
        hb = Heartbeat(status=status, model=model, sent_at=at, reason=reason)  # type: ignore[arg-type]
        self.last_seen[(org_id, instance_id)] = ObservedHeartbeat(hb, at)

    async def last(self, org_id: str, instance_id: str) -> ObservedHeartbeat | None:
        return self.last_seen.get((org_id, instance_id))


class StaticProbe:
    def __init__(self, listed: bool = True):
        self.listed = listed
        self.calls = 0

    async def lists_model(self, upstream_url: str, model_name: str, instance_id: str = "") -> bool:
        self.calls += 1
        return self.listed


class RecordingPublisher:
    """Keeps published commands; drops a repeated id like the COMMANDS duplicate window."""

    def __init__(self) -> None:
        self.published: list[Command] = []

    async def publish(self, command: Command) -> None:
        if all(c.id != command.id for c in self.published):
            self.published.append(command)


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    """An ``offload`` that calls the function on the loop (deterministic tests)."""
    return fn(*args)
