"""What a provider says about the resources around servers: volumes, public IPs, server types.

Pure values, returned by the ``Compute`` port for fleet upkeep (the janitor that finds leaked
volumes and IPs, the catalog sync that reads prices and stock). Providers fill what they know;
``None`` means "the provider did not say", never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """A block volume. ``server_id`` is the server it is attached to (or still detaching from)."""

    volume_id: str
    zone: str
    name: str
    state: str  # provider words: "available", "in_use", "creating", "deleting", "error", ...
    tags: tuple[str, ...] = ()
    server_id: str | None = None


@dataclass(frozen=True, slots=True)
class IpInfo:
    """A reserved (flexible) public IP. ``server_id`` is the server it is attached to, if any."""

    ip_id: str
    zone: str
    address: str
    tags: tuple[str, ...] = ()
    server_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServerTypeOffer:
    """One server type as offered in one zone, with the provider's current price.

    ``diskless``: the type boots from network block storage only (no local disk allowed).
    ``available``: the provider reports stock now (not "shortage", not end of service).
    """

    name: str
    zone: str
    hourly_price_eur: Decimal
    gpu_count: int
    gpu_memory_gb: int | None
    ram_gb: int | None
    available: bool
    diskless: bool
