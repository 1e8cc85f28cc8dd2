"""Fixtures for the orchestrator against a real nats-server: a running orchestrator, a stand-in engine."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pytest_asyncio
from aiohttp import web

from contracts import codec, commands, headers
from services.orchestrator.adapters.jetstream_consumer import ConsumerConfig
from services.orchestrator.adapters.memory import FakeCompute
from services.orchestrator.bootstrap import Orchestrator, build_ports
from services.orchestrator.domain.backoff import Backoff
from services.orchestrator.handlers import HandlerConfig
from services.runtime.eventstore import JetStreamEventStore


@dataclass
class StandInEngine:
    """A tiny OpenAI-shaped engine: lists ``models`` on /v1/models."""

    url: str
    models: list[str]


@pytest_asyncio.fixture
async def engine():
    state = StandInEngine(url="", models=[])

    async def list_models(request):
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in state.models]})

    app = web.Application()
    app.router.add_get("/v1/models", list_models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@dataclass
class Running:
    orchestrator: Orchestrator
    compute: object
    store: JetStreamEventStore
    task: asyncio.Task
    stop: asyncio.Event

    async def publish(self, command, msg_id: str | None = None) -> None:
        hdrs = headers.envelope_headers(command)
        if msg_id is not None:
            hdrs[headers.MSG_ID] = msg_id
        js = self.orchestrator.nc.jetstream()
        await js.publish(codec.command_subject_for(command), codec.encode(command), stream="COMMANDS", headers=hdrs)

    async def events(self, org: str, instance: str):
        return [item.event for item in await self.store.load(f"evt.{org}.instance.{instance}.*")]

    async def tags(self, org: str, instance: str) -> list[str]:
        from contracts.events import event_tag

        return [event_tag(e) for e in await self.events(org, instance)]


@contextlib.asynccontextmanager
async def running_orchestrator(nc, compute, *, config: HandlerConfig | None = None, installer=None, probe=None):
    # A short check timer: tests wait on the real signal, not on a 15 s backoff.
    config = config or HandlerConfig(provider_timeout_s=10.0, check_backoff=Backoff(base_s=0.1, cap_s=0.5))
    overrides = {"probe": probe} if probe is not None else {}  # e.g. one that presents per-worker engine keys
    ports = build_ports(nc, compute, config=config, installer=installer, **overrides)
    orchestrator = Orchestrator(nc, ports, ConsumerConfig(fetch_timeout_s=0.2, drain_timeout_s=5.0))
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    try:
        yield Running(orchestrator, compute, JetStreamEventStore(nc.jetstream()), task, stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


@pytest_asyncio.fixture
async def orchestrator(nats_client, engine):
    compute = FakeCompute(upstream_url_for=lambda instance_id: engine.url)
    async with running_orchestrator(nats_client, compute) as running:
        yield running


__all__ = ["StandInEngine", "Running", "running_orchestrator", "commands"]
