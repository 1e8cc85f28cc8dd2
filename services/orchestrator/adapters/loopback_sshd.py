"""A real SSH server on 127.0.0.1 whose exec requests run through a real local ``bash``.

For tests, and later for the mock provider as "a server reachable by SSH": an asyncssh server on an
ephemeral port with a freshly generated host key (``host_key_fingerprint`` is what a provider would
publish) that accepts exactly the authorized client keys, public-key auth only. Each exec request
runs as ``bash -c <command>`` in its own session with the configured working directory and
environment, like sshd does: stdin/stdout/stderr are piped through and the exit status returned.
Interactive shells, port forwarding, agent forwarding and SFTP are refused.

When a client disconnects before its command finished (or the server stops), the command's process
group is killed: ``bash`` and what it runs in the foreground, never what it started in a session of
its own (a detached install keeps running, as under sshd). Unlike sshd, which leaves such commands
to SIGPIPE, this keeps a test's stuck command from outliving the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path

import asyncssh
import structlog

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
_COPY_CHUNK = 64 * 1024


def default_env() -> dict[str, str]:
    """What a login over SSH typically gets: no INVENTIV_* or NATS settings of this process."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "USER": os.environ.get("USER", "root"),
    }


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: LoopbackSshd):
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connection_closed(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require auth; asyncssh checks the key against authorized_client_keys

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False


class LoopbackSshd:
    def __init__(
        self,
        authorized_client_keys: Iterable[asyncssh.SSHKey],
        *,
        cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        shell: str = "bash",
        host_key: asyncssh.SSHKey | None = None,
    ):
        keys = list(authorized_client_keys)
        if not keys:
            raise ValueError("at least one authorized client key is required")
        self._authorized = asyncssh.import_authorized_keys(
            "".join(key.export_public_key("openssh").decode() for key in keys))
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self.cwd = str(cwd) if cwd is not None else None
        self.env = dict(env) if env is not None else default_env()
        self.shell = shell
        # Every exec request received after authentication, in order (tests assert on it).
        self.commands: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        # Commands still running, by the connection that asked for them.
        self._running: dict[asyncssh.SSHServerConnection, set[asyncio.subprocess.Process]] = {}

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def host_key_fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    async def start(self) -> LoopbackSshd:
        self._server = await asyncssh.create_server(
            lambda: _Server(self), HOST, 0,
            server_host_keys=[self.host_key],
            authorized_client_keys=self._authorized,
            process_factory=self._handle,
            encoding=None,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            sftp_factory=None,
            keepalive_interval=0,
        )
        log.info("loopback_sshd.started", port=self.port, host_key=self.host_key_fingerprint)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in list(self._running):
            self._connection_closed(conn)

    def _connection_closed(self, conn: asyncssh.SSHServerConnection) -> None:
        for proc in self._running.pop(conn, set()):
            _kill_group(proc)

    async def __aenter__(self) -> LoopbackSshd:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"interactive shells are not supported\n")
            process.exit(1)
            return
        self.commands.append(command)
        if self.cwd is not None:
            Path(self.cwd).mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            self.shell, "-c", command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd, env=self.env,
            start_new_session=True,  # as sshd: the command is a session leader, detached from us
        )
        conn = process.channel.get_connection()
        self._running.setdefault(conn, set()).add(proc)
        feed = asyncio.create_task(_feed_stdin(process, proc))
        code: int | None = None
        try:
            await asyncio.gather(_copy(proc.stdout, process.stdout), _copy(proc.stderr, process.stderr))
            code = await proc.wait()
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            pass  # the client went away
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed
            if proc.returncode is None:
                _kill_group(proc)
                await proc.wait()
            self._running.get(conn, set()).discard(proc)
        if code is not None:
            # A command killed by a signal exits like a shell reports it: 128 + the signal number.
            with contextlib.suppress(asyncssh.Error, OSError):
                process.exit(code if code >= 0 else 128 - code)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """The command's process group (its own session: pgid == pid), foreground children included."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _copy(source: asyncio.StreamReader | None, sink: asyncssh.SSHWriter) -> None:
    assert source is not None
    while data := await source.read(_COPY_CHUNK):
        sink.write(data)
        await sink.drain()


async def _feed_stdin(process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    try:
        while data := await process.stdin.read(_COPY_CHUNK):
            proc.stdin.write(data)
            await proc.stdin.drain()
    except (asyncssh.Error, ConnectionError, BrokenPipeError):
        pass
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()
