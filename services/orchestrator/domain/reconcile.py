"""Fleet reconciliation as pure plans: the provider's listing against what the log knows.

- A server tagged with our instance id whose instance is over (terminated, archived, or a
  failure that recorded another server), or a second server of a live instance, is deleted.
- A server tagged for an instance the log has never heard of is deleted or only reported,
  as configured (``orphan_action``): it carries our tags, but only the operator knows whether
  another control plane shares the project.
- A server of an instance still provisioning is left alone: provisioning looks servers up by
  tag before creating one, so it adopts it.
- An instance whose recorded server is missing from the listing is only a *suspect*: the
  adapter asks the provider for that server, and only a NotFound makes it ``provider_deleted``
  (a listing can be partial; a timeout, 401 or 5xx proves nothing).
- Volumes and IPs tagged for an instance that is over, or unknown, and attached to nothing,
  are leaks from past terminations and are deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from . import lifecycle as lc
from .effects import ServerInfo
from .resources import IpInfo, VolumeInfo

OrphanAction = Literal["terminate", "report"]


@dataclass(frozen=True, slots=True)
class KnownInstance:
    instance_id: str
    org_id: str
    status: str
    zone: str = ""
    # The server the log says is live (recorded and not confirmed deleted), if any.
    server_id: str | None = None


@dataclass(frozen=True, slots=True)
class Orphan:
    resource_id: str
    instance_id: str | None
    why: Literal["instance_over", "duplicate", "unknown_instance"]


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    delete: tuple[Orphan, ...] = ()
    report: tuple[Orphan, ...] = ()
    # Live instances whose server the listing lacks: confirm with a get before acting.
    suspects: tuple[KnownInstance, ...] = ()


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    volumes: tuple[Orphan, ...] = ()
    ips: tuple[Orphan, ...] = ()
    kept: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def tagged_instance(tags: Iterable[str], prefix: str = "inv") -> str | None:
    """The instance id in ``<prefix>:instance=<id>``, or None when the resource is not ours."""
    marker = f"{prefix}:instance="
    for tag in tags:
        if tag.startswith(marker) and len(tag) > len(marker):
            return tag[len(marker):]
    return None


def _over(known: KnownInstance | None) -> bool:
    return known is not None and (known.status in lc.TERMINAL or known.server_id is None and known.status != lc.PROVISIONING)


def plan_reconcile(
    zone: str,
    servers: Iterable[ServerInfo],
    known: Mapping[str, KnownInstance],
    *,
    orphan_action: OrphanAction = "terminate",
    prefix: str = "inv",
) -> ReconcilePlan:
    delete: list[Orphan] = []
    report: list[Orphan] = []
    listed: set[str] = set()
    for server in servers:
        listed.add(server.server_id)
        instance_id = tagged_instance(server.tags, prefix)
        if instance_id is None:
            continue  # not ours
        instance = known.get(instance_id)
        if instance is None:
            orphan = Orphan(server.server_id, instance_id, "unknown_instance")
            (delete if orphan_action == "terminate" else report).append(orphan)
        elif instance.status == lc.PROVISIONING:
            continue  # its provisioning finds it by tag and records it
        elif _over(instance):
            delete.append(Orphan(server.server_id, instance_id, "instance_over"))
        elif instance.server_id != server.server_id:
            delete.append(Orphan(server.server_id, instance_id, "duplicate"))
    suspects = tuple(
        instance
        for instance in known.values()
        if instance.zone == zone
        and instance.server_id is not None
        and instance.status in lc.LIVE
        and instance.server_id not in listed
    )
    return ReconcilePlan(tuple(delete), tuple(report), suspects)


def plan_cleanup(
    volumes: Iterable[VolumeInfo],
    ips: Iterable[IpInfo],
    known: Mapping[str, KnownInstance],
    *,
    prefix: str = "inv",
) -> CleanupPlan:
    """Detached volumes and unattached IPs of instances that are over (or unknown) are leaks."""
    leaked_volumes: list[Orphan] = []
    leaked_ips: list[Orphan] = []
    kept = 0
    for volume in volumes:
        instance_id = tagged_instance(volume.tags, prefix)
        if instance_id is None:
            continue
        if volume.server_id is None and _leaked(known.get(instance_id)):
            leaked_volumes.append(Orphan(volume.volume_id, instance_id, _why(known.get(instance_id))))
        else:
            kept += 1
    for ip in ips:
        instance_id = tagged_instance(ip.tags, prefix)
        if instance_id is None:
            continue
        if ip.server_id is None and _leaked(known.get(instance_id)):
            leaked_ips.append(Orphan(ip.ip_id, instance_id, _why(known.get(instance_id))))
        else:
            kept += 1
    return CleanupPlan(tuple(leaked_volumes), tuple(leaked_ips), kept)


def _leaked(instance: KnownInstance | None) -> bool:
    return instance is None or instance.status in lc.TERMINAL or (
        instance.server_id is None and instance.status in lc.FAILED_STATUSES
    )


def _why(instance: KnownInstance | None):
    return "unknown_instance" if instance is None else "instance_over"


def count_by_status(known: Mapping[str, KnownInstance]) -> dict[str, int]:
    counts = {status: 0 for status in lc.STATUSES}
    for instance in known.values():
        if instance.status in counts:
            counts[instance.status] += 1
    return counts
