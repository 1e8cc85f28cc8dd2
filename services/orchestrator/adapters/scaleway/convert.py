"""SDK objects -> the port's values (pure: reads attributes, does no I/O).

Reads attributes with ``getattr`` defaults: the SDK fills missing JSON fields with its own
defaults, and a ``None`` where an object was expected must not crash a listing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Mapping

from ...domain.effects import ServerInfo
from ...domain.resources import IpInfo, ServerTypeOffer, VolumeInfo

PRICE_QUANTUM = Decimal("0.000001")  # the API's floats carry up to 6 decimals (1.469916 EUR/h)
GIB = 2**30
# Availability words that mean "you can create one now" ("scarce" still creates).
_IN_STOCK = frozenset({"available", "scarce"})


def text(value: Any) -> str:
    """An SDK enum or a plain string as the API's own word."""
    return "" if value is None else str(getattr(value, "value", value))


def public_ipv4(server: Any) -> str | None:
    for ip in getattr(server, "public_ips", None) or ():
        if ip is not None and getattr(ip, "address", None) and text(getattr(ip, "family", "inet")) in ("inet", ""):
            return ip.address
    legacy = getattr(server, "public_ip", None)
    return getattr(legacy, "address", None) or None


def server_info(server: Any, *, engine_port: int, agent_port: int) -> ServerInfo:
    address = public_ipv4(server)
    volumes = getattr(server, "volumes", None) or {}
    return ServerInfo(
        server_id=server.id,
        state=text(server.state),
        zone=text(server.zone),
        ip_address=address,
        upstream_url=f"http://{address}:{engine_port}" if address else None,
        agent_url=f"http://{address}:{agent_port}" if address else None,
        tags=tuple(server.tags or ()),
        volume_ids=tuple(v.id for _, v in sorted(volumes.items()) if v is not None and v.id),
        ip_ids=tuple(ip.id for ip in (server.public_ips or ()) if ip is not None and not ip.dynamic and ip.id),
    )


def attached_server_id(volume: Any) -> str | None:
    """The server a Block volume is attached to (or still detaching from), from its references."""
    for ref in getattr(volume, "references", None) or ():
        if text(getattr(ref, "product_resource_type", "")) == "instance_server" and ref.product_resource_id:
            if text(getattr(ref, "status", "")) not in ("detached", "error"):
                return ref.product_resource_id
    return None


def volume_info(volume: Any) -> VolumeInfo:
    return VolumeInfo(
        volume_id=volume.id,
        zone=text(volume.zone),
        name=volume.name or "",
        state=text(volume.status),
        tags=tuple(volume.tags or ()),
        server_id=attached_server_id(volume),
    )


def ip_info(ip: Any) -> IpInfo:
    server = getattr(ip, "server", None)
    return IpInfo(
        ip_id=ip.id,
        zone=text(ip.zone),
        address=ip.address or "",
        tags=tuple(ip.tags or ()),
        server_id=getattr(server, "id", None) or None,
    )


def hourly_price(value: float | int | str | None) -> Decimal:
    """The API's EUR float as a Decimal, through its shortest repr (0.7875, not 0.78749999...)."""
    if value is None:
        return Decimal("0").quantize(PRICE_QUANTUM)
    return Decimal(str(value)).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _gib(value: Any) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return round(value / GIB)


def is_diskless(server_type: Any) -> bool:
    """Boots from block storage only: the type allows no local volume (``volumes_constraint.max_size == 0``)."""
    constraint = getattr(server_type, "volumes_constraint", None)
    return constraint is not None and getattr(constraint, "max_size", None) == 0


def server_type_offer(name: str, zone: str, server_type: Any, availability: str | None) -> ServerTypeOffer:
    gpu_info = getattr(server_type, "gpu_info", None)
    return ServerTypeOffer(
        name=name,
        zone=zone,
        hourly_price_eur=hourly_price(getattr(server_type, "hourly_price", None)),
        gpu_count=int(getattr(server_type, "gpu", 0) or 0),
        gpu_memory_gb=_gib(getattr(gpu_info, "gpu_memory", None)) if gpu_info is not None else None,
        ram_gb=_gib(getattr(server_type, "ram", None)),
        available=(availability in _IN_STOCK) and not getattr(server_type, "end_of_service", False),
        diskless=is_diskless(server_type),
    )


def offers(zone: str, types: Mapping[str, Any], availability: Mapping[str, str]) -> list[ServerTypeOffer]:
    """One offer per type, sorted by name. A type missing from the availability map is not offered
    as available: stock unknown is not stock."""
    return [server_type_offer(name, zone, types[name], availability.get(name)) for name in sorted(types)]
