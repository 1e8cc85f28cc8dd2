"""The one place that chooses adapters. Everything else receives ports.

Environment (read once, in ``orchestrator_settings_from_env``):

- ``INVENTIV_PROVIDER``: ``mock`` (default). ``scaleway`` is not wired yet.
- ``INVENTIV_ORCHESTRATOR_CONCURRENCY``: commands handled at once per replica (16).
- ``INVENTIV_PROVIDER_TIMEOUT_S``: outer timeout of one provider call (60).
- ``INVENTIV_PROVIDER_CONCURRENCY``: provider calls at once per replica (8).
- ``INVENTIV_MOCK_HEARTBEAT_INTERVAL_S``: heartbeat interval of mock workers' agents (4).
- ``INVENTIV_MOCK_FAILURE_RATE``: fraction of mock provider calls that raise Transient (0).
- ``INVENTIV_MOCK_AMBIGUOUS_CREATE_RATE``: fraction of mock creates that succeed then raise (0).

The mock provider keeps its ledger and agent logs under ``<data_dir>/mock-provider``. Its
agent processes are servers: they survive the orchestrator. ``stop_all_servers(data_dir)``
stops them all (``inventiv up`` calls it when the stack shuts down).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from nats.aio.client import Client as NATS

from services.runtime.eventstore import JetStreamEventStore
from services.runtime.settings import RuntimeSettings, env_float, env_int

from .adapters import mock_compute
from .adapters.engine_probe import HttpEngineProbe
from .adapters.heartbeat_watch import HeartbeatWatcher
from .adapters.jetstream_consumer import CommandConsumer, ConsumerConfig
from .adapters.nats_ports import JetStreamCommandPublisher, JetStreamHeartbeatReader
from .handlers import HandlerConfig, Ports, SystemClock
from .ports import Compute

log = structlog.get_logger(__name__)

PROVIDERS = ("mock",)


@dataclass(frozen=True, slots=True)
class OrchestratorSettings:
    provider: str = "mock"
    concurrency: int = 16
    provider_timeout_s: float = 60.0
    provider_concurrency: int = 8
    mock_heartbeat_interval_s: float = 4.0
    mock_failure_rate: float = 0.0
    mock_ambiguous_create_rate: float = 0.0


def orchestrator_settings_from_env() -> OrchestratorSettings:
    provider = os.environ.get("INVENTIV_PROVIDER", "mock").strip().lower() or "mock"
    if provider not in PROVIDERS:
        raise SystemExit(f"inventiv: INVENTIV_PROVIDER must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    return OrchestratorSettings(
        provider=provider,
        concurrency=max(1, env_int("INVENTIV_ORCHESTRATOR_CONCURRENCY", 16)),
        provider_timeout_s=env_float("INVENTIV_PROVIDER_TIMEOUT_S", 60.0),
        provider_concurrency=max(1, env_int("INVENTIV_PROVIDER_CONCURRENCY", 8)),
        mock_heartbeat_interval_s=env_float("INVENTIV_MOCK_HEARTBEAT_INTERVAL_S", 4.0),
        mock_failure_rate=env_float("INVENTIV_MOCK_FAILURE_RATE", 0.0),
        mock_ambiguous_create_rate=env_float("INVENTIV_MOCK_AMBIGUOUS_CREATE_RATE", 0.0),
    )


def mock_state_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "mock-provider"


def stop_all_servers(data_dir: Path, grace_s: float = 5.0) -> int:
    """Stop every mock worker process started under ``data_dir`` (for ``inventiv up`` at shutdown)."""
    return mock_compute.stop_all_servers(mock_state_dir(data_dir), grace_s=grace_s)


def build_compute(settings: RuntimeSettings, options: OrchestratorSettings) -> Compute:
    if options.provider == "mock":
        return mock_compute.MockCompute(
            mock_state_dir(settings.data_dir),
            nats_url=settings.nats_url,
            heartbeat_interval_s=options.mock_heartbeat_interval_s,
            failure_rate=options.mock_failure_rate,
            ambiguous_create_rate=options.mock_ambiguous_create_rate,
        )
    raise SystemExit(f"inventiv: provider {options.provider!r} is not available")


def build_ports(
    nc: NATS, compute: Compute, *, config: HandlerConfig | None = None, provider_concurrency: int = 8, **overrides
) -> Ports:
    js = nc.jetstream()
    parts = dict(
        store=JetStreamEventStore(js),
        compute=compute,
        heartbeats=JetStreamHeartbeatReader(js),
        probe=HttpEngineProbe(),
        commands=JetStreamCommandPublisher(js),
        clock=SystemClock(),
        provider_slots=provider_concurrency,
        config=config or HandlerConfig(),
    )
    parts.update(overrides)
    return Ports(**parts)


class Orchestrator:
    """The command consumer and the heartbeat watcher, run together until ``stop``."""

    def __init__(self, nc: NATS, ports: Ports, consumer_config: ConsumerConfig | None = None):
        self.nc = nc
        self.ports = ports
        self.consumer = CommandConsumer(nc.jetstream(), ports, consumer_config)
        self.watcher = HeartbeatWatcher(nc, ports.commands)

    async def run(self, stop: asyncio.Event) -> None:
        await self.watcher.start()
        try:
            await self.consumer.run(stop)
        finally:
            await self.watcher.stop()
            close = getattr(self.ports.probe, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def build_orchestrator(settings: RuntimeSettings, nc: NATS, options: OrchestratorSettings | None = None) -> Orchestrator:
    options = options or orchestrator_settings_from_env()
    compute = build_compute(settings, options)
    config = HandlerConfig(provider_timeout_s=options.provider_timeout_s)
    ports = build_ports(nc, compute, config=config, provider_concurrency=options.provider_concurrency)
    log.info("orchestrator.configured", provider=options.provider, concurrency=options.concurrency)
    return Orchestrator(nc, ports, ConsumerConfig(concurrency=options.concurrency, batch=options.concurrency))
