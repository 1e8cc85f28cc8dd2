"""Make a server go away and take what it leaves behind with it (scaleway.md §0.5, §5).

One call does as much as it can within the operation budget, then returns; every call starts
from what the API says now, so a teardown interrupted by a timeout, a crash or a restart
resumes where the server is:

1. server visible: tag its block volumes and reserved IPs with ``<prefix>:server=<id>`` (a
   root volume created before a crash may lack it), then drive it with ``next_delete_step``:
   terminate when offered, else (or when refused) poweroff -> stopped -> DELETE;
2. server gone (404): delete the block volumes and IPs carrying its tag, waiting for volumes to
   finish detaching; when the budget runs out first, raise ``Transient`` so the handler comes
   back (``terminate`` only detaches block volumes; IPs survive both paths);
3. returns normally while the server is still there at the deadline (the handler's
   ``get_server`` then sees it and retries later), raises ``NotFound`` when the server was
   already gone and nothing is left.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import structlog

from ...ports import Conflict, NotFound, Permanent, Transient
from . import naming
from .client import ScalewayClient
from .convert import attached_server_id, text
from .deletion import next_delete_step
from .settings import ScalewaySettings

log = structlog.get_logger(__name__)

_VOLUME_BUSY = frozenset({"creating", "deleting", "deleted"})


class Teardown:
    def __init__(self, client: ScalewayClient, settings: ScalewaySettings, *,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic):
        self.client = client
        self.settings = settings
        self._sleep = sleep
        self._now = monotonic

    def run(self, server_id: str, zone: str) -> None:
        deadline = self._now() + self.settings.operation_budget_s
        server = self._get(server_id, zone)
        if server is None:
            self._release_leftovers(server_id, zone, deadline)
            raise NotFound(f"server {server_id} not found")
        self._tag_leftovers(server, zone)
        terminate_refused = False
        while True:
            step = next_delete_step(text(server.state), [text(a) for a in server.allowed_actions or ()],
                                    terminate_refused)
            if step == "locked":
                raise Conflict(f"server {server_id} is locked by Scaleway; deletion needs support")
            refused = self._perform(step, server_id, zone)
            if refused:
                terminate_refused = True
                log.warning("scaleway.terminate_refused", server_id=server_id, error=refused)
            server = self._get(server_id, zone)
            if server is None:
                log.info("scaleway.server_gone", server_id=server_id, last_step=step)
                self._release_leftovers(server_id, zone, deadline)
                return
            if refused:
                continue  # straight to the fallback, no wait
            if self._now() >= deadline:
                log.info("scaleway.server_still_present", server_id=server_id, state=text(server.state))
                return
            self._sleep(self.settings.poll_interval_s)

    # --- steps --------------------------------------------------------------------------------

    def _perform(self, step: str, server_id: str, zone: str) -> str | None:
        """Do ``step``; return the refusal message when ``terminate`` is refused, else None."""
        api = self.client.instance
        try:
            if step in ("terminate", "poweroff"):
                # Not retried blindly: a 5xx may hide an accepted action; the loop re-reads the state.
                self.client.call(f"action_{step}", api.server_action, retry=False,
                                 server_id=server_id, zone=zone, action=step)
            elif step == "delete":
                self.client.call("delete_server", api.delete_server, retry=False, server_id=server_id, zone=zone)
        except NotFound:
            return None  # gone meanwhile: the re-read says so
        except (Conflict, Permanent) as exc:
            if step == "terminate":
                return str(exc)
            if isinstance(exc, Conflict):
                return None  # the state moved under us (stopping, starting): re-read and go on
            raise
        return None

    def _get(self, server_id: str, zone: str) -> Any | None:
        try:
            return self.client.call("get_server", self.client.instance.get_server, server_id=server_id, zone=zone).server
        except NotFound:
            return None

    # --- what a server leaves behind ----------------------------------------------------------

    def _tag_leftovers(self, server: Any, zone: str) -> None:
        """Make sure its block volumes and reserved IPs carry the server tag before it disappears."""
        tag = naming.server_tag(self.settings.tag_prefix, server.id)
        block = self.client.block
        for volume in (server.volumes or {}).values():
            if volume is None or text(volume.volume_type) != "sbs_volume":
                continue  # local and scratch volumes go with the server
            try:
                current = self.client.call("get_volume", block.get_volume, volume_id=volume.id, zone=zone)
            except NotFound:
                continue
            if tag not in (current.tags or ()):
                self.client.call("update_volume", block.update_volume, volume_id=volume.id, zone=zone,
                                 tags=naming.with_tag(current.tags or (), tag))
        for ip in server.public_ips or ():
            if ip is None or ip.dynamic or tag in (ip.tags or ()):
                continue
            try:
                self.client.call("update_ip", self.client.instance.update_ip, ip=ip.id, zone=zone,
                                 tags=naming.with_tag(ip.tags or (), tag))
            except NotFound:
                continue

    def _release_leftovers(self, server_id: str, zone: str, deadline: float) -> None:
        tag = naming.server_tag(self.settings.tag_prefix, server_id)
        while True:
            waiting = self._delete_volumes(server_id, zone, tag)
            self._delete_ips(server_id, zone, tag)
            if not waiting:
                return
            if self._now() >= deadline:
                raise Transient(f"server {server_id} is gone but volumes {', '.join(waiting)} are still detaching")
            self._sleep(self.settings.poll_interval_s)

    def _delete_volumes(self, server_id: str, zone: str, tag: str) -> list[str]:
        """Delete the detached volumes tagged with the server; return those still detaching from it."""
        block = self.client.block
        volumes = self.client.call("list_volumes", block.list_volumes_all, zone=zone, include_deleted=False,
                                   tags=[tag], page_size=100)
        waiting = []
        for volume in volumes:
            if tag not in (volume.tags or ()) or text(volume.status) in _VOLUME_BUSY:
                continue
            attached_to = attached_server_id(volume)
            if attached_to not in (None, server_id):
                log.warning("scaleway.volume_reattached", volume_id=volume.id, server_id=attached_to)
                continue
            if attached_to == server_id:
                waiting.append(volume.id)
                continue
            try:
                self.client.call("delete_volume", block.delete_volume, volume_id=volume.id, zone=zone)
                log.info("scaleway.volume_deleted", volume_id=volume.id, server_id=server_id)
            except NotFound:
                pass
            except Conflict:
                waiting.append(volume.id)
        return waiting

    def _delete_ips(self, server_id: str, zone: str, tag: str) -> None:
        api = self.client.instance
        for ip in self.client.call("list_ips", api.list_ips_all, zone=zone, tags=[tag], per_page=100):
            if tag not in (ip.tags or ()):
                continue
            attached_to = getattr(getattr(ip, "server", None), "id", None)
            if attached_to not in (None, server_id):
                log.warning("scaleway.ip_reattached", ip_id=ip.id, server_id=attached_to)
                continue
            try:
                self.client.call("delete_ip", api.delete_ip, ip=ip.id, zone=zone)
                log.info("scaleway.ip_deleted", ip_id=ip.id, server_id=server_id)
            except NotFound:
                pass
