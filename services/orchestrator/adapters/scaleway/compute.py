"""``ScalewayCompute``: the Compute port on Scaleway Instances, through the official SDK.

A server is created in one call (scaleway.md §0.3): name ``inv-<instance_id>``, our tags, the
root block (SBS) volume sized at create, the security group, and either a tagged reserved IP
attached at create (``ip_mode=flexible``, the default: the address, hence ``upstream_url``, is
known before the first boot and survives stop/start) or Scaleway's dynamic IP. Then, while it
is still stopped: the root volume and IP get the server tag, cloud-init user data is set, and
it is powered on. Those steps are idempotent and retried; the create itself never is (no
idempotency key exists: the handlers look up by tag before every create).

``upstream_url`` = ``http://<public IPv4>:<engine_port>`` (8000), ``agent_url`` =
``http://<public IPv4>:<agent_port>`` (8080).

Every method is synchronous (the handlers run it in a worker thread under an outer timeout)
and raises only the port's errors.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import structlog
from scaleway.instance.v1 import VolumeServerTemplate

from contracts.catalog import Placement

from ...domain.effects import ServerInfo
from ...domain.resources import IpInfo, ServerTypeOffer, VolumeInfo
from ...ports import ComputeError, Conflict, NotFound, Transient
from . import convert, naming
from .client import ScalewayClient
from .fingerprints import parse_fingerprints
from .settings import ScalewaySettings
from .teardown import Teardown

log = structlog.get_logger(__name__)

HOST_KEYS_USER_DATA = "ssh-host-fingerprints"  # written by Scaleway images at boot
CLOUD_INIT_USER_DATA = "cloud-init"  # read by cloud-init's Scaleway data source
_PAGE = 100
_MAX_PAGES = 50  # a safety valve: an API that ignored ``page`` must not loop us forever
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ScalewayCompute:
    def __init__(self, settings: ScalewaySettings, *, client: ScalewayClient | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.client = client or ScalewayClient(settings, sleep=sleep)
        self._sleep = sleep
        self._now = monotonic
        self._teardown = Teardown(self.client, settings, sleep=sleep, monotonic=monotonic)

    # --- servers ------------------------------------------------------------------------------

    def find_servers_by_tag(self, instance_id: str, zone: str) -> list[ServerInfo]:
        tag = naming.instance_tag(self.settings.tag_prefix, instance_id)
        servers = self._call("list_servers", self.client.instance.list_servers_all, zone=zone, tags=[tag],
                             per_page=_PAGE)
        ours = [s for s in servers if tag in (s.tags or ())]
        ours.sort(key=lambda s: (s.creation_date or _EPOCH, s.id))
        return [self._info(s) for s in ours]

    def create_server(self, instance_id: str, org_id: str, placement: Placement, user_data: str | None,
                      tags: Sequence[str]) -> ServerInfo:
        zone = placement.zone_code
        settings = self.settings
        tags = naming.server_tags(settings.tag_prefix, instance_id, tags, settings.ssh_public_key)
        ip = self._reserve_ip(instance_id, zone, tags) if settings.ip_mode == "flexible" else None
        try:
            created = self._create(instance_id, placement, tags, ip)
        except Transient:
            raise  # the outcome is unknown: the server may hold the IP; the next attempt looks up by tag
        except ComputeError:
            if ip is not None:
                self._release_ip(ip.id, zone)  # refused for sure: nothing holds the IP
            raise
        log.info("scaleway.server_created", server_id=created.id, instance_id=instance_id, org_id=org_id,
                 zone=zone, commercial_type=placement.instance_type_code)
        try:
            server = self._prepare_and_start(created, zone, tags, ip, user_data)
        except ComputeError as exc:
            # The server exists: whatever went wrong after the create, it is not "create failed".
            # Transient sends the handler back to the lookup by tag, which finds (and records) it.
            raise Transient(f"server {created.id} created but not started: {exc}") from exc
        if ip is None:
            server = self._wait_for_address(server, zone)
        return self._info(server)

    def get_server(self, server_id: str, zone: str) -> ServerInfo:
        return self._info(self._get(server_id, zone))

    def delete_server(self, server_id: str, zone: str) -> None:
        self._teardown.run(server_id, zone)

    def power_on(self, server_id: str, zone: str) -> None:
        """Start a server that is stopped (e.g. adopted after a create whose power-on never ran)."""
        self._power_on(self._get(server_id, zone), zone)

    def list_servers(self, zone: str) -> list[ServerInfo]:
        servers = self._call("list_servers", self.client.instance.list_servers_all, zone=zone, per_page=_PAGE)
        return [self._info(s) for s in servers]

    # --- fleet upkeep -------------------------------------------------------------------------

    def list_volumes(self, zone: str) -> list[VolumeInfo]:
        volumes = self._call("list_volumes", self.client.block.list_volumes_all, zone=zone, include_deleted=False,
                             page_size=_PAGE)
        return [convert.volume_info(v) for v in volumes]

    def delete_volume(self, volume_id: str, zone: str) -> None:
        self._call("delete_volume", self.client.block.delete_volume, volume_id=volume_id, zone=zone)

    def list_ips(self, zone: str) -> list[IpInfo]:
        ips = self._call("list_ips", self.client.instance.list_ips_all, zone=zone, per_page=_PAGE)
        return [convert.ip_info(ip) for ip in ips]

    def delete_ip(self, ip_id: str, zone: str) -> None:
        self._call("delete_ip", self.client.instance.delete_ip, ip=ip_id, zone=zone)

    def list_server_types(self, zone: str) -> list[ServerTypeOffer]:
        api = self.client.instance
        types = self._all_pages("list_server_types", api.list_servers_types, zone)
        stock = self._all_pages("server_types_availability", api.get_server_types_availability, zone)
        availability = {name: convert.text(entry.availability) for name, entry in stock.items() if entry is not None}
        return convert.offers(zone, types, availability)

    def host_key_fingerprints(self, server_id: str, zone: str) -> tuple[str, ...]:
        try:
            response = self._call("get_user_data", self.client.instance.get_server_user_data,
                                  server_id=server_id, key=HOST_KEYS_USER_DATA, zone=zone)
        except NotFound:
            # The key is not published yet, or the server is gone: both answer 404. Ask the server.
            self._get(server_id, zone)
            return ()
        return parse_fingerprints(response.content or b"")

    def close(self) -> None:
        self.client.close()

    # --- helpers ------------------------------------------------------------------------------

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        return self.client.call(operation, fn, *args, retry=retry, **kwargs)

    def _get(self, server_id: str, zone: str) -> Any:
        return self._call("get_server", self.client.instance.get_server, server_id=server_id, zone=zone).server

    def _info(self, server: Any) -> ServerInfo:
        return convert.server_info(server, engine_port=self.settings.engine_port, agent_port=self.settings.agent_port)

    def _create(self, instance_id: str, placement: Placement, tags: Sequence[str], ip: Any) -> Any:
        settings = self.settings
        root = VolumeServerTemplate(volume_type="sbs_volume", size=settings.root_volume_gb * 10**9,
                                    name=naming.root_volume_name(instance_id), boot=None)
        return self._call(
            "create_server", self.client.instance.create_server, retry=False,
            zone=placement.zone_code,
            commercial_type=placement.instance_type_code,
            name=naming.server_name(instance_id),
            image=settings.image,
            volumes={"0": root},
            boot_type="local",
            dynamic_ip_required=ip is None,
            public_ips=[ip.id] if ip is not None else None,
            routed_ip_enabled=True,
            tags=tags,
            security_group=settings.security_group_id,
            project=settings.project_id,
        ).server

    def _reserve_ip(self, instance_id: str, zone: str, tags: Sequence[str]) -> Any:
        """A reserved IPv4 for this instance: a detached one tagged with it (left by an earlier
        attempt whose create failed), else a new one, tagged before the server exists."""
        tag = naming.instance_tag(self.settings.tag_prefix, instance_id)
        api = self.client.instance
        for ip in self._call("list_ips", api.list_ips_all, zone=zone, tags=[tag], per_page=_PAGE):
            if tag in (ip.tags or ()) and getattr(ip, "server", None) is None and convert.text(ip.type_) != "routed_ipv6":
                return ip
        ip = self._call("create_ip", api.create_ip, retry=False, zone=zone, type_="routed_ipv4",
                        tags=naming.resource_tags(tags), project=self.settings.project_id).ip
        log.info("scaleway.ip_reserved", ip_id=ip.id, instance_id=instance_id)
        return ip

    def _release_ip(self, ip_id: str, zone: str) -> None:
        try:
            self._call("delete_ip", self.client.instance.delete_ip, ip=ip_id, zone=zone)
        except NotFound:
            pass
        except ComputeError as exc:  # the janitor finds it by its instance tag
            log.warning("scaleway.ip_release_failed", ip_id=ip_id, error=str(exc))

    def _prepare_and_start(self, server: Any, zone: str, tags: Sequence[str], ip: Any, user_data: str | None) -> Any:
        """Tag the root volume and the IP with the server, set cloud-init, power on. Idempotent:
        a failed attempt re-reads the server and does it all again."""
        resource_tags = naming.with_tag(naming.resource_tags(tags),
                                        naming.server_tag(self.settings.tag_prefix, server.id))
        last: Exception | None = None
        for _ in range(self.settings.max_attempts):
            try:
                for volume in (server.volumes or {}).values():
                    if volume is not None and convert.text(volume.volume_type) == "sbs_volume":
                        self._call("update_volume", self.client.block.update_volume, volume_id=volume.id, zone=zone,
                                   tags=resource_tags)
                if ip is not None:
                    self._call("update_ip", self.client.instance.update_ip, ip=ip.id, zone=zone, tags=resource_tags)
                if user_data is not None:
                    self._call("set_user_data", self.client.instance.set_server_user_data, server_id=server.id,
                               key=CLOUD_INIT_USER_DATA, content=user_data.encode("utf-8"), zone=zone)
                self._power_on(server, zone)
                return self._get(server.id, zone)
            except Transient as exc:
                last = exc
                log.info("scaleway.prepare_retry", server_id=server.id, error=str(exc))
                server = self._get(server.id, zone)
        assert last is not None
        raise last

    def _power_on(self, server: Any, zone: str) -> None:
        if convert.text(server.state) != "stopped":
            return  # already on its way (an earlier attempt's poweron landed)
        try:
            self._call("action_poweron", self.client.instance.server_action, retry=False,
                       server_id=server.id, zone=zone, action="poweron")
        except Conflict:
            if convert.text(self._get(server.id, zone).state) == "stopped":
                raise
        log.info("scaleway.server_powered_on", server_id=server.id)

    def _wait_for_address(self, server: Any, zone: str) -> Any:
        """Dynamic IPs appear once the server runs: wait for one within the budget (best effort)."""
        deadline = self._now() + self.settings.operation_budget_s
        while convert.public_ipv4(server) is None and self._now() < deadline:
            self._sleep(self.settings.poll_interval_s)
            server = self._get(server.id, zone)
        return server

    def _all_pages(self, operation: str, fetch: Callable[..., Any], zone: str) -> dict[str, Any]:
        """Map-shaped listings have no ``*_all`` helper: read pages until one is empty."""
        found: dict[str, Any] = {}
        for page in range(1, _MAX_PAGES + 1):
            servers = self._call(operation, fetch, zone=zone, page=page, per_page=_PAGE).servers or {}
            fresh = {name: value for name, value in servers.items() if name not in found}
            if not fresh:
                break
            found.update(fresh)
        return found
