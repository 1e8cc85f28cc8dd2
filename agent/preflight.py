"""Checks against the machine, run before anything starts: creds readable, engine installed,
ports free. Each failure is a ``ConfigError`` with one line saying what to fix.

The agent's own listening socket is bound here and handed to the HTTP server, so the port
cannot be taken between the check and the use. The engine's port can only be checked: the
engine binds it itself.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from .settings import AgentSettings, ConfigError


def check_creds(path: str | None) -> None:
    if path is None:
        return
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"--nats-creds / INVENTIV_NATS_CREDS: cannot read {path}: {exc.strerror or exc}") from None
    if "NATS USER JWT" not in text or "USER NKEY SEED" not in text:
        raise ConfigError(f"--nats-creds / INVENTIV_NATS_CREDS: {path} is not a NATS .creds file "
                          "(expected a user JWT and an nkey seed)")


def check_engine_installed(settings: AgentSettings) -> None:
    if settings.engine == "vllm" and shutil.which(settings.vllm_bin) is None:
        raise ConfigError(f"engine vllm: {settings.vllm_bin!r} not found on PATH; install the gpu extra "
                          "(pip install 'inventiv[gpu]'), set --vllm-bin / INVENTIV_VLLM_BIN, or use --engine fake")


def _bound_socket(host: str, port: int, what: str) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--bind-host / INVENTIV_BIND_HOST: cannot resolve {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    # Same option the servers use (aiohttp, uvicorn): a port in TIME_WAIT is free, a listener is not.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{what} {port} on {host} is not available ({exc.strerror or exc}); "
                          f"free it or choose another port") from None
    return sock


def check_engine_port(settings: AgentSettings) -> None:
    _bound_socket(settings.bind_host, settings.engine_port, "--engine-port / INVENTIV_ENGINE_PORT").close()


def bind_agent_socket(settings: AgentSettings) -> socket.socket:
    sock = _bound_socket(settings.bind_host, settings.agent_port, "--agent-port / INVENTIV_AGENT_PORT")
    sock.listen(128)
    sock.setblocking(False)
    return sock


def preflight(settings: AgentSettings) -> socket.socket:
    """All machine checks; returns the agent's bound, listening socket."""
    check_creds(settings.nats_creds)
    check_engine_installed(settings)
    check_engine_port(settings)
    return bind_agent_socket(settings)
