"""Heartbeats: telemetry a worker agent publishes to ``hb.<org>.<instance>``.

Not domain facts. The instance id is taken from the subject (the agent's NATS credentials
only allow its own subject), never from this payload.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

WorkerStatus = Literal["starting", "ready", "draining", "unhealthy", "failed"]


class EngineLoad(msgspec.Struct, frozen=True, kw_only=True):
    requests_running: float = 0.0
    requests_waiting: float = 0.0
    # 0..1; from vllm:kv_cache_usage_perc (or the older vllm:gpu_cache_usage_perc).
    kv_cache_usage: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    # Models the engine lists on /v1/models.
    models: tuple[str, ...] = ()


class GpuSample(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    name: str | None = None
    utilization_pct: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None


class SystemSample(msgspec.Struct, frozen=True, kw_only=True):
    cpu_pct: float | None = None
    load1: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    disk_used_bytes: int | None = None
    disk_total_bytes: int | None = None
    net_rx_bytes_total: int | None = None
    net_tx_bytes_total: int | None = None


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    status: WorkerStatus
    model: str
    sent_at: datetime
    engine: EngineLoad = EngineLoad()
    gpus: tuple[GpuSample, ...] = ()
    system: SystemSample | None = None
    agent_version: str = ""
    agent_sha256: str = ""
    # Why the status is what it is, e.g. "stalled", "engine_exited".
    reason: str | None = None
    interval_s: float = 4.0
