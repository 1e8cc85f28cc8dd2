"""Performing effects: provider calls off the event loop, bounded and timed; heartbeat reads; install steps.

``perform(effect, ports, keepalive)`` never raises: every failure comes back as an
``EffectFailed`` value classified like the ports classify errors, so what an error *means*
stays in the pure core. Long steps keep the command message alive (``in_progress``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import structlog

from . import failpoints, metrics
from .domain.effects import (
    DeleteServer,
    DriveInstall,
    Effect,
    EffectFailed,
    EffectResult,
    EnsureServer,
    ProbeWorker,
    ServerGone,
    ServerStillPresent,
    WorkerObservation,
)
from .ports import ComputeError, NotFound, Permanent, RateLimited, Transient

if TYPE_CHECKING:
    from .handlers import Ports

log = structlog.get_logger(__name__)

Offload = Callable[..., Awaitable[Any]]  # offload(fn, *args) -> await fn(*args) off the event loop
Keepalive = Callable[[], Awaitable[None]]


async def perform(effect: Effect, ports: Ports, keepalive: Keepalive | None) -> EffectResult:
    """Perform one effect; every failure comes back as an ``EffectFailed`` value, never raised."""
    async with keeping_alive(keepalive, ports.config.keepalive_s):
        try:
            if isinstance(effect, EnsureServer):
                return await _ensure_server(effect, ports)
            if isinstance(effect, DeleteServer):
                return await _delete_server(effect, ports)
            if isinstance(effect, ProbeWorker):
                return await asyncio.wait_for(_probe_worker(effect, ports), ports.config.probe_timeout_s)
            if isinstance(effect, DriveInstall):
                return await _drive_install(effect, ports)
        except ComputeError as exc:
            return EffectFailed(exc.kind, str(exc) or type(exc).__name__,
                                getattr(exc, "retry_after_s", None))
        except asyncio.TimeoutError:
            return EffectFailed("timeout", f"{type(effect).__name__} timed out")
        except Exception as exc:  # an unclassified adapter error: retry, loudly
            log.exception("orchestrator.effect_error", effect=type(effect).__name__)
            return EffectFailed("transient", f"{type(exc).__name__}: {exc}")
    raise TypeError(f"unknown effect {effect!r}")


@contextlib.asynccontextmanager
async def keeping_alive(keepalive: Keepalive | None, interval_s: float):
    """Call ``keepalive`` (``msg.in_progress``) every ``interval_s`` while the body runs."""
    if keepalive is None:
        yield
        return

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(Exception):
                await keepalive()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def provider_call(ports: Ports, operation: str, fn: Callable[..., Any], *args: Any) -> Any:
    """One Compute call, off the event loop, bounded and timed, counted by result class."""
    started = time.monotonic()
    result = "ok"
    try:
        async with ports.slots():
            return await asyncio.wait_for(ports.offload(fn, *args), ports.config.provider_timeout_s)
    except asyncio.TimeoutError:
        result = "timeout"
        # The call may still complete in its thread: callers look up by tag before any retry.
        raise Transient(f"{operation} timed out after {ports.config.provider_timeout_s}s") from None
    except RateLimited:
        result = "rate_limited"
        raise
    except ComputeError as exc:
        result = exc.kind
        raise
    except Exception:
        result = "error"
        raise
    finally:
        metrics.PROVIDER_CALLS.labels(operation, result).inc()
        metrics.PROVIDER_SECONDS.labels(operation).observe(time.monotonic() - started)


async def _ensure_server(effect: EnsureServer, ports: Ports):
    zone = effect.placement.zone_code
    found = await provider_call(
        ports, "find_servers_by_tag", ports.compute.find_servers_by_tag, effect.instance_id, zone
    )
    if found:
        # Created before a crash, or by a delivery that ran at the same time: adopt the oldest
        # (a duplicate is deleted by whoever loses the race to record its own).
        log.info("orchestrator.server_adopted", server_id=found[0].server_id, tagged=len(found))
        return found[0]
    prefix = ports.config.tags_prefix
    tags = (prefix, f"{prefix}:instance={effect.instance_id}", f"{prefix}:org={effect.org_id}")
    failpoints.hit("before_provider_create")
    info = await provider_call(
        ports, "create_server", ports.compute.create_server,
        effect.instance_id, effect.org_id, effect.placement, None, tags,
    )
    failpoints.hit("after_provider_create")
    log.info("orchestrator.server_created", server_id=info.server_id, upstream_url=info.upstream_url)
    return info


async def _delete_one(ports: Ports, server_id: str, zone: str) -> ServerStillPresent | None:
    """Delete ``server_id`` and confirm; None when the provider says NotFound."""
    with contextlib.suppress(NotFound):
        await provider_call(ports, "delete_server", ports.compute.delete_server, server_id, zone)
    try:
        info = await provider_call(ports, "get_server", ports.compute.get_server, server_id, zone)
    except NotFound:
        return None
    return ServerStillPresent(server_id, info.state)


async def _delete_server(effect: DeleteServer, ports: Ports):
    absent: list[str] = []
    if effect.server_id is not None and effect.server_id != effect.keep:
        still = await _delete_one(ports, effect.server_id, effect.zone)
        if still is not None:
            return still
        absent.append(effect.server_id)
        if effect.compensating:
            _orphan_deleted(effect.server_id)
    if not effect.sweep:
        return ServerGone(tuple(absent))
    # Sweep: anything else tagged with this instance (a create whose outcome we never saw).
    tagged = await provider_call(
        ports, "find_servers_by_tag", ports.compute.find_servers_by_tag, effect.instance_id, effect.zone
    )
    for found in tagged:
        if found.server_id == effect.keep:
            continue
        if found.server_id in absent:
            return ServerStillPresent(found.server_id, found.state)
        still = await _delete_one(ports, found.server_id, effect.zone)
        if still is not None:
            return still
        absent.append(found.server_id)
        _orphan_deleted(found.server_id)
    return ServerGone(tuple(absent))


def _orphan_deleted(server_id: str) -> None:
    metrics.COMPENSATIONS.inc()
    log.warning("orchestrator.orphan_deleted", server_id=server_id)


async def _probe_worker(effect: ProbeWorker, ports: Ports) -> WorkerObservation:
    observed = await ports.heartbeats.last(effect.org_id, effect.instance_id)
    if observed is None:
        return WorkerObservation(None, None)
    hb = observed.heartbeat
    listed = None
    if effect.probe_engine and hb.status == "ready" and effect.upstream_url:
        listed = await ports.probe.lists_model(effect.upstream_url, effect.model_name, effect.instance_id)
    return WorkerObservation(hb.status, observed.received_at, hb.reason, listed, hb.interval_s)


async def _drive_install(effect: DriveInstall, ports: Ports):
    if ports.installer is None:
        raise Permanent("no installer is configured for this provider")
    started = time.monotonic()
    try:
        return await asyncio.wait_for(ports.installer.drive(effect), ports.config.install_step_timeout_s)
    except asyncio.TimeoutError:
        raise Transient(f"install step timed out after {ports.config.install_step_timeout_s}s") from None
    finally:
        metrics.PROVIDER_SECONDS.labels("install_step").observe(time.monotonic() - started)


