"""Checks against the machine, run before anything starts: credentials readable and well formed,
engine installed and its command line acceptable, ports free. Each failure is a ``ConfigError``
with one line saying what to fix.

The agent's own listening socket is bound here and handed to the HTTP server, so the port
cannot be taken between the check and the use. The engine's port can only be checked: the
engine binds it itself.
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

from .engine_command import engine_command
from .settings import AgentSettings, ConfigError


CREDS_WHERE = "--nats-creds-file / INVENTIV_NATS_CREDS_FILE"
NKEY_WHERE = "--nats-nkey-seed-file / INVENTIV_NATS_NKEY_SEED_FILE"


def _read_secret(path: str, where: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None


def _nkeys(where: str):
    # nats-py signs the server's nonce with the ``nkeys`` package for both forms of identity.
    try:
        import nkeys
    except ImportError:
        raise ConfigError(f"{where}: the nkeys package is missing; install the agent extra "
                          "(pip install 'inventiv[agent]')") from None
    return nkeys


def check_creds(path: str | None, where: str = CREDS_WHERE) -> None:
    """``where`` names the setting in errors (the control plane's services check theirs here too)."""
    if path is None:
        return
    text = _read_secret(path, where)
    if "NATS USER JWT" not in text or "USER NKEY SEED" not in text:
        raise ConfigError(f"{where}: {path} is not a NATS .creds file (expected a user JWT and an nkey seed)")
    _nkeys(where)


def check_nkey_seed(path: str | None, where: str = NKEY_WHERE) -> None:
    """A user nkey seed (``SU...``) alone in the file, as ``nk -gen user`` writes it."""
    if path is None:
        return
    seed = _read_secret(path, where).strip()
    nkeys = _nkeys(where)
    try:
        if not seed.startswith("SU"):
            raise ValueError("not a user seed")
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except Exception:  # nkeys raises its own error types, and binascii/ValueError on garbage
        raise ConfigError(f"{where}: {path} does not hold a NATS user nkey seed (one line starting with SU)"
                          ) from None


def check_log_file(path: str | None) -> None:
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(f"--log-file / INVENTIV_LOG_FILE: cannot append to {path}: {exc.strerror or exc}") from None


def check_engine_command(settings: AgentSettings) -> None:
    try:
        engine_command(settings, sys.executable)
    except ValueError as exc:
        where = "--vllm-args / INVENTIV_VLLM_ARGS" if settings.engine == "vllm" else "--fake-args / INVENTIV_FAKE_ARGS"
        raise ConfigError(f"{where}: {exc}") from None


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
    check_creds(settings.nats_creds_file)
    check_nkey_seed(settings.nats_nkey_seed_file)
    check_log_file(settings.log_file)
    check_engine_command(settings)
    check_engine_installed(settings)
    check_engine_port(settings)
    return bind_agent_socket(settings)
