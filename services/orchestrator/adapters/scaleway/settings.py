"""Scaleway provider settings, read once from the environment.

Credentials use Scaleway's own variable names (the ones the ``scw`` CLI reads); everything
about how we shape servers is ``INVENTIV_SCW_*``. The secret key is never part of ``repr`` or
of any log line; the access key is shown as its first characters only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

DEFAULT_API_URL = "https://api.scaleway.com"
# Ubuntu 24.04 with the NVIDIA driver and container toolkit (scaleway.md §3): a marketplace
# label the API resolves per zone, so one setting works in every zone.
DEFAULT_IMAGE = "ubuntu_noble_gpu_os_13_nvidia"
IP_MODES = ("flexible", "dynamic")


class ScalewayConfigError(ValueError):
    """The environment does not describe a usable Scaleway account."""


@dataclass(frozen=True)
class ScalewaySettings:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    project_id: str
    default_zone: str = "fr-par-2"
    api_url: str = DEFAULT_API_URL
    image: str = DEFAULT_IMAGE
    root_volume_gb: int = 200  # the model weights live on the root volume: room for a 70B in fp16
    security_group_id: str | None = None
    # A public key the control plane logs in with (cloud-init's AUTHORIZED_KEY= server tag).
    ssh_public_key: str | None = None
    # "flexible": a tagged reserved IP attached at create, so the address (and the engine URL) is
    # known before the first boot and survives stop/start. "dynamic": Scaleway's per-boot IP.
    ip_mode: str = "flexible"
    engine_port: int = 8000  # the OpenAI-compatible engine on the worker (upstream_url)
    agent_port: int = 8080  # the worker agent's HTTP endpoint (agent_url)
    tag_prefix: str = "inv"  # must equal HandlerConfig.tags_prefix: find-by-tag reads what handlers write
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    # How long one port call may wait on the provider (deletion, IP assignment) before it
    # returns and lets the handler retry later. Keep it under INVENTIV_PROVIDER_TIMEOUT_S.
    operation_budget_s: float = 40.0
    poll_interval_s: float = 2.0
    # Retries inside one call, for idempotent requests only, on 5xx / timeouts / short 429s.
    max_attempts: int = 3
    retry_base_s: float = 0.5
    max_inline_wait_s: float = 10.0  # a longer Retry-After goes back to the handler as RateLimited

    def __post_init__(self) -> None:
        if self.ip_mode not in IP_MODES:
            raise ScalewayConfigError(f"INVENTIV_SCW_IP_MODE must be one of {', '.join(IP_MODES)}, got {self.ip_mode!r}")
        if self.root_volume_gb < 10:
            raise ScalewayConfigError("INVENTIV_SCW_ROOT_VOLUME_GB must be at least 10")
        if self.max_attempts < 1:
            raise ScalewayConfigError("INVENTIV_SCW_MAX_ATTEMPTS must be at least 1")

    def __repr__(self) -> str:
        shown = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in _SECRET}
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"ScalewaySettings(access_key={_mask(self.access_key)!r}, secret_key='***', {inner})"

    __str__ = __repr__


_SECRET = frozenset({"access_key", "secret_key"})


def _mask(value: str) -> str:
    return value[:5] + "***" if value else ""


def settings_from_env(environ: Mapping[str, str] | None = None) -> ScalewaySettings:
    """Read the settings; raise ``ScalewayConfigError`` naming every missing credential."""
    env = os.environ if environ is None else environ

    def text(name: str, default: str | None = None) -> str | None:
        value = env.get(name, "").strip()
        return value or default

    missing = [name for name in ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID") if not text(name)]
    if missing:
        raise ScalewayConfigError(
            f"INVENTIV_PROVIDER=scaleway needs {', '.join(missing)} (an IAM application's API key and "
            "the id of the project the workers live in)"
        )
    ssh_key = text("INVENTIV_SCW_SSH_PUBLIC_KEY")
    key_file = text("INVENTIV_SCW_SSH_PUBLIC_KEY_FILE")
    if ssh_key is None and key_file is not None:
        try:
            with open(key_file, encoding="utf-8") as handle:
                ssh_key = handle.read().strip() or None
        except OSError as exc:
            raise ScalewayConfigError(f"INVENTIV_SCW_SSH_PUBLIC_KEY_FILE: {exc}") from None
    try:
        return ScalewaySettings(
            access_key=text("SCW_ACCESS_KEY") or "",
            secret_key=text("SCW_SECRET_KEY") or "",
            project_id=text("SCW_DEFAULT_PROJECT_ID") or "",
            default_zone=text("SCW_DEFAULT_ZONE", "fr-par-2") or "fr-par-2",
            api_url=(text("INVENTIV_SCW_API_URL") or text("SCW_API_URL") or DEFAULT_API_URL).rstrip("/"),
            image=text("INVENTIV_SCW_IMAGE", DEFAULT_IMAGE) or DEFAULT_IMAGE,
            root_volume_gb=int(text("INVENTIV_SCW_ROOT_VOLUME_GB", "200") or 200),
            security_group_id=text("INVENTIV_SCW_SECURITY_GROUP_ID"),
            ssh_public_key=ssh_key,
            ip_mode=(text("INVENTIV_SCW_IP_MODE", "flexible") or "flexible").lower(),
            engine_port=int(text("INVENTIV_SCW_ENGINE_PORT", "8000") or 8000),
            agent_port=int(text("INVENTIV_SCW_AGENT_PORT", "8080") or 8080),
            connect_timeout_s=float(text("INVENTIV_SCW_CONNECT_TIMEOUT_S", "5") or 5),
            read_timeout_s=float(text("INVENTIV_SCW_READ_TIMEOUT_S", "30") or 30),
            operation_budget_s=float(text("INVENTIV_SCW_OPERATION_BUDGET_S", "40") or 40),
            poll_interval_s=float(text("INVENTIV_SCW_POLL_INTERVAL_S", "2") or 2),
            max_attempts=int(text("INVENTIV_SCW_MAX_ATTEMPTS", "3") or 3),
        )
    except ValueError as exc:
        if isinstance(exc, ScalewayConfigError):
            raise
        raise ScalewayConfigError(f"invalid Scaleway setting: {exc}") from None
