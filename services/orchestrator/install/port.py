"""The ``Installer`` port: put a worker on a server and say where its install stands.

The lifecycle handlers take this Protocol; ``SshInstaller`` (installer.py) implements it over SSH.
Errors are the orchestrator's vocabulary (services/orchestrator/ports.py): ``Transient`` for a
server that is not reachable or not accepting us yet, ``Permanent`` for one that must not be
trusted (host key mismatch, no pinned fingerprint) or cannot run the install (missing tools).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .model import DEFAULT_BASE_DIR, InstallStatus, SshTarget, WorkerSpec


@runtime_checkable
class Installer(Protocol):
    async def start(self, target: SshTarget, spec: WorkerSpec) -> None:
        """Start installing ``spec`` detached on the server; returns once it runs (or already ran).

        Idempotent: the same generation running or succeeded is a no-op, a failed one is retried,
        a higher one replaces the worker (its agent drains first), a lower one is ignored.
        """
        ...

    async def status(self, target: SshTarget, base_dir: str = DEFAULT_BASE_DIR) -> InstallStatus:
        """One short read of the state files and the log tail under ``base_dir``."""
        ...
