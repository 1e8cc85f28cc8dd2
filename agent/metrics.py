"""The agent's own Prometheus metrics (``GET /metrics`` on the agent port).

A private registry, not the global one, so tests and embedding never collide. Engine load is
mirrored from the engine's /metrics so one scrape of the agent shows both sides.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from contracts.heartbeats import EngineLoad, GpuSample, SystemSample, WorkerStatus

STATUSES: tuple[WorkerStatus, ...] = ("starting", "ready", "draining", "unhealthy", "failed")
SYSTEM_READINGS = (
    ("cpu_pct", "Machine CPU utilisation"),
    ("load1", "Machine 1-minute load average"),
    ("memory_used_bytes", "Machine memory used"),
    ("memory_total_bytes", "Machine memory total"),
    ("disk_used_bytes", "Disk used on the root filesystem"),
    ("disk_total_bytes", "Size of the root filesystem"),
    ("net_rx_bytes_total", "Bytes received on all interfaces but loopback (the kernel's counter)"),
    ("net_tx_bytes_total", "Bytes sent on all interfaces but loopback (the kernel's counter)"),
)


class SystemCollector(Collector):
    """``inventiv_agent_system_*`` from the last sample: a reading the machine did not give is
    absent, not a 0 (a plain Gauge would export 0 until first set)."""

    def __init__(self) -> None:
        self.sample: SystemSample | None = None

    def collect(self):
        sample = self.sample
        if sample is None:
            return
        for field, help_text in SYSTEM_READINGS:
            value = getattr(sample, field)
            if value is not None:
                yield GaugeMetricFamily(f"inventiv_agent_system_{field}", help_text, value=float(value))


class AgentMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        self.status = Gauge("inventiv_agent_status", "1 for the agent's current worker status", ["status"], registry=r)
        self.ready = Gauge("inventiv_agent_ready", "1 when the worker is ready to serve", registry=r)
        self.nats_connected = Gauge("inventiv_agent_nats_connected", "1 while connected to NATS", registry=r)
        self.heartbeats = Counter("inventiv_agent_heartbeats_published", "Heartbeats handed to NATS", registry=r)
        self.heartbeat_errors = Counter("inventiv_agent_heartbeat_publish_errors",
                                        "Heartbeats not published, by reason", ["reason"], registry=r)
        self.engine_restarts = Counter("inventiv_agent_engine_restarts", "Engine restarts after an exit", registry=r)
        self.engine_up = Gauge("inventiv_agent_engine_up", "1 while the engine process runs", registry=r)
        self.probe_failures = Counter("inventiv_agent_engine_probe_failures",
                                      "Failed probes of the engine, by endpoint", ["endpoint"], registry=r)
        self.garbage_lines = Counter("inventiv_agent_engine_metrics_garbage_lines",
                                     "Unparseable lines in the engine's /metrics", registry=r)
        self.requests_running = Gauge("inventiv_agent_engine_requests_running", "Engine requests running", registry=r)
        self.requests_waiting = Gauge("inventiv_agent_engine_requests_waiting", "Engine requests waiting", registry=r)
        self.kv_cache_usage = Gauge("inventiv_agent_engine_kv_cache_usage", "Engine KV-cache usage, 0..1", registry=r)
        self.prompt_tokens = Gauge("inventiv_agent_engine_prompt_tokens",
                                   "Engine prompt tokens processed (mirrors its counter)", registry=r)
        self.generation_tokens = Gauge("inventiv_agent_engine_generation_tokens",
                                       "Engine generation tokens produced (mirrors its counter)", registry=r)
        self.engine_stalled = Gauge("inventiv_agent_engine_stalled",
                                    "1 while requests run and the engine's generation counter does not move",
                                    registry=r)
        self.gpu_utilization = Gauge("inventiv_agent_gpu_utilization_pct", "GPU utilisation", ["gpu"], registry=r)
        self.gpu_memory_used = Gauge("inventiv_agent_gpu_memory_used_mib", "GPU memory used", ["gpu"], registry=r)
        self.gpu_memory_total = Gauge("inventiv_agent_gpu_memory_total_mib", "GPU memory total", ["gpu"], registry=r)
        self.gpu_temperature = Gauge("inventiv_agent_gpu_temperature_c", "GPU temperature", ["gpu"], registry=r)
        self.gpu_power = Gauge("inventiv_agent_gpu_power_w", "GPU power draw", ["gpu"], registry=r)
        # The machine, as sampled for heartbeats (the process collector above covers the agent itself).
        self.system = SystemCollector()
        r.register(self.system)
        for status in STATUSES:
            self.status.labels(status=status).set(0)
        for reason in ("disconnected", "error"):
            self.heartbeat_errors.labels(reason=reason)

    def set_status(self, status: WorkerStatus) -> None:
        for s in STATUSES:
            self.status.labels(status=s).set(1 if s == status else 0)
        self.ready.set(1 if status == "ready" else 0)

    def set_engine_load(self, load: EngineLoad) -> None:
        self.requests_running.set(load.requests_running)
        self.requests_waiting.set(load.requests_waiting)
        if load.kv_cache_usage is not None:
            self.kv_cache_usage.set(load.kv_cache_usage)
        if load.prompt_tokens_total is not None:
            self.prompt_tokens.set(load.prompt_tokens_total)
        if load.generation_tokens_total is not None:
            self.generation_tokens.set(load.generation_tokens_total)

    def set_gpus(self, gpus: tuple[GpuSample, ...]) -> None:
        for gpu in gpus:
            label = str(gpu.index)
            for gauge, value in ((self.gpu_utilization, gpu.utilization_pct),
                                 (self.gpu_memory_used, gpu.memory_used_mib),
                                 (self.gpu_memory_total, gpu.memory_total_mib),
                                 (self.gpu_temperature, gpu.temperature_c),
                                 (self.gpu_power, gpu.power_w)):
                if value is not None:
                    gauge.labels(gpu=label).set(value)

    def set_system(self, sample: SystemSample | None) -> None:
        if sample is not None:
            self.system.sample = sample

    def render(self) -> bytes:
        return generate_latest(self.registry)
