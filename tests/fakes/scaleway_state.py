"""The in-memory Scaleway behind the fake API: servers, block volumes, IPs, user data, types.

Behaves the way scaleway.md §1 and §7 describe the real one, as far as our adapter can tell:

- a server is created ``stopped``; ``poweron`` -> ``starting`` -> ``running`` (a dynamic IP
  appears when ``dynamic_ip_required`` and no reserved IP is attached); ``poweroff`` ->
  ``stopping`` -> ``stopped`` (the dynamic IP goes); ``terminate`` -> ``stopping`` -> gone;
- ``DELETE`` only when ``stopped``; terminate and DELETE *detach* block volumes (they stay
  ``in_use`` with a ``detaching`` reference for ``detach_s``, then ``available``) and leave
  reserved IPs (detached); nothing deletes them but their own DELETE;
- transitions are time-based (``Timings``), applied lazily on every request;
- errors are raised as ``ApiError(status, body)`` with the API's JSON shapes.

Thread-safe: one lock around everything (the HTTP server is threaded).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

GIB = 2**30


class ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {body!r}")
        self.status, self.body, self.headers = status, body, headers or {}


def not_found(resource: str, resource_id: str) -> ApiError:
    return ApiError(404, {"type": "not_found", "message": "resource is not found", "resource": resource,
                          "resource_id": resource_id})


def invalid_argument(name: str, help_message: str) -> ApiError:
    return ApiError(400, {"type": "invalid_arguments", "message": "invalid argument(s)",
                          "details": [{"argument_name": name, "reason": "constraint", "help_message": help_message}]})


def precondition(status: int, what: str, message: str) -> ApiError:
    return ApiError(status, {"type": "precondition_failed", "precondition": what, "help_message": message,
                             "message": f"precondition failed: {message}"})


@dataclass
class Timings:
    poweron_s: float = 0.05
    poweroff_s: float = 0.05
    terminate_s: float = 0.05
    detach_s: float = 0.05


def _type(price: float, cpus: int, ram_gib: int, gpus: int, gpu_name: str | None, vram_gib: int,
          max_local_bytes: int) -> dict[str, Any]:
    return {
        "hourly_price": price, "monthly_price": round(price * 730, 2), "alt_names": [], "ncpus": cpus,
        "ram": ram_gib * GIB, "arch": "x86_64", "gpu": gpus, "end_of_service": False,
        "gpu_info": {"gpu_manufacturer": "NVIDIA", "gpu_name": gpu_name, "gpu_memory": vram_gib * GIB} if gpu_name else None,
        "volumes_constraint": {"min_size": 0, "max_size": max_local_bytes}, "per_volume_constraint": None,
        "scratch_storage_max_volumes_count": 0, "scratch_storage_max_size": 0, "block_bandwidth": 0,
    }


def default_server_types() -> dict[str, dict[str, Any]]:
    """Shapes and 2026 prices from scaleway.md §1.8 and §2 (diskless GPU types: max_size 0)."""
    return {
        "DEV1-S": _type(0.0088, 2, 2, 0, None, 0, 20 * 10**9),
        "L4-1-24G": _type(0.7875, 8, 48, 1, "L4", 24, 0),
        "L40S-1-48G": _type(1.469916, 8, 96, 1, "L40S", 48, 0),
        "H100-1-80G": _type(2.8665, 24, 240, 1, "H100", 80, 0),
        "RENDER-S": _type(1.221, 10, 42, 1, "P100", 16, 400 * 10**9),
    }


def default_availability() -> dict[str, str]:
    return {"DEV1-S": "available", "L4-1-24G": "available", "L40S-1-48G": "shortage", "H100-1-80G": "scarce",
            "RENDER-S": "available"}


def iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).isoformat()


@dataclass
class Server:
    id: str
    name: str
    zone: str
    project: str
    commercial_type: str
    image: str | None
    tags: list[str]
    boot_type: str
    security_group: dict[str, str]
    dynamic_ip_required: bool
    volume_ids: dict[str, str]  # index -> block volume id
    created: str = field(default_factory=iso)
    state: str = "stopped"
    state_detail: str = ""
    dynamic_ip: dict[str, Any] | None = None
    user_data: dict[str, bytes] = field(default_factory=dict)
    transition: tuple[str, float] | None = None  # (target, due on the monotonic clock)


@dataclass
class Volume:
    id: str
    name: str
    zone: str
    size: int
    project_id: str
    tags: list[str]
    server_id: str | None = None
    reference_status: str = "attached"
    detach_due: float | None = None
    created: str = field(default_factory=iso)

    @property
    def status(self) -> str:
        return "in_use" if self.server_id else "available"


@dataclass
class Ip:
    id: str
    zone: str
    address: str
    project: str
    tags: list[str]
    type: str = "routed_ipv4"
    server_id: str | None = None


ALLOWED_ACTIONS = {
    "stopped": ["poweron", "backup"],
    "starting": ["stop_in_place", "backup"],
    "stopping": ["stop_in_place", "backup"],
    "running": ["poweroff", "terminate", "reboot", "stop_in_place", "backup"],
}


class FakeScaleway:
    def __init__(self, *, secret_key: str, project_id: str, timings: Timings | None = None,
                 server_types: dict[str, dict[str, Any]] | None = None, availability: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.secret_key = secret_key
        self.project_id = project_id
        self.timings = timings or Timings()
        self.server_types = default_server_types() if server_types is None else server_types
        self.availability = default_availability() if availability is None else availability
        self.refuse_terminate = False  # the 3p report: GPU servers booting from SBS refuse terminate
        self.clock = clock
        self.lock = threading.RLock()
        self.servers: dict[str, Server] = {}
        self.volumes: dict[str, Volume] = {}
        self.ips: dict[str, Ip] = {}
        self._addresses = itertools.count(10)

    # --- time ---------------------------------------------------------------------------------

    def advance(self) -> None:
        """Apply every transition that is due (called under the lock before each request)."""
        now = self.clock()
        for server in list(self.servers.values()):
            if server.transition is not None and server.transition[1] <= now:
                target, server.transition = server.transition[0], None
                self._arrive(server, target)
        for volume in self.volumes.values():
            if volume.detach_due is not None and volume.detach_due <= now:
                volume.server_id, volume.detach_due, volume.reference_status = None, None, "attached"

    def _arrive(self, server: Server, target: str) -> None:
        if target == "running":
            server.state, server.state_detail = "running", "booting kernel"
            if server.dynamic_ip_required and not self.attached_ips(server.id):
                server.dynamic_ip = {"id": str(uuid.uuid4()), "address": self._next_address(), "dynamic": True}
        elif target == "stopped":
            server.state, server.state_detail, server.dynamic_ip = "stopped", "", None
        elif target == "gone":
            self._remove_server(server)

    def _remove_server(self, server: Server) -> None:
        del self.servers[server.id]
        due = self.clock() + self.timings.detach_s
        for volume_id in server.volume_ids.values():
            volume = self.volumes.get(volume_id)
            if volume is not None and volume.server_id == server.id:
                volume.reference_status, volume.detach_due = "detaching", due
        for ip in self.attached_ips(server.id):
            ip.server_id = None

    # --- queries ------------------------------------------------------------------------------

    def attached_ips(self, server_id: str) -> list[Ip]:
        return [ip for ip in self.ips.values() if ip.server_id == server_id]

    def server(self, zone: str, server_id: str) -> Server:
        server = self.servers.get(server_id)
        if server is None or server.zone != zone:
            raise not_found("instance_server", server_id)
        return server

    def volume(self, zone: str, volume_id: str) -> Volume:
        volume = self.volumes.get(volume_id)
        if volume is None or volume.zone != zone:
            raise not_found("volume", volume_id)
        return volume

    def ip(self, zone: str, ip_id: str) -> Ip:
        ip = self.ips.get(ip_id)
        if ip is None or ip.zone != zone:
            raise not_found("instance_ip", ip_id)
        return ip

    def _next_address(self) -> str:
        n = next(self._addresses)
        return f"51.159.{n // 250}.{n % 250 + 1}"

    # --- commands -----------------------------------------------------------------------------

    def create_server(self, zone: str, body: dict[str, Any]) -> Server:
        commercial_type = body.get("commercial_type")
        if commercial_type not in self.server_types:
            raise invalid_argument("commercial_type", f"unknown commercial type {commercial_type!r}")
        project = body.get("project") or body.get("organization")
        if not project:
            raise invalid_argument("project", "project is required")
        ip_ids = list(body.get("public_ips") or [])
        for ip_id in ip_ids:
            if self.ip(zone, ip_id).server_id is not None:
                raise ApiError(400, {"type": "invalid_request_error", "message": f"ip {ip_id} is already attached"})
        server_id = str(uuid.uuid4())
        max_local = self.server_types[commercial_type]["volumes_constraint"]["max_size"]
        templates = body.get("volumes") or {"0": {"volume_type": "sbs_volume", "size": 10 * 10**9}}
        volume_ids: dict[str, str] = {}
        for index, template in sorted(templates.items()):
            volume_type = template.get("volume_type", "sbs_volume")
            if volume_type != "sbs_volume":
                if max_local == 0:
                    raise invalid_argument(f"volumes.{index}.volume_type", f"{commercial_type} takes no local volume")
                raise invalid_argument(f"volumes.{index}.volume_type", "the fake models block volumes only")
            size = int(template.get("size") or 0)
            if size < 10**9:
                raise invalid_argument(f"volumes.{index}.size", "size is required (bytes)")
            name = template.get("name") or f"{body.get('image') or 'image'}_sbs_volume_{index}"
            volume = Volume(str(uuid.uuid4()), name, zone, size, project, [], server_id=server_id)
            self.volumes[volume.id] = volume
            volume_ids[index] = volume.id
        group_id = body.get("security_group")
        server = Server(
            id=server_id, name=body.get("name") or f"srv-{server_id[:8]}", zone=zone, project=project,
            commercial_type=commercial_type, image=body.get("image"), tags=list(body.get("tags") or []),
            boot_type=body.get("boot_type") or "local",
            security_group={"id": group_id, "name": f"sg-{group_id[:8]}"} if group_id
            else {"id": "default-security-group", "name": "Default security group"},
            dynamic_ip_required=bool(body.get("dynamic_ip_required", True)), volume_ids=volume_ids,
        )
        self.servers[server_id] = server
        for ip_id in ip_ids:
            self.ips[ip_id].server_id = server_id
        return server

    def action(self, zone: str, server_id: str, action: str) -> None:
        server = self.server(zone, server_id)
        allowed = ALLOWED_ACTIONS.get(server.state, [])
        if action not in allowed:
            if server.state in ("starting", "stopping"):
                raise ApiError(409, {"type": "transient_state", "resource": "instance_server", "resource_id": server_id,
                                     "current_state": server.state, "message": "resource is in a transient state"})
            wanted = "stopped" if action == "poweron" else "running"
            raise ApiError(400, {"type": "invalid_request_error", "message": f"server should be {wanted}"})
        now = self.clock()
        if action == "poweron":
            server.state, server.state_detail = "starting", "allocating node"
            server.transition = ("running", now + self.timings.poweron_s)
        elif action == "poweroff":
            server.state, server.state_detail = "stopping", "stopping"
            server.transition = ("stopped", now + self.timings.poweroff_s)
        elif action == "terminate":
            if self.refuse_terminate:
                raise precondition(400, "server_boots_from_block_volume",
                                   "terminate is not available for this server; power it off, then delete it")
            server.state, server.state_detail = "stopping", "terminating"
            server.transition = ("gone", now + self.timings.terminate_s)
        else:
            raise ApiError(400, {"type": "invalid_request_error", "message": f"the fake does not do {action!r}"})

    def delete_server(self, zone: str, server_id: str) -> None:
        server = self.server(zone, server_id)
        if server.state != "stopped":
            raise precondition(400, "resource_still_in_use", "resource is still in use, instance should be powered off")
        self._remove_server(server)

    def delete_volume(self, zone: str, volume_id: str) -> None:
        volume = self.volume(zone, volume_id)
        if volume.server_id is not None:
            raise precondition(412, "resource_still_in_use", "volume is still in use")
        del self.volumes[volume_id]

    def create_ip(self, zone: str, body: dict[str, Any]) -> Ip:
        project = body.get("project") or body.get("organization") or self.project_id
        ip = Ip(str(uuid.uuid4()), zone, self._next_address(), project, list(body.get("tags") or []),
                type=body.get("type") or "routed_ipv4")
        if body.get("server"):
            self.server(zone, body["server"])
            ip.server_id = body["server"]
        self.ips[ip.id] = ip
        return ip

    def delete_ip(self, zone: str, ip_id: str) -> None:
        self.ip(zone, ip_id)
        del self.ips[ip_id]

    # --- for tests ----------------------------------------------------------------------------

    def publish_host_keys(self, server_id: str, content: str) -> None:
        """What ``scw-generate-ssh-keys`` does inside the VM at boot."""
        with self.lock:
            self.servers[server_id].user_data["ssh-host-fingerprints"] = content.encode()

    def inventory(self) -> dict[str, list[str]]:
        """Every live resource id by kind: the leak check after a teardown."""
        with self.lock:
            self.advance()
            return {"servers": sorted(self.servers), "volumes": sorted(self.volumes), "ips": sorted(self.ips)}
