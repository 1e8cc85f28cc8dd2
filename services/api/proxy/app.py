"""The OpenAI-compatible proxy: a raw ASGI app (mounted under Litestar at ``/v1``).

Per inference request, in order, each step in its own module:

1. headers scanned, credentials checked (``request.scan_headers``, ``auth.Authenticator``:
   a key-cache dict lookup, or the API's session callback);
2. body read (bounded) and validated: JSON, model, caps (``request.read_body`` / ``parse_inference``);
3. the key's limits: requests per minute, requests in flight (``admission.Admission``) -> 429;
4. a worker picked and the request forwarded, retried elsewhere before the first byte
   (``forwarding.Forwarder``, ``policy.choose``, ``relay``);
5. ONE usage record queued and the metrics counted (``accounting.account``).

Every refusal in steps 1-3 happens before any upstream call. The upstream is always
``<upstream_url of the instance.ready event>/v1/<endpoint>`` (``targets.py``): nothing from
the client can change where a request goes; redirects are not followed; the client's
credentials are never forwarded.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import structlog

from . import errors
from .accounting import Outcome, account, new_request_id
from .admission import Admission
from .auth import Authenticator, SessionAuthenticator
from .catalog import CatalogModel, load_catalog
from .forwarding import Forwarder
from .limit_gossip import LimitGossip
from .models_endpoint import answer_models
from .request import Caps, parse_inference, read_body, scan_headers
from .responses import ClientState, send_simple
from .routing_table import RoutingTable
from .settings import ProxySettings
from .upstream import UpstreamClient
from .upstream_aiohttp import AiohttpUpstream
from .usage import UsagePublisher

log = structlog.get_logger(__name__)

# endpoint key (path under /v1) -> (name used in metrics and usage records, upstream path, streamable)
_ENDPOINTS = {
    "/chat/completions": ("chat.completions", "/v1/chat/completions", True),
    "/completions": ("completions", "/v1/completions", True),
    "/embeddings": ("embeddings", "/v1/embeddings", False),
}


class Proxy:
    """Build with ``build_proxy``; ``await start()``, mount ``route_handlers``, ``await stop()``."""

    def __init__(self, *, nc, pool, key_cache, settings: ProxySettings | None = None,
                 authenticate_session: SessionAuthenticator | None = None, mount_path: str = "/v1") -> None:
        self.settings = s = settings or ProxySettings.from_env()
        self._nc = nc
        self._pool = pool
        self.table = RoutingTable(stale_s=s.worker_stale_s)
        self.usage = UsagePublisher(nc, maxsize=s.usage_queue_size, ack_timeout_s=s.usage_publish_timeout_s,
                                    linger_s=s.usage_linger_s)
        self.catalog: dict[str, CatalogModel] = {}
        self.auth = Authenticator(key_cache, authenticate_session, s.session_cookie, s.allowed_origins)
        self.admission = Admission(rpm=s.key_rpm, concurrency=s.key_concurrency)
        # Shares the per-key limits with the other API processes (limit_sync.py); None = per process.
        self.limit_gossip = LimitGossip(self.admission, sync_s=s.limit_sync_s) if s.limit_sync_s > 0 else None
        self.forwarder = Forwarder(self.table, s, self.catalog_has)
        self._caps = Caps(max_tokens=s.max_tokens_cap, n=s.max_n)
        self._shared_orgs = tuple(s.shared_orgs)
        self._all_orgs = "*" in self._shared_orgs
        self._session_header = s.session_header.lower().encode()
        self.mount_path = mount_path
        self.route_handlers = [self._litestar_mount(mount_path)]

    @property
    def _outstanding(self) -> dict[str, int]:
        return self.forwarder.outstanding

    def catalog_has(self, model: str) -> bool:
        return model in self.catalog

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, nc=None, pool=None, key_cache=None) -> None:
        """Connect and load. ``nc`` / ``pool`` / ``key_cache`` given here replace the ones given at build
        time, so the app (and its route handlers) can be built before the connections exist."""
        if nc is not None:
            self._nc = nc
        if pool is not None:
            self._pool = pool
        if key_cache is not None:
            self.auth.keys = key_cache
        if self._nc is None or self.auth.keys is None:
            raise RuntimeError("the proxy needs a NATS connection and a key cache to start")
        s = self.settings
        if s.upstream_client == "aiohttp":
            # The engine's key travels with each target (targets.py): per worker, not per client.
            client = AiohttpUpstream(connect_timeout_s=s.connect_timeout_s, read_timeout_s=s.read_timeout_s,
                                     limit=s.upstream_connections)
        else:
            # keepalive below uvicorn's (and so vLLM's) 5 s idle timeout: we drop idle connections before
            # the engine does, so a request is never written on a connection the engine is closing.
            client = UpstreamClient(connect_timeout_s=s.connect_timeout_s, read_timeout_s=s.read_timeout_s,
                                    keepalive_s=4.0, max_idle_per_host=s.upstream_connections)
        await client.start()
        self.forwarder.client = client
        await self.usage.start(self._nc)
        if self.limit_gossip is not None:
            await self.limit_gossip.start(self._nc)
        self.catalog = await load_catalog(self._pool)
        await self.table.start(self._nc, self._pool)

    async def stop(self) -> None:
        if self.limit_gossip is not None:
            await self.limit_gossip.stop()
        await self.usage.stop()
        await self.table.stop()
        client, self.forwarder.client = self.forwarder.client, None
        if client is not None:
            await client.close()

    async def refresh_catalog(self) -> None:
        self.catalog = await load_catalog(self._pool)

    def _litestar_mount(self, path: str):
        from litestar.handlers import asgi
        from litestar.types import Receive, Scope, Send

        app = self

        async def openai_proxy(scope: Scope, receive: Receive, send: Send) -> None:
            await app(scope, receive, send)

        return asgi(path, is_mount=True, copy_scope=False, name="openai_proxy")(openai_proxy)

    def wrap_asgi(self, app):
        """``app`` with ``/v1/*`` answered by the proxy *before* Litestar sees it (everything else,
        lifespan included, goes to ``app``). Saves Litestar's routing and middleware per request
        (~25 us CPU at c=32, ~55 us at c=1 here; benchmarks/README.md), at the price of Litestar's
        app-level middleware not running for ``/v1``. Serve the result instead of ``app``.
        """
        proxy = self
        prefix = self.mount_path.rstrip("/") + "/"
        exact = self.mount_path.rstrip("/")

        async def dispatch(scope, receive, send) -> None:
            if scope["type"] == "http":
                path = scope["path"]
                if path.startswith(prefix) or path == exact:
                    await proxy(scope, receive, send)
                    return
            await app(scope, receive, send)

        dispatch.wrapped_app = app  # type: ignore[attr-defined]
        return dispatch

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        t0 = time.perf_counter()
        path = scope["path"]
        if path.startswith("/v1/"):
            path = path[3:]
        if len(path) > 1 and path[-1] == "/":
            path = path[:-1]
        method = scope["method"]
        try:
            endpoint = _ENDPOINTS.get(path)
            if endpoint is not None:
                if method != "POST":
                    raise errors.method_not_allowed()
                hdrs = scan_headers(scope, self._session_header)
                principal = await self.auth(hdrs)
                await self._inference(hdrs, receive, send, principal, endpoint, t0)
            elif path == "/models" or path.startswith("/models/"):
                if method != "GET":
                    raise errors.method_not_allowed()
                principal = await self.auth(scan_headers(scope, self._session_header))
                await answer_models(send, self.table.snapshot, self.catalog, self._allowed_orgs(str(principal.org_id)),
                                    path[8:] if path.startswith("/models/") else None)
            else:
                raise errors.not_found()
        except errors.ProxyError as exc:
            await send_simple(send, exc.status, exc.body, exc.headers)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("proxy.internal_error", path=scope.get("path"))
            exc = errors.internal_error()
            try:
                await send_simple(send, exc.status, exc.body)
            except Exception:
                pass

    def _allowed_orgs(self, org_id: str):
        if self._all_orgs:
            return None
        if not self._shared_orgs:
            return (org_id,)
        return (org_id, *self._shared_orgs)

    # --- inference -------------------------------------------------------------------------------

    async def _inference(self, hdrs, receive, send, principal, endpoint, t0: float) -> None:
        endpoint_name, upstream_path, streamable = endpoint
        started_at = datetime.now(timezone.utc)
        request_id = new_request_id()
        out = Outcome()
        model = ""
        is_stream = False
        task = asyncio.current_task()
        state = ClientState()
        slot = None
        try:
            body = await read_body(hdrs.content_length, receive, self.settings.max_body_bytes)
            if body is None:
                out.status = 499
                return
            req = parse_inference(body, streamable=streamable, caps=self._caps)
            model = req.model
            is_stream = req.is_stream
            slot = self.admission.admit(principal)
            session_key = None
            if hdrs.session:
                session_key = f"{principal.org_id}:{hdrs.session.decode('latin-1')}"
            state.watch_disconnect(receive, task)
            await self.forwarder.forward(send, req, upstream_path, self._allowed_orgs(str(principal.org_id)),
                                         session_key, request_id, out, t0, state)
        except errors.ProxyError as exc:
            out.status = exc.status
            if not state.response_started:
                state.done = True
                headers = [(b"x-request-id", request_id.encode())]
                if exc.headers:
                    headers.extend(exc.headers)
                await send_simple(send, exc.status, exc.body, headers)
        except asyncio.CancelledError:
            if not state.disconnected:
                raise
            # The client went away: the upstream request was dropped with the cancelled await.
            task.uncancel()
            out.status = 499
        finally:
            state.finish()
            self.admission.release(slot)
            account(self.usage, self._labelled, principal, model, endpoint_name, is_stream, started_at, request_id,
                    out, t0)

    def _labelled(self, model: str) -> bool:
        return model in self.table.snapshot.workers or model in self.catalog
