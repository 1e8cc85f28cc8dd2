"""How workers are installed, from the environment: the SSH install driver or none.

``INVENTIV_INSTALL_WORKERS``: ``ssh`` (default for a real provider), ``mock`` (default for the
mock provider: its servers start their worker themselves, and a reinstall restarts it) or
``none`` (workers are started by the image; reinstall is refused). With ``ssh``:

- ``INVENTIV_SSH_PRIVATE_KEY_FILE`` (required): the control plane's client key; its public half
  must be authorised on the servers (for Scaleway: the ``AUTHORIZED_KEY`` tag or project keys).
- ``INVENTIV_SSH_USER`` (root), ``INVENTIV_SSH_PORT`` (22).
- ``INVENTIV_WORKER_NATS_URL`` (required): the NATS address *as workers reach it*.
- ``INVENTIV_WORKER_NATS_CREDS_FILE``: credentials shipped to the worker (file content, 0600 there).
- ``INVENTIV_WORKER_ENGINE`` (vllm), ``INVENTIV_WORKER_ENGINE_ARGS`` (extra engine flags as shell
  words, e.g. ``--enable-prefix-caching``; the flags the agent owns — max model length, tensor
  parallelism, GPU memory utilisation, dtype — are refused), ``INVENTIV_WORKER_AGENT_INSTALL`` (a pip requirement or wheel path,
  or ``preinstalled:<path>``; default ``inventiv[agent,gpu]``).
- ``INVENTIV_WORKER_HEARTBEAT_INTERVAL_S`` (4), ``INVENTIV_WORKER_AGENT_PORT`` (8080),
  ``INVENTIV_WORKER_ENGINE_PORT`` (8000), ``INVENTIV_WORKER_BIND_HOST`` (127.0.0.1; never a
  wildcard): where the engine listens. The control plane's proxy reaches the engine at the
  ``upstream_url`` the provider adapter derives from the server's address, so on a real provider
  set it to that address with ``server-address`` (and let only the control plane reach ports
  8000/8080 through the provider's security group) or to a private-network address.
  ``INVENTIV_WORKER_BASE_DIR`` (/opt/inventiv).
- ``INVENTIV_WORKER_RUN_AS`` (inventiv): the unprivileged system user the agent and the engine run
  as when the install runs as root (created if missing); ``-`` runs them as the SSH user instead.
- ``INVENTIV_WORKER_LOG_FILE_MAX_BYTES`` (10 MiB), ``INVENTIV_WORKER_LOG_FILE_BACKUPS`` (5): the agent's
  rotating log on the worker; its logs take at most ``(backups + 3) * max_bytes`` there.
- ``INVENTIV_ENGINE_KEY_SECRET`` (shared with the API): each worker's engine gets its own API key,
  derived from it per instance (services/runtime/engine_keys.py) and written to the worker's 0600
  env file. Without it the engine listens unauthenticated on ``bind_host`` (a warning at start).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import structlog

from services.runtime.engine_keys import engine_key_secret_from_env
from services.runtime.settings import env_float, env_int

from .adapters.ssh_install_driver import SshInstallDriver, WorkerTemplate
from .install.installer import SshInstaller
from .domain.effects import DriveInstall
from .install.model import (DEFAULT_BASE_DIR, DEFAULT_LOG_FILE_BACKUPS, DEFAULT_LOG_FILE_MAX_BYTES, DEFAULT_RUN_AS,
                            InvalidInstall)
from .adapters.mock_install_driver import MockInstallDriver
from .ports import Compute, InstallDriver

log = structlog.get_logger(__name__)


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"inventiv: {name} is required to install workers over SSH (INVENTIV_INSTALL_WORKERS=ssh)")
    return value


def install_mode(provider: str) -> str:
    default = "mock" if provider == "mock" else "ssh"
    mode = os.environ.get("INVENTIV_INSTALL_WORKERS", "").strip().lower() or default
    if mode not in ("ssh", "mock", "none"):
        raise SystemExit(f"inventiv: INVENTIV_INSTALL_WORKERS must be ssh, mock or none, got {mode!r}")
    if mode == "mock" and provider != "mock":
        raise SystemExit("inventiv: INVENTIV_INSTALL_WORKERS=mock only works with the mock provider")
    return mode


# INVENTIV_WORKER_RUN_AS value meaning "no switch: run the agent as the SSH user" (not a valid user name).
RUN_AS_SSH_USER = "-"


def worker_template_from_env() -> WorkerTemplate:
    creds_file = os.environ.get("INVENTIV_WORKER_NATS_CREDS_FILE", "").strip()
    run_as: str | None = os.environ.get("INVENTIV_WORKER_RUN_AS", "").strip() or DEFAULT_RUN_AS
    return WorkerTemplate(
        engine=os.environ.get("INVENTIV_WORKER_ENGINE", "vllm").strip() or "vllm",
        nats_url=_required("INVENTIV_WORKER_NATS_URL"),
        nats_creds=Path(creds_file).read_text() if creds_file else None,
        heartbeat_interval_s=env_float("INVENTIV_WORKER_HEARTBEAT_INTERVAL_S", 4.0),
        agent_port=env_int("INVENTIV_WORKER_AGENT_PORT", 8080),
        engine_port=env_int("INVENTIV_WORKER_ENGINE_PORT", 8000),
        engine_args=tuple(shlex.split(os.environ.get("INVENTIV_WORKER_ENGINE_ARGS", ""))),
        agent_install=os.environ.get("INVENTIV_WORKER_AGENT_INSTALL", "").strip() or "inventiv[agent,gpu]",
        base_dir=os.environ.get("INVENTIV_WORKER_BASE_DIR", "").strip() or DEFAULT_BASE_DIR,
        bind_host=os.environ.get("INVENTIV_WORKER_BIND_HOST", "").strip() or "127.0.0.1",
        ssh_port=env_int("INVENTIV_SSH_PORT", 22),
        ssh_username=os.environ.get("INVENTIV_SSH_USER", "").strip() or "root",
        run_as=None if run_as == RUN_AS_SSH_USER else run_as,
        log_file_max_bytes=env_int("INVENTIV_WORKER_LOG_FILE_MAX_BYTES", DEFAULT_LOG_FILE_MAX_BYTES),
        log_file_backups=env_int("INVENTIV_WORKER_LOG_FILE_BACKUPS", DEFAULT_LOG_FILE_BACKUPS),
        engine_key_secret=engine_key_secret_from_env(),
    )


def build_install_driver(provider: str, compute: Compute) -> InstallDriver | None:
    mode = install_mode(provider)
    if mode == "none":
        return None
    if mode == "mock":
        return MockInstallDriver(compute)  # type: ignore[arg-type]
    key_file = _required("INVENTIV_SSH_PRIVATE_KEY_FILE")
    template = worker_template_from_env()
    try:  # a bad setting stops the start-up, not every install later
        template.spec_for(DriveInstall("org", "instance", "server", "zone", 0, "org/model"))
    except InvalidInstall as exc:
        raise SystemExit(f"inventiv: worker install settings: {exc}") from None
    if template.engine_key_secret is None:
        log.warning("orchestrator.engine_keys_disabled",
                    detail="INVENTIV_ENGINE_KEY_SECRET is not set: installed engines accept /v1 requests without a key")
    return SshInstallDriver(compute, SshInstaller(key_file), template)
