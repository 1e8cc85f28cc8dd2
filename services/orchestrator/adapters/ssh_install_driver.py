"""``SshInstallDriver``: the orchestrator's install port over a provider and an SSH ``Installer``.

One ``drive`` is one short step, safe to repeat:

1. ask the provider for the server: stopped → power it on; not running or no address yet → "not ready";
2. ask the provider for the server's SSH host-key fingerprints (published through its
   authenticated API): none yet → "not ready" (never connect unpinned);
3. read the install status over SSH; when this generation has not started (or an older one
   runs), start it — detached on the server, so nothing here waits for pip or the engine;
4. report where it stands. A failed install of this generation is reported, not restarted:
   the lifecycle decides (the instance fails with the install's exit code and log tail).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

import structlog

from services.runtime.engine_keys import EngineKeySecret

from ..domain.effects import DriveInstall, InstallObservation
from ..install.model import (DEFAULT_BASE_DIR, DEFAULT_LOG_FILE_BACKUPS, DEFAULT_LOG_FILE_MAX_BYTES, DEFAULT_RUN_AS,
                             SshTarget, WorkerSpec)
from ..install.port import Installer
from ..ports import Compute

log = structlog.get_logger(__name__)

Offload = Callable[..., Awaitable[Any]]
SERVER_ADDRESS = "server-address"


@dataclass(frozen=True, slots=True)
class WorkerTemplate:
    """What every worker gets; the instance fills in who it is and what it serves."""

    engine: str = "vllm"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None
    heartbeat_interval_s: float = 4.0
    agent_port: int = 8080
    engine_port: int = 8000
    engine_args: tuple[str, ...] = ()
    agent_install: str = "inventiv[agent,gpu]"
    base_dir: str = DEFAULT_BASE_DIR
    # Where the engine and agent listen: an address, or SERVER_ADDRESS for the address the provider
    # reports for the server (the control plane's proxy must reach the engine there; restrict
    # the ports to the control plane with the provider's security group).
    bind_host: str = "127.0.0.1"
    ssh_port: int = 22
    ssh_username: str = "root"
    # The unprivileged user the agent and the engine run as (the install runs as root); None: the SSH user.
    run_as: str | None = DEFAULT_RUN_AS
    log_file_max_bytes: int = DEFAULT_LOG_FILE_MAX_BYTES
    log_file_backups: int = DEFAULT_LOG_FILE_BACKUPS
    # INVENTIV_ENGINE_KEY_SECRET: each worker's engine gets its own key derived from it; None = no key.
    engine_key_secret: EngineKeySecret | None = field(default=None, repr=False)

    def spec_for(self, effect: DriveInstall, server_address: str | None = None) -> WorkerSpec:
        bind_host = self.bind_host
        if bind_host == SERVER_ADDRESS:
            bind_host = server_address or "127.0.0.1"
        return WorkerSpec(
            instance_id=effect.instance_id,
            org_id=effect.org_id,
            model_name=effect.model_name,
            served_model_name=effect.model_name,
            engine=self.engine,  # type: ignore[arg-type]
            nats_url=self.nats_url,
            nats_creds=self.nats_creds,
            heartbeat_interval_s=self.heartbeat_interval_s,
            agent_port=self.agent_port,
            engine_port=self.engine_port,
            engine_args=self.engine_args,
            agent_install=self.agent_install,
            base_dir=self.base_dir,
            generation=effect.generation,
            bind_host=bind_host,
            run_as=self.run_as,
            log_file_max_bytes=self.log_file_max_bytes,
            log_file_backups=self.log_file_backups,
            engine_api_key=(self.engine_key_secret.key_for(effect.instance_id)
                            if self.engine_key_secret is not None else None),
        )


class SshInstallDriver:
    def __init__(self, compute: Compute, installer: Installer, template: WorkerTemplate,
                 *, offload: Offload = asyncio.to_thread):
        self._compute, self._installer, self._template, self._offload = compute, installer, template, offload

    async def drive(self, effect: DriveInstall) -> InstallObservation:
        server = await self._offload(self._compute.get_server, effect.server_id, effect.zone)
        if server.state == "stopped":
            # Adopted after a create whose power-on never ran (a crash, an error after the create):
            # an instance being brought up wants its server running.
            await self._offload(self._compute.power_on, effect.server_id, effect.zone)
            log.info("orchestrator.server_powered_on", instance_id=effect.instance_id, server_id=effect.server_id)
            return InstallObservation(server_ready=False)
        if server.state != "running" or not server.ip_address:
            return InstallObservation(server_ready=False)
        fingerprints = await self._offload(self._compute.host_key_fingerprints, effect.server_id, effect.zone)
        if not fingerprints:
            return InstallObservation(server_ready=False)  # the server has not published its host keys yet
        target = SshTarget(server.ip_address, self._template.ssh_port, self._template.ssh_username,
                           tuple(fingerprints))
        status = await self._installer.status(target, self._template.base_dir)
        if _needs_start(status.state, status.generation, effect.generation):
            spec = self._template.spec_for(effect, server.ip_address)
            await self._installer.start(target, spec)
            log.info("orchestrator.install_started", instance_id=effect.instance_id, generation=effect.generation)
            status = await self._installer.status(target, self._template.base_dir)
        return InstallObservation(
            server_ready=True, state=status.state, phase=status.phase, generation=status.generation,
            exit_code=status.exit_code, log_tail=status.log_tail,
        )


def _needs_start(state: str, reported: int | None, wanted: int) -> bool:
    if state == "not_started" or reported is None:
        return True
    return reported < wanted  # an older install (or its failure): this generation replaces it


__all__ = ["SERVER_ADDRESS", "SshInstallDriver", "WorkerTemplate", "replace"]
