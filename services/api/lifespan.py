"""Start and stop what the API holds: NATS (+ JetStream), the Postgres pool, the API-key cache,
the SSE hub and the OpenAI proxy. Stored on ``app.state.resources`` (and, for the proxy and
other plug-ins, as plain ``app.state`` attributes: ``nc``, ``js``, ``pool``, ``keycache``, ``hub``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator

import structlog
from litestar import Litestar

from services.runtime import natsio
from services.runtime.eventstore import JetStreamEventStore
from services.runtime.pg import create_pool
from services.runtime.settings import RuntimeSettings

from .auth.ratelimit import LoginLimiter
from .auth.sessions import SessionStore
from .keycache import KeyCache
from .settings import ApiSettings
from .sse import EventHub
from .state import Resources

log = structlog.get_logger(__name__)


def build_lifespan(settings: RuntimeSettings, api: ApiSettings, proxy: Any | None, session_bridge: Any | None = None):
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            nc = await natsio.connect(settings.nats_url, name="inventiv-api")
            stack.push_async_callback(nc.drain)
            js = nc.jetstream()
            pool = await create_pool(settings.database_url, min_size=1, max_size=20)
            stack.push_async_callback(pool.close)

            keycache = KeyCache()  # the proxy's: loads rm.api_keys, then follows key events
            await keycache.start(nc, pool)
            stack.push_async_callback(keycache.stop)

            hub = EventHub(js, queue_size=api.sse_queue_size, max_per_org=api.sse_max_per_org,
                           max_total=api.sse_max_total, replay_max=api.sse_replay_max)
            await hub.start()
            stack.push_async_callback(hub.stop)

            resources = Resources(
                settings=settings, api=api, nc=nc, js=js, pool=pool, store=JetStreamEventStore(js),
                sessions=SessionStore(pool), keycache=keycache, hub=hub,
                login_limiter=LoginLimiter(api.login_max_failures, api.login_window_s), proxy=proxy,
            )
            app.state.resources = resources
            app.state.nc, app.state.js, app.state.pool = nc, js, pool
            app.state.keycache, app.state.hub = keycache, hub

            # THE place where the OpenAI proxy starts (its routes were mounted in create_app).
            if proxy is not None:
                if session_bridge is not None:
                    session_bridge.sessions = resources.sessions
                await proxy.start(nc=nc, pool=pool, key_cache=keycache)
                stack.push_async_callback(proxy.stop)

            log.info("api.started", hub_position=hub.position)
            yield
            log.info("api.stopping")

    return lifespan
