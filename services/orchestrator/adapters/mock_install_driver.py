"""The install port for the mock provider: its "install" is the worker process on the server.

A mock server starts its worker (generation 0) when it is created, like an image with the agent
baked in; a reinstall (generation N+1) replaces that process, the old one draining first. So the
dev stack goes through the same lifecycle as a real provider: install phases, reinstall, and an
install that "fails" when the worker process is gone.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..domain.effects import INSTALL_PHASES, DriveInstall, InstallObservation
from .mock_compute import MockCompute

Offload = Callable[..., Awaitable[Any]]


class MockInstallDriver:
    def __init__(self, compute: MockCompute, *, offload: Offload = asyncio.to_thread):
        self._compute, self._offload = compute, offload

    async def drive(self, effect: DriveInstall) -> InstallObservation:
        generation, alive, _ = await self._offload(self._compute.worker_status, effect.server_id)
        if generation < effect.generation:
            await self._offload(self._compute.reinstall_worker, effect.server_id, effect.generation)
            generation, alive, _ = await self._offload(self._compute.worker_status, effect.server_id)
        if alive:
            return InstallObservation(True, "succeeded", INSTALL_PHASES[-1], generation)
        _, _, tail = await self._offload(self._compute.worker_status, effect.server_id)
        return InstallObservation(True, "failed", INSTALL_PHASES[-1], generation, None,
                                  f"the worker process of generation {generation} is not running\n{tail}")
