"""Lifecycle and fleet-upkeep settings from the environment (read once at start-up).

- ``INVENTIV_WATCH_INTERVAL_S`` (4): how often a serving instance's heartbeat is looked at.
- ``INVENTIV_STALE_AFTER_INTERVALS`` (3): heartbeat intervals missed before ``unavailable``.
- ``INVENTIV_UNAVAILABLE_LIMIT_S`` (600): unavailable this long → ``INVENTIV_UNAVAILABLE_ACTION``:
  ``reinstall`` (default; needs a provider with an installer, else the instance fails),
  ``replace`` (terminate and provision a new instance with the same placement) or ``none``.
- ``INVENTIV_MAX_REINSTALLS`` (3): automatic reinstalls stop at this install generation.
- ``INVENTIV_FAILED_SERVER_GRACE_S`` (900): a failed instance's server is released after this.
- ``INVENTIV_REINSTALL_STARTUP_TIMEOUT_S`` (3600): bring-up window of a reinstall or replacement.
- ``INVENTIV_RECONCILE_INTERVAL_S`` (120), ``INVENTIV_CLEANUP_INTERVAL_S`` (900),
  ``INVENTIV_CATALOG_SYNC_INTERVAL_S`` (3600): fleet tick periods; 0 turns one off.
- ``INVENTIV_PROVIDER_ZONES`` (comma-separated): zones always reconciled, besides those with instances.
- ``INVENTIV_PROVIDER_RETRY_BASE_S`` (1) / ``INVENTIV_PROVIDER_RETRY_CAP_S`` (30): the delay before
  retrying a failed provider call doubles from base to cap.
- ``INVENTIV_KEEPALIVE_S`` (10): how often a long step tells NATS it is still working; keep it
  well under the consumers' ``ack_wait`` (30 s in ``nats/consumers/*.json``).
- ``INVENTIV_ORPHAN_ACTION`` (``terminate``): what to do with a server tagged for an instance
  the log does not know: ``terminate`` or ``report`` (log and count only).
"""

from __future__ import annotations

import os

from services.runtime.settings import env_float, env_int

from .adapters.ticker import TickSchedule
from .domain.backoff import Backoff
from .domain.decision import Policy
from .fleet import FleetConfig


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in allowed:
        raise SystemExit(f"inventiv: {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def policy_from_env(*, install: bool) -> Policy:
    try:
        return Policy(
            install=install,
            watch_interval_s=env_float("INVENTIV_WATCH_INTERVAL_S", 4.0),
            stale_after_intervals=env_float("INVENTIV_STALE_AFTER_INTERVALS", 3.0),
            unavailable_limit_s=env_float("INVENTIV_UNAVAILABLE_LIMIT_S", 600.0),
            unavailable_action=_choice("INVENTIV_UNAVAILABLE_ACTION", "reinstall", ("reinstall", "replace", "none")),
            max_reinstalls=env_int("INVENTIV_MAX_REINSTALLS", 3),
            failed_server_grace_s=env_float("INVENTIV_FAILED_SERVER_GRACE_S", 900.0),
            reinstall_startup_timeout_s=env_int("INVENTIV_REINSTALL_STARTUP_TIMEOUT_S", 3600),
        )
    except ValueError as exc:
        raise SystemExit(f"inventiv: {exc}") from None


def handler_timings_from_env() -> dict:
    """Keyword arguments for ``HandlerConfig``: the provider retry curve and the keepalive period."""
    try:
        curve = Backoff(base_s=env_float("INVENTIV_PROVIDER_RETRY_BASE_S", 1.0),
                        cap_s=env_float("INVENTIV_PROVIDER_RETRY_CAP_S", 30.0))
    except ValueError as exc:
        raise SystemExit(f"inventiv: INVENTIV_PROVIDER_RETRY_BASE_S/CAP_S: {exc}") from None
    keepalive_s = env_float("INVENTIV_KEEPALIVE_S", 10.0)
    if keepalive_s <= 0:
        raise SystemExit("inventiv: INVENTIV_KEEPALIVE_S must be > 0")
    return {"provider_backoff": curve, "keepalive_s": keepalive_s}


def tick_schedule_from_env() -> TickSchedule:
    return TickSchedule(
        reconcile_s=max(0.0, env_float("INVENTIV_RECONCILE_INTERVAL_S", 120.0)),
        cleanup_s=max(0.0, env_float("INVENTIV_CLEANUP_INTERVAL_S", 900.0)),
        catalog_sync_s=max(0.0, env_float("INVENTIV_CATALOG_SYNC_INTERVAL_S", 3600.0)),
    )


def fleet_config_from_env(provider: str) -> FleetConfig:
    zones = tuple(z.strip() for z in os.environ.get("INVENTIV_PROVIDER_ZONES", "").split(",") if z.strip())
    return FleetConfig(
        provider_code=provider,
        zones=zones,
        orphan_action=_choice("INVENTIV_ORPHAN_ACTION", "terminate", ("terminate", "report")),  # type: ignore[arg-type]
    )
