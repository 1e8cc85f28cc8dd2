"""JSON shapes of the fake Scaleway API (what the SDK 2.12 unmarshallers need, scaleway.md §7),
plus the list filters and pagination the real API applies."""

from __future__ import annotations

from typing import Any, Sequence

from .scaleway_state import ALLOWED_ACTIONS, FakeScaleway, Ip, Server, Volume, iso


def server_ip(ip_id: str, address: str, tags: Sequence[str], dynamic: bool) -> dict[str, Any]:
    return {"id": ip_id, "address": address, "gateway": "62.210.0.1", "netmask": "32", "family": "inet",
            "dynamic": dynamic, "provisioning_mode": "dhcp", "tags": list(tags), "ipam_id": "", "state": "attached"}


def render_server(fake: FakeScaleway, server: Server) -> dict[str, Any]:
    public_ips = [server_ip(ip.id, ip.address, ip.tags, False) for ip in fake.attached_ips(server.id)]
    if server.dynamic_ip is not None:
        public_ips.append(server_ip(server.dynamic_ip["id"], server.dynamic_ip["address"], [], True))
    volumes = {
        index: {"id": volume_id, "volume_type": "sbs_volume", "boot": False, "zone": server.zone,
                "state": "available"}
        for index, volume_id in server.volume_ids.items()
    }
    return {
        "id": server.id, "name": server.name, "organization": server.project, "project": server.project,
        "allowed_actions": list(ALLOWED_ACTIONS.get(server.state, [])), "tags": list(server.tags),
        "commercial_type": server.commercial_type, "creation_date": server.created, "modification_date": iso(),
        "dynamic_ip_required": server.dynamic_ip_required, "routed_ip_enabled": True, "enable_ipv6": False,
        "hostname": server.name, "image": None, "protected": False, "private_ip": None,
        "public_ip": public_ips[0] if public_ips else None, "public_ips": public_ips,
        "mac_address": "de:00:00:00:00:01", "state": server.state, "state_detail": server.state_detail,
        "location": None, "ipv6": None, "boot_type": server.boot_type, "volumes": volumes,
        "security_group": dict(server.security_group), "maintenances": [], "arch": "x86_64",
        "placement_group": None, "private_nics": [], "zone": server.zone, "filesystems": [], "end_of_service": False,
    }


def render_volume(volume: Volume) -> dict[str, Any]:
    references = []
    if volume.server_id is not None:
        references.append({"id": f"ref-{volume.id[:8]}", "product_resource_type": "instance_server",
                           "product_resource_id": volume.server_id, "created_at": volume.created,
                           "type": "exclusive", "status": volume.reference_status})
    return {
        "id": volume.id, "name": volume.name, "type": "sbs_5k", "size": volume.size, "project_id": volume.project_id,
        "created_at": volume.created, "updated_at": iso(), "references": references, "parent_snapshot_id": None,
        "status": volume.status, "tags": list(volume.tags), "specs": {"perf_iops": 5000, "class": "sbs"},
        "last_detached_at": None, "zone": volume.zone,
    }


def render_ip(fake: FakeScaleway, ip: Ip) -> dict[str, Any]:
    server = fake.servers.get(ip.server_id) if ip.server_id else None
    return {
        "id": ip.id, "address": ip.address, "reverse": None, "organization": ip.project, "project": ip.project,
        "server": {"id": server.id, "name": server.name} if server else None, "tags": list(ip.tags),
        "type": ip.type, "state": "attached" if server else "detached", "prefix": f"{ip.address}/32",
        "ipam_id": "", "zone": ip.zone,
    }


# --- filters and pages --------------------------------------------------------------------


def first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")  # the SDK sends Python's True/False


def instance_tags(query: dict[str, list[str]]) -> list[str]:
    """Instance lists send ``tags=a,b`` in one parameter: every listed tag must be present."""
    raw = first(query, "tags")
    return [t for t in raw.split(",") if t] if raw else []


def page(items: list[Any], query: dict[str, list[str]], size_param: str, default: int = 50) -> list[Any]:
    number = max(1, int(first(query, "page") or 1))
    size = max(1, min(100, int(first(query, size_param) or default)))
    return items[(number - 1) * size: number * size]


def select_servers(fake: FakeScaleway, zone: str, query: dict[str, list[str]]) -> list[Server]:
    tags, name = instance_tags(query), first(query, "name")
    project, state = first(query, "project"), first(query, "state")
    found = [
        s for s in fake.servers.values()
        if s.zone == zone and all(t in s.tags for t in tags) and (not name or name in s.name)
        and (not project or s.project == project) and (not state or s.state == state)
    ]
    return sorted(found, key=lambda s: (s.created, s.id))


def select_ips(fake: FakeScaleway, zone: str, query: dict[str, list[str]]) -> list[Ip]:
    tags, project = instance_tags(query), first(query, "project")
    found = [ip for ip in fake.ips.values()
             if ip.zone == zone and all(t in ip.tags for t in tags) and (not project or ip.project == project)]
    return sorted(found, key=lambda ip: ip.id)


def select_volumes(fake: FakeScaleway, zone: str, query: dict[str, list[str]]) -> list[Volume]:
    """Block lists repeat ``tags=a&tags=b`` and match volumes with *one or more* of them."""
    tags, name = query.get("tags", []), first(query, "name")
    project, server = first(query, "project_id"), first(query, "product_resource_id")
    found = [
        v for v in fake.volumes.values()
        if v.zone == zone and (not tags or any(t in v.tags for t in tags)) and (not name or name in v.name)
        and (not project or v.project_id == project) and (not server or v.server_id == server)
    ]
    return sorted(found, key=lambda v: (v.created, v.id))
