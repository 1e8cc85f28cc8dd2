"""Effects the orchestrator asks the outside world to perform, and what comes back.

Pure values. ``decide`` returns at most one effect; the handler performs it through the
ports (provider, heartbeats, engine probe) and hands the result to ``on_effect_result``.
Errors come back as ``EffectFailed`` values, classified the way ports classify them, so the
decision about what an error means stays in the pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Union

from contracts.catalog import Placement


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a provider says about one server. Volumes and IPs are listed so termination can release them."""

    server_id: str
    state: str  # provider words: "running", "starting", "stopped", "stopping", "locked", ...
    zone: str
    ip_address: str | None = None
    # Where the engine and the agent are reachable, derived by the adapter from provider facts.
    upstream_url: str | None = None
    agent_url: str | None = None
    tags: tuple[str, ...] = ()
    volume_ids: tuple[str, ...] = ()
    ip_ids: tuple[str, ...] = ()


# --- effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnsureServer:
    """Find the server tagged with this instance id, or create it. Idempotent by our id."""

    instance_id: str
    org_id: str
    placement: Placement


@dataclass(frozen=True, slots=True)
class DeleteServer:
    """Delete ``server_id`` (when given) and, with ``sweep``, every other server tagged with the
    instance id except ``keep``; confirm each is gone (only a NotFound proves absence).

    ``compensating`` marks the deletion of servers the log never recorded (a create that raced a
    termination or a failure, or a duplicate from two deliveries at once): its result records nothing.
    """

    instance_id: str
    zone: str
    server_id: str | None = None
    sweep: bool = True
    keep: str | None = None
    compensating: bool = False


@dataclass(frozen=True, slots=True)
class ProbeWorker:
    """Read the worker's last heartbeat and, if it says ready, ask the engine for its models."""

    org_id: str
    instance_id: str
    upstream_url: str | None
    model_name: str
    # Ask the engine too (bring-up, recovery); a plain watch of a ready worker reads the heartbeat only.
    probe_engine: bool = True


@dataclass(frozen=True, slots=True)
class DriveInstall:
    """Move the worker install of ``generation`` forward on the instance's server and report where it is.

    The adapter checks the server runs and is reachable, starts the (idempotent, detached)
    install unless that generation already runs or ran, and reads its progress. Repeating it is
    harmless: an install never runs twice for one generation.
    """

    org_id: str
    instance_id: str
    server_id: str
    zone: str
    generation: int
    model_name: str


Effect = Union[EnsureServer, DeleteServer, ProbeWorker, DriveInstall]


# --- results ------------------------------------------------------------------------------

ErrorKind = Literal["transient", "rate_limited", "conflict", "not_found", "permanent", "timeout"]


@dataclass(frozen=True, slots=True)
class EffectFailed:
    kind: ErrorKind
    message: str = ""
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class ServerGone:
    """No server of the instance is left. Only a NotFound proves absence: ``confirmed_absent``
    lists the server ids the provider answered NotFound for (after deleting them, or already gone)."""

    confirmed_absent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerStillPresent:
    """Deletion accepted but the provider still lists the server (Scaleway deletes asynchronously)."""

    server_id: str
    state: str


@dataclass(frozen=True, slots=True)
class WorkerObservation:
    """The last heartbeat (if any) and whether the engine lists the model (None = not probed)."""

    heartbeat_status: str | None
    heartbeat_at: datetime | None
    heartbeat_reason: str | None = None
    model_listed: bool | None = None
    # The interval the worker announced in its last heartbeat: staleness is judged against it.
    heartbeat_interval_s: float | None = None


INSTALL_PHASES = ("ssh_ready", "installing", "engine_starting", "agent_started")


@dataclass(frozen=True, slots=True)
class InstallObservation:
    """Where the install stands. ``server_ready`` False: the server is not running/reachable yet.

    ``phase`` is one of INSTALL_PHASES (or None before the first); ``state`` is the installer's
    word: not_started, running, succeeded, failed. ``generation`` is the install the server reports.
    """

    server_ready: bool
    state: str = "not_started"
    phase: str | None = None
    generation: int | None = None
    exit_code: int | None = None
    log_tail: str = ""


EffectResult = Union[ServerInfo, ServerGone, ServerStillPresent, WorkerObservation, InstallObservation, EffectFailed]
