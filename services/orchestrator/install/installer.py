"""``SshInstaller``: the Installer port over asyncssh, with the server's host key pinned.

Every call is one short SSH connection: ``start`` uploads the rendered script on stdin and runs its
launcher (which detaches the install and returns), ``status`` runs one read-only command. Nothing
waits on the install itself, so an orchestrator crash mid-install loses nothing.

Host-key pinning (reliability.md §4.6, scaleway.md §4): the server's key is checked against the
target's ``SHA256:`` fingerprints during the key exchange, before the client authenticates, so no
credential or secret ever reaches a server that is not the one the provider described. The
known-hosts file, ``~/.ssh/config`` and an ssh-agent are deliberately not consulted: the pin is
the whole truth, and a stale entry on the control plane's disk cannot widen it.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import structlog

from ..ports import Permanent, Transient
from .model import DEFAULT_BASE_DIR, InstallStatus, SshTarget, WorkerSpec
from .script import render_bootstrap, render_launch_command
from .status import UnreadableStatus, parse_status, render_status_command

log = structlog.get_logger(__name__)

ClientKey = str | os.PathLike | asyncssh.SSHKey
# Launcher exit codes that retrying cannot fix (sysexits: EX_UNAVAILABLE, EX_CONFIG); the rest are Transient.
_PERMANENT_EXIT_CODES = frozenset({64, 69, 78})


class HostKeyMismatch(Permanent):
    """The server presented a host key that is not pinned: possibly a man in the middle."""


class _PinnedHostKeyClient(asyncssh.SSHClient):
    def __init__(self, fingerprints: tuple[str, ...]):
        self._fingerprints = frozenset(fingerprints)
        self.rejected: list[str] = []

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint in self._fingerprints:
            return True
        self.rejected.append(fingerprint)
        return False


class SshInstaller:
    def __init__(self, client_key: ClientKey, *, connect_timeout_s: float = 15.0, command_timeout_s: float = 60.0):
        self._client_key = (client_key if isinstance(client_key, asyncssh.SSHKey)
                            else asyncssh.read_private_key(Path(client_key)))
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s

    async def start(self, target: SshTarget, spec: WorkerSpec) -> None:
        result = await self._run(target, render_launch_command(spec.base_dir), render_bootstrap(spec), "start")
        output = _text(result.stdout).strip()
        if result.exit_status != 0:
            message = (f"install launcher on {target.host} exited with {result.exit_status}: "
                       f"{(_text(result.stderr).strip() or output)[-500:]}")
            if result.exit_status in _PERMANENT_EXIT_CODES:
                raise Permanent(message)
            raise Transient(message)
        log.info("install.start", host=target.host, instance_id=spec.instance_id, generation=spec.generation,
                 outcome=output[-200:])

    async def status(self, target: SshTarget, base_dir: str = DEFAULT_BASE_DIR) -> InstallStatus:
        result = await self._run(target, render_status_command(base_dir), None, "status")
        if result.exit_status != 0:
            raise Transient(f"install status on {target.host} exited with {result.exit_status}: "
                            f"{_text(result.stderr).strip()[-300:]}")
        try:
            return parse_status(_text(result.stdout))
        except UnreadableStatus as exc:
            raise Transient(str(exc)) from None

    async def _run(self, target: SshTarget, command: str, stdin: str | None, what: str) -> asyncssh.SSHCompletedProcess:
        if not target.host_key_fingerprints:
            # Never fall back to trust-on-first-use or to no check at all (known_hosts=None).
            raise Permanent(f"no host key fingerprint pinned for {target.host}: refusing to connect")
        client = _PinnedHostKeyClient(target.host_key_fingerprints)
        where = f"{target.username}@{target.host}:{target.port}"
        try:
            async with asyncssh.connect(
                target.host,
                target.port,
                username=target.username,
                client_factory=lambda: client,
                # A non-empty but keyless known_hosts: every key goes through validate_host_public_key,
                # and asyncssh does not fall back to ~/.ssh/known_hosts (it does for an empty value).
                known_hosts=([], [], []),
                x509_trusted_certs=None,
                client_keys=[self._client_key],
                agent_path=None,
                config=[],
                preferred_auth="publickey",
                connect_timeout=self.connect_timeout_s,
                login_timeout=self.connect_timeout_s,
            ) as conn:
                return await conn.run(command, input=stdin, check=False, timeout=self.command_timeout_s)
        except asyncssh.HostKeyNotVerifiable:
            seen = ", ".join(client.rejected) or "unknown"
            log.error("install.host_key_mismatch", host=target.host, port=target.port, seen=seen,
                      pinned=list(target.host_key_fingerprints))
            raise HostKeyMismatch(
                f"SSH host key of {where} ({seen}) is not one of the pinned fingerprints "
                f"{list(target.host_key_fingerprints)}: possible man in the middle or a rebuilt server; "
                "nothing was sent") from None
        except asyncssh.PermissionDenied as exc:
            # Typically a server still booting: cloud-init has not installed our key yet.
            raise Transient(f"SSH {what} on {where}: our key is not accepted (yet): {exc.reason}") from None
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            # Refused, reset, unreachable, DNS, timeouts (asyncssh.TimeoutError is an OSError too),
            # a connection lost mid-command: all worth retrying; start and status are idempotent.
            raise Transient(f"SSH {what} on {where} failed: {type(exc).__name__}: {_describe(exc)}") from None


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def _describe(exc: BaseException) -> str:
    return str(getattr(exc, "reason", "") or exc or type(exc).__name__)[:300]
