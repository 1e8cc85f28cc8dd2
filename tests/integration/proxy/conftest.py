"""A real proxy (uvicorn on a free port, in the test's loop) fed through real NATS."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest_asyncio
import uvicorn

from contracts import codec, ids
from contracts.events import ApiKeyCreated, ApiKeyRevoked, InstanceReady, InstanceTerminated
from contracts.heartbeats import EngineLoad, Heartbeat
from services.api.keys import generate_api_key, hash_api_key, visible_prefix
from services.api.proxy import ProxySettings
from services.api.proxy.http_protocol import OpenAIErrorHttpToolsProtocol
from services.api.proxy.standalone import create_app
from services.runtime import natsio
from services.runtime.embedded import free_port
from services.runtime.eventstore import JetStreamEventStore
from tests.helpers import wait_until

from .stub_engine import StubEngine


def envelope(org: str) -> dict:
    return dict(id=ids.new_id(), org_id=org, actor="system:test", correlation_id=ids.new_id(),
                causation_id=ids.new_id(), occurred_at=datetime.now(timezone.utc))


class Harness:
    def __init__(self, nc, nats_url: str) -> None:
        self.nc = nc
        self.nats_url = nats_url
        self.js = nc.jetstream()
        self.store = JetStreamEventStore(self.js)
        self.org = ids.new_id()
        self.engines: list[StubEngine] = []
        self._runners = []
        self.server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self.app = None
        self.port = 0

    # --- the proxy ---------------------------------------------------------------------------

    async def start_proxy(self, *, database_url: str | None = None, bypass_litestar: bool = True,
                          **settings) -> None:
        defaults = dict(worker_stale_s=30.0, penalty_s=5.0, connect_timeout_s=1.0, read_timeout_s=10.0)
        defaults.update(settings)
        self.app = create_app(nats_url=self.nats_url, database_url=database_url or "",
                              settings=ProxySettings(**defaults), bypass_litestar=bypass_litestar)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="on", access_log=False,
                                log_level="warning", http=OpenAIErrorHttpToolsProtocol, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self.server.serve())
        await wait_until(lambda: self.server.started or self._task.done(), timeout_s=10, message="proxy started")
        assert self.server.started, "proxy failed to start"

    @property
    def stack(self):
        return self.app.state.proxy_stack

    @property
    def proxy(self):
        return self.stack.proxy

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await self._task
        for engine in self.engines:
            await engine.stop()
        for runner in self._runners:
            await runner.cleanup()

    # --- facts through NATS ------------------------------------------------------------------

    async def engine(self, model: str, **kw) -> StubEngine:
        engine = await StubEngine(model, **kw).start()
        self.engines.append(engine)
        return engine

    async def fake_engine(self, model: str, **kw) -> str:
        """The agent's fake engine (``agent.engines.fake_server``), in this loop; returns its URL."""
        from aiohttp import web

        from agent.engines.fake_server import FakeEngine

        runner = web.AppRunner(FakeEngine(model, **kw).app(), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{port}"

    async def ready(self, upstream_url: str, model: str, *, org: str | None = None, heartbeat: str | None = "ready",
                    instance_id: str | None = None) -> str:
        org = org or self.org
        iid = instance_id or ids.new_id()
        await self.store.append(InstanceReady(**envelope(org), instance_id=iid, upstream_url=upstream_url,
                                              model_name=model), expected_last_seq=None)
        if heartbeat:
            await self.heartbeat(iid, model, status=heartbeat, org=org)
        return iid

    async def terminated(self, iid: str, *, org: str | None = None) -> None:
        await self.store.append(InstanceTerminated(**envelope(org or self.org), instance_id=iid,
                                                   reason_code="test"), expected_last_seq=None)

    async def heartbeat(self, iid: str, model: str, *, status: str = "ready", org: str | None = None,
                        waiting: float = 0.0) -> None:
        hb = Heartbeat(status=status, model=model, sent_at=datetime.now(timezone.utc),
                       engine=EngineLoad(requests_waiting=waiting, models=(model,)))
        await self.nc.publish(f"hb.{org or self.org}.{iid}", codec.encode(hb))
        await self.nc.flush()

    async def api_key(self, *, org: str | None = None, scopes=("inference", "manage"), expires_at=None,
                      wait: bool = True) -> tuple[str, str]:
        raw = generate_api_key()
        key_id = ids.new_id()
        await self.store.append(ApiKeyCreated(**envelope(org or self.org), key_id=key_id, name="test",
                                              prefix=visible_prefix(raw), key_hash=hash_api_key(raw),
                                              user_id=ids.new_id(), scopes=tuple(scopes), expires_at=expires_at),
                                expected_last_seq=None)
        if wait and self.app is not None:
            await wait_until(lambda: hash_api_key(raw) in self.stack.key_cache._by_hash, message="key loaded")
        return raw, key_id

    async def revoke(self, key_id: str, *, org: str | None = None) -> None:
        await self.store.append(ApiKeyRevoked(**envelope(org or self.org), key_id=key_id), expected_last_seq=None)

    async def wait_routable(self, model: str, n: int = 1) -> None:
        import time

        from services.api.proxy.policy import eligible

        def ok():
            return len(eligible(self.proxy.table.snapshot, model, time.time(), {})) >= n

        await wait_until(ok, message=f"{n} routable worker(s) for {model}")

    async def usage_records(self, org: str | None = None, *, expect: int | None = None) -> list:
        subject = f"usage.{org or self.org}"

        async def read():
            msgs = await natsio.read_subject(self.js, "USAGE", subject)
            return [codec.decode_usage(m.data) for m in msgs]

        if expect is not None:
            await self.proxy.usage.flush()
            await wait_until(lambda: _count(read, expect), message=f"{expect} usage records")
        return await read()


async def _count(read, expect: int) -> bool:
    return len(await read()) >= expect


@pytest_asyncio.fixture
async def harness(nats_client, nats_server):
    h = Harness(nats_client, nats_server.url)
    yield h
    await h.stop()
