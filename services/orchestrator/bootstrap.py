"""The one place that chooses adapters. Everything else receives ports.

Environment (read once, in ``orchestrator_settings_from_env``):

- ``INVENTIV_PROVIDER``: ``mock`` (default) or ``scaleway`` (settings in
  ``adapters/scaleway/settings.py`` and the README's "Scaleway provider" section; missing
  credentials stop the start-up with a message naming them).
- ``INVENTIV_ORCHESTRATOR_CONCURRENCY``: commands handled at once per replica (16).
- ``INVENTIV_PROVIDER_TIMEOUT_S``: outer timeout of one provider call (60).
- ``INVENTIV_PROVIDER_CONCURRENCY``: provider calls at once per replica (8).
- ``INVENTIV_MOCK_HEARTBEAT_INTERVAL_S``: heartbeat interval of mock workers' agents (4).
- ``INVENTIV_MOCK_FAILURE_RATE``: fraction of mock provider calls that raise Transient (0).
- ``INVENTIV_MOCK_AMBIGUOUS_CREATE_RATE``: fraction of mock creates that succeed then raise (0).
- ``INVENTIV_ENGINE_KEY_SECRET``: per-worker engine keys are derived from it (shared with the API;
  services/runtime/engine_keys.py); the installers give each worker its key, the probe presents it.

The mock provider keeps its ledger and agent logs under ``<data_dir>/mock-provider``. Its
agent processes are servers: they survive the orchestrator. ``stop_all_servers(data_dir)``
stops them all (``inventiv up`` calls it when the stack shuts down).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from nats.aio.client import Client as NATS

from services.runtime.engine_keys import EngineKeySecret, engine_key_secret_from_env
from services.runtime.eventstore import JetStreamEventStore
from services.runtime.settings import RuntimeSettings, env_float, env_int

from .adapters import mock_compute
from .adapters.engine_probe import HttpEngineProbe
from .adapters.fleet_view import JetStreamFleetView
from .adapters.ticker import Ticker, TickSchedule
from .fleet import FleetConfig, handle_fleet
from .install_settings import build_install_driver
from .lifecycle_settings import fleet_config_from_env, handler_timings_from_env, policy_from_env, tick_schedule_from_env
from .adapters.heartbeat_watch import HeartbeatWatcher
from .adapters.jetstream_consumer import CommandConsumer, ConsumerConfig
from .adapters.nats_ports import JetStreamCommandPublisher, JetStreamHeartbeatReader
from .handlers import HandlerConfig, Ports, SystemClock
from .ports import Compute

if TYPE_CHECKING:
    from .adapters.scaleway.settings import ScalewaySettings

log = structlog.get_logger(__name__)

PROVIDERS = ("mock", "scaleway")
TIMERS_DURABLE = "orchestrator-timers"  # nats/consumers/orchestrator-timers.json


@dataclass(frozen=True, slots=True)
class OrchestratorSettings:
    provider: str = "mock"
    concurrency: int = 16
    provider_timeout_s: float = 60.0
    provider_concurrency: int = 8
    mock_heartbeat_interval_s: float = 4.0
    mock_failure_rate: float = 0.0
    mock_ambiguous_create_rate: float = 0.0
    scaleway: "ScalewaySettings | None" = None  # read from the environment when provider == "scaleway"
    engine_key_secret: EngineKeySecret | None = None  # INVENTIV_ENGINE_KEY_SECRET (redacted repr)


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
        scaleway=_scaleway_settings_from_env() if provider == "scaleway" else None,
        engine_key_secret=engine_key_secret_from_env(),
    )


def _scaleway_settings_from_env() -> "ScalewaySettings":
    from .adapters.scaleway.settings import ScalewayConfigError, settings_from_env

    try:
        return settings_from_env()
    except ScalewayConfigError as exc:
        raise SystemExit(f"inventiv: {exc}") from None


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
            engine_keys=options.engine_key_secret,
        )
    if options.provider == "scaleway":
        return _scaleway_compute(options)
    raise SystemExit(f"inventiv: provider {options.provider!r} is not available")


def _scaleway_compute(options: OrchestratorSettings) -> Compute:
    from .adapters.scaleway import ScalewayCompute  # imports the SDK: only when chosen

    scaleway = options.scaleway or _scaleway_settings_from_env()
    # One port call must end (and return "still there, retry later") before the handler's outer
    # timeout abandons its thread.
    budget = min(scaleway.operation_budget_s, max(1.0, options.provider_timeout_s * 0.7))
    try:
        return ScalewayCompute(replace(scaleway, operation_budget_s=budget))
    except ValueError as exc:  # the SDK's own checks (key, project id, zone, URL), secrets redacted
        raise SystemExit(f"inventiv: {exc}") from None


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

    def __init__(
        self,
        nc: NATS,
        ports: Ports,
        consumer_config: ConsumerConfig | None = None,
        *,
        fleet_config: FleetConfig | None = None,
        ticks: TickSchedule | None = None,
    ):
        self.nc = nc
        self.ports = ports
        js = nc.jetstream()
        config = consumer_config or ConsumerConfig()
        view = JetStreamFleetView(js, ports.store)
        fleet_config = fleet_config or FleetConfig()

        async def on_fleet(command):
            return await handle_fleet(command, ports, view, fleet_config)

        locks: dict = {}  # one command per instance at a time in this replica, across both consumers
        self.consumer = CommandConsumer(js, ports, config, locks, fleet=on_fleet)
        self.timers = CommandConsumer(js, ports, replace(config, durable=TIMERS_DURABLE), locks)
        self.watcher = HeartbeatWatcher(nc, ports.commands)
        # No schedule: no ticks (tests drive fleet commands themselves).
        self.ticker = Ticker(ports.commands, ticks or TickSchedule(0, 0, 0))

    async def run(self, stop: asyncio.Event) -> None:
        await self.watcher.start()
        try:
            await asyncio.gather(self.consumer.run(stop), self.timers.run(stop), self.ticker.run(stop))
        finally:
            await self.watcher.stop()
            close = getattr(self.ports.probe, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def build_orchestrator(settings: RuntimeSettings, nc: NATS, options: OrchestratorSettings | None = None) -> Orchestrator:
    options = options or orchestrator_settings_from_env()
    compute = build_compute(settings, options)
    installer = build_installer(settings, options, compute)
    policy = policy_from_env(install=installer is not None)
    config = HandlerConfig(provider_timeout_s=options.provider_timeout_s, policy=policy, **handler_timings_from_env())
    ports = build_ports(nc, compute, config=config, provider_concurrency=options.provider_concurrency,
                        installer=installer, probe=HttpEngineProbe(engine_keys=options.engine_key_secret))
    log.info("orchestrator.configured", provider=options.provider, concurrency=options.concurrency,
             installs_workers=installer is not None, unavailable_action=policy.unavailable_action,
             engine_keys=options.engine_key_secret is not None)
    return Orchestrator(
        nc, ports, ConsumerConfig(concurrency=options.concurrency, batch=options.concurrency),
        fleet_config=fleet_config_from_env(options.provider), ticks=tick_schedule_from_env(),
    )


def build_installer(settings: RuntimeSettings, options: OrchestratorSettings, compute: Compute):
    """The install driver for providers whose servers need the worker installed (None: the mock starts it)."""
    return build_install_driver(options.provider, compute)
