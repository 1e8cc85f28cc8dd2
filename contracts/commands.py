"""Commands: imperative requests consumed by the orchestrator from the COMMANDS stream.

Subject: ``cmd.<tag>`` (e.g. ``cmd.instance.provision``). A command may be rejected; the
rejection is recorded as a ``command.rejected`` event.
"""

from __future__ import annotations

from typing import Union

from .base import Envelope
from .catalog import Placement


class Command(Envelope, frozen=True, kw_only=True):
    pass


class ProvisionInstance(Command, frozen=True, kw_only=True, tag="instance.provision"):
    instance_id: str
    placement: Placement
    # Seconds from the request to ``ready`` before the instance is marked startup_failed.
    startup_timeout_s: int = 3600


class TerminateInstance(Command, frozen=True, kw_only=True, tag="instance.terminate"):
    instance_id: str
    reason: str = "user_request"


class CheckInstance(Command, frozen=True, kw_only=True, tag="instance.check"):
    """A durable timer: redelivered with a backoff delay until the instance settles."""

    instance_id: str


class ReinstallInstance(Command, frozen=True, kw_only=True, tag="instance.reinstall"):
    instance_id: str


class ArchiveInstance(Command, frozen=True, kw_only=True, tag="instance.archive"):
    instance_id: str


class FleetCommand(Command, frozen=True, kw_only=True):
    """Work on the whole fleet rather than one instance (``org_id`` is ``system``).

    Published by every orchestrator replica on a schedule with an id derived from
    ``tick:<name>:<window>``, so the stream keeps one per window and exactly one replica runs it;
    also sent on demand by an operator (``POST /reconcile``, ``POST /catalog/sync``).
    """

    # Zones to look at; empty: every zone the orchestrator knows (configured + where instances live).
    zones: tuple[str, ...] = ()


class ReconcileFleet(FleetCommand, frozen=True, kw_only=True, tag="fleet.reconcile"):
    """Compare the provider's servers with the log: orphans are deleted (or reported), instances
    whose server the provider no longer has are terminated with reason ``PROVIDER_DELETED``."""


class CleanUpFleet(FleetCommand, frozen=True, kw_only=True, tag="fleet.cleanup"):
    """Delete our volumes and IPs that no live instance uses (leaks of past terminations)."""


class SyncCatalog(FleetCommand, frozen=True, kw_only=True, tag="fleet.catalog_sync"):
    """Read server types, prices and availability from the provider into the catalog."""


AnyCommand = Union[
    ProvisionInstance, TerminateInstance, CheckInstance, ReinstallInstance, ArchiveInstance,
    ReconcileFleet, CleanUpFleet, SyncCatalog,
]

INSTANCE_COMMANDS = (ProvisionInstance, TerminateInstance, CheckInstance, ReinstallInstance, ArchiveInstance)
FLEET_COMMANDS = (ReconcileFleet, CleanUpFleet, SyncCatalog)
