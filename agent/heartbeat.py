"""Publishes ``Heartbeat`` on ``hb.<org>.<instance>`` every interval (±10 % jitter), and at once
when the worker status changes or NATS (re)connects.

Jitter keeps a fleet that booted together from heartbeating in lockstep. Heartbeats are core
NATS publishes: telemetry, captured by the HB stream, not facts needing an ack.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from contracts.codec import encode
from contracts.heartbeats import GpuSample, Heartbeat, SystemSample
from contracts.subjects import heartbeat_subject

from .gpu import GpuSampler
from .metrics import AgentMetrics
from .nats_link import NatsLink, NotConnected
from .state import AgentState
from .system import SystemSampler

log = structlog.get_logger("agent.heartbeat")

JITTER = 0.10


def jittered_interval(base_s: float, unit_random: float) -> float:
    """``base_s`` scaled into [0.9, 1.1) by ``unit_random`` in [0, 1)."""
    unit = min(max(unit_random, 0.0), 1.0)
    return base_s * (1.0 - JITTER + 2 * JITTER * unit)


def build_heartbeat(state: AgentState, *, model: str, interval_s: float, version: str, sha256: str,
                    gpus: tuple[GpuSample, ...], system: SystemSample | None, now: datetime) -> Heartbeat:
    return Heartbeat(
        status=state.status,
        model=model,
        sent_at=now,
        engine=state.engine_load,
        gpus=gpus,
        system=system,
        agent_version=version,
        agent_sha256=sha256,
        reason=state.reason,
        interval_s=interval_s,
    )


class HeartbeatPublisher:
    def __init__(self, *, state: AgentState, link: NatsLink, org_id: str, instance_id: str, model: str,
                 interval_s: float, version: str, sha256: str, gpu: GpuSampler, system: SystemSampler,
                 metrics: AgentMetrics, unit_random: Callable[[], float] = random.random) -> None:
        self.state = state
        self.link = link
        self.subject = heartbeat_subject(org_id, instance_id)
        self.model = model
        self.interval_s = interval_s
        self.version = version
        self.sha256 = sha256
        self.gpu = gpu
        self.system = system
        self.metrics = metrics
        self._random = unit_random
        self._gpus: tuple[GpuSample, ...] = ()
        self._gpus_at = float("-inf")
        self.wake = state.status_changed

    async def run(self) -> None:
        while True:
            self.wake.clear()
            try:
                await self.publish_once()
            except Exception:  # the loop must outlive any one bad heartbeat
                self.metrics.heartbeat_errors.labels(reason="error").inc()
                log.exception("heartbeat_failed")
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=jittered_interval(self.interval_s, self._random()))
            except TimeoutError:
                pass

    async def _gpu_sample(self) -> tuple[GpuSample, ...]:
        # A status-change heartbeat may follow a periodic one closely; reuse a fresh GPU reading
        # rather than fork nvidia-smi twice in a row.
        now = time.monotonic()
        if now - self._gpus_at >= self.interval_s / 2:
            self._gpus = await self.gpu.sample()
            self._gpus_at = now
            self.metrics.set_gpus(self._gpus)
        return self._gpus

    async def publish_once(self) -> bool:
        if not self.link.connected:
            self.metrics.heartbeat_errors.labels(reason="disconnected").inc()
            return False
        system = self.system.sample()
        self.metrics.set_system(system)
        heartbeat = build_heartbeat(
            self.state, model=self.model, interval_s=self.interval_s, version=self.version, sha256=self.sha256,
            gpus=await self._gpu_sample(), system=system, now=datetime.now(UTC),
        )
        try:
            await self.link.publish(self.subject, encode(heartbeat))
        except NotConnected:
            self.metrics.heartbeat_errors.labels(reason="disconnected").inc()
            return False
        except Exception as exc:  # nats-py raises a few types (outbound buffer full, closed, ...)
            self.metrics.heartbeat_errors.labels(reason="error").inc()
            log.warning("heartbeat_publish_failed", error=repr(exc))
            return False
        self.metrics.heartbeats.inc()
        log.debug("heartbeat_published", status=heartbeat.status, reason=heartbeat.reason)
        return True
