"""The OpenAI-compatible proxy: a raw ASGI app (mounted under Litestar at ``/v1``).

Per request: authenticate (key cache dict lookup, or the API's session callback), read the
body (bounded), decode only ``model`` / ``stream`` / ``stream_options`` with msgspec (the
rest is forwarded byte for byte), pick a worker (``policy.choose``), call it over one shared
keep-alive upstream client (``upstream.py``), relay the answer, and queue ONE usage record.

- The upstream is always ``<upstream_url of the instance.ready event>/v1/<endpoint>``: nothing
  from the client (URL, host, path, headers, body fields) can change where a request goes.
  Redirects are not followed. The client's credentials are never forwarded.
- Streams are relayed event by event as they arrive. Usage is asked from the engine
  (``stream_options.include_usage=true``) and its final usage event is forwarded only if the
  client asked for it.
- A failure before the first byte went to the client (connect error, 5xx, a stream that
  breaks before its first event) is retried on another worker (``max_attempts`` in all), and
  the failed worker is penalised for ``penalty_s``. After the first byte, the stream is ended
  with an OpenAI-shaped error event.
- A client that disconnects cancels the upstream request (the connection is dropped, so the
  engine aborts the generation).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import msgspec
import structlog
from yarl import URL

from contracts.usage import UsageRecord

from ..keys import looks_like_api_key
from . import errors, metrics
from .catalog import CatalogModel, load_catalog
from .policy import choose, is_routable
from .routing_table import RoutingTable
from .settings import ProxySettings
from .sse import StreamRelay, usage_from_body
from .upstream import AiohttpUpstream, Target, UpstreamClient, UpstreamError
from .usage import UsagePublisher

log = structlog.get_logger(__name__)

INFERENCE_SCOPE = "inference"

SessionAuthenticator = Callable[[str], Awaitable[Any]]

# endpoint key (path under /v1) -> (name used in metrics and usage records, upstream path)
_ENDPOINTS = {
    "/chat/completions": ("chat.completions", "/v1/chat/completions"),
    "/completions": ("completions", "/v1/completions"),
    "/embeddings": ("embeddings", "/v1/embeddings"),
}
_STREAMABLE = {"chat.completions", "completions"}


class _Head(msgspec.Struct):
    model: Any = None
    stream: bool | None = None
    stream_options: Any = msgspec.UNSET


_head_decoder = msgspec.json.Decoder(_Head)
_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]


class _Retry(Exception):
    """This attempt failed before anything went to the client: try another worker."""

    __slots__ = ("kind", "penalise")

    def __init__(self, kind: str, penalise: bool = True) -> None:
        self.kind = kind
        self.penalise = penalise


class _Outcome:
    __slots__ = ("status", "instance_id", "reason", "prompt_tokens", "completion_tokens", "ttft_ms", "attempts",
                 "t_upstream", "added_s")

    def __init__(self) -> None:
        self.status = 0
        self.instance_id: str | None = None
        self.reason = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft_ms: float | None = None
        self.attempts = 0
        self.t_upstream = 0.0
        self.added_s: float | None = None


def upstream_base(upstream_url: str) -> str | None:
    """``http://host:port`` (optionally with a trailing ``/v1``) -> normalised base, or None if unusable."""
    try:
        url = URL(upstream_url)
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password or url.query_string:
        return None
    path = url.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return str(url.with_path(path or "/").with_fragment(None)).rstrip("/")


def _send_simple(send, status: int, body: bytes, extra_headers: list | None = None):
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)

    async def go():
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return go()


class Proxy:
    """Build with ``build_proxy``; ``await start()``, mount ``route_handlers``, ``await stop()``."""

    def __init__(
        self,
        *,
        nc,
        pool,
        key_cache,
        settings: ProxySettings | None = None,
        authenticate_session: SessionAuthenticator | None = None,
        mount_path: str = "/v1",
    ) -> None:
        self.settings = settings or ProxySettings.from_env()
        self._nc = nc
        self._pool = pool
        self._keys = key_cache
        self._auth_session = authenticate_session
        self.table = RoutingTable(stale_s=self.settings.worker_stale_s)
        self.usage = UsagePublisher(nc, maxsize=self.settings.usage_queue_size,
                                    ack_timeout_s=self.settings.usage_publish_timeout_s)
        self.catalog: dict[str, CatalogModel] = {}
        self._client: UpstreamClient | AiohttpUpstream | None = None
        self._outstanding: dict[str, int] = {}
        self._penalised: dict[str, float] = {}
        self._counter = 0
        self._targets: dict[tuple[str, str], Target | None] = {}
        self._shared_orgs = tuple(self.settings.shared_orgs)
        self._all_orgs = "*" in self._shared_orgs
        self._session_header = self.settings.session_header.lower().encode()
        self._cookie_name = self.settings.session_cookie
        self.mount_path = mount_path
        self.route_handlers = [self._litestar_mount(mount_path)]
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, nc=None, pool=None, key_cache=None) -> None:
        """Connect and load. ``nc`` / ``pool`` / ``key_cache`` given here replace the ones given at build
        time, so the app (and its route handlers) can be built before the connections exist."""
        if nc is not None:
            self._nc = nc
        if pool is not None:
            self._pool = pool
        if key_cache is not None:
            self._keys = key_cache
        if self._nc is None or self._keys is None:
            raise RuntimeError("the proxy needs a NATS connection and a key cache to start")
        s = self.settings
        if s.upstream_client == "aiohttp":
            self._client = AiohttpUpstream(connect_timeout_s=s.connect_timeout_s, read_timeout_s=s.read_timeout_s,
                                           limit=s.upstream_connections, api_key=s.upstream_api_key)
        else:
            # keepalive below uvicorn's (and so vLLM's) 5 s idle timeout: we drop idle connections before
            # the engine does, so a request is never written on a connection the engine is closing.
            self._client = UpstreamClient(connect_timeout_s=s.connect_timeout_s, read_timeout_s=s.read_timeout_s,
                                          keepalive_s=4.0, max_idle_per_host=s.upstream_connections)
        await self._client.start()
        await self.usage.start(self._nc)
        self.catalog = await load_catalog(self._pool)
        await self.table.start(self._nc, self._pool)
        self._started = True

    async def stop(self) -> None:
        await self.usage.stop()
        await self.table.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._started = False

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
                hdrs = self._scan_headers(scope)
                principal = await self._authenticate(hdrs)
                await self._inference(hdrs, receive, send, principal, endpoint, t0)
            elif path == "/models" or path.startswith("/models/"):
                if method != "GET":
                    raise errors.method_not_allowed()
                principal = await self._authenticate(self._scan_headers(scope))
                await self._models(send, principal, path[8:] if path.startswith("/models/") else None)
            else:
                raise errors.not_found()
        except errors.ProxyError as exc:
            await _send_simple(send, exc.status, exc.body)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("proxy.internal_error", path=scope.get("path"))
            exc = errors.internal_error()
            try:
                await _send_simple(send, exc.status, exc.body)
            except Exception:
                pass

    # --- auth ------------------------------------------------------------------------------------

    def _scan_headers(self, scope) -> "_Headers":
        """The few request headers the proxy reads, in one pass. Nothing else is looked at or forwarded."""
        h = _Headers()
        session_header = self._session_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                h.auth = value
            elif name == b"content-length":
                h.content_length = value
            elif name == b"x-api-key":
                h.api_key = value
            elif name == b"cookie":
                h.cookie = value
            elif name == session_header:
                h.session = value
        return h

    async def _authenticate(self, hdrs: "_Headers"):
        auth = hdrs.auth
        if auth is None and hdrs.api_key is not None:
            auth = b"Bearer " + hdrs.api_key
        cookie = hdrs.cookie
        principal = None
        if auth is not None:
            if auth[:7].lower() != b"bearer ":
                raise errors.invalid_api_key()
            token = auth[7:].strip().decode("latin-1")
            if looks_like_api_key(token):
                principal = self._keys.authenticate(token)
            elif self._auth_session is not None and token:
                principal = await self._auth_session(token)
        elif cookie is not None and self._cookie_name and self._auth_session is not None:
            value = _cookie_value(cookie, self._cookie_name)
            if value:
                principal = await self._auth_session(value)
        if principal is None:
            raise errors.invalid_api_key()
        scopes = getattr(principal, "scopes", None)
        if scopes is None or INFERENCE_SCOPE not in scopes:
            raise errors.missing_scope(INFERENCE_SCOPE)
        return principal

    def _allowed_orgs(self, org_id: str):
        if self._all_orgs:
            return None
        if not self._shared_orgs:
            return (org_id,)
        return (org_id, *self._shared_orgs)

    # --- /v1/models ------------------------------------------------------------------------------

    async def _models(self, send, principal, one: str | None) -> None:
        now = time.time()
        allowed = self._allowed_orgs(str(principal.org_id))
        snap = self.table.snapshot
        data = []
        for model, workers in snap.workers.items():
            if one is not None and model != one:
                continue
            if any(is_routable(w, now, snap.stale_s) and (allowed is None or w.org_id in allowed) for w in workers):
                data.append(self._model_entry(model))
        data.sort(key=lambda m: m["id"])
        if one is not None:
            if not data:
                raise errors.model_not_found(one)
            body = _json_encoder.encode(data[0])
        else:
            body = _json_encoder.encode({"object": "list", "data": data})
        await _send_simple(send, 200, body)

    def _model_entry(self, model: str) -> dict:
        entry: dict[str, Any] = {"id": model, "object": "model", "created": 0, "owned_by": "inventiv"}
        cat = self.catalog.get(model)
        if cat is not None:
            entry["created"] = cat.created
            entry["name"] = cat.name
            entry["max_model_len"] = cat.context_length
            entry["context_length"] = cat.context_length
            entry["metadata"] = cat.metadata
        return entry

    # --- inference -------------------------------------------------------------------------------

    async def _read_body(self, hdrs: "_Headers", receive) -> bytes | None:
        limit = self.settings.max_body_bytes
        if hdrs.content_length is not None:
            try:
                announced = int(hdrs.content_length)
            except ValueError:
                raise errors.ProxyError(400, "Invalid Content-Length.", "invalid_request_error", "invalid_request")
            if announced > limit:
                raise errors.too_large(limit)
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        body = msg.get("body", b"")
        if not msg.get("more_body", False):
            if len(body) > limit:
                raise errors.too_large(limit)
            return body
        parts = [body]
        size = len(body)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.too_large(limit)
            parts.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(parts)

    def _target(self, upstream_url: str, upstream_path: str) -> Target | None:
        key = (upstream_url, upstream_path)
        target = self._targets.get(key, False)
        if target is False:
            base = upstream_base(upstream_url)
            target = None
            if base:
                try:
                    target = Target(base, upstream_path, api_key=self.settings.upstream_api_key)
                except ValueError:
                    target = None
            if target is None:
                log.error("proxy.bad_upstream_url", upstream=upstream_url)
            if len(self._targets) > 100_000:
                self._targets.clear()
            self._targets[key] = target
        return target

    async def _inference(self, hdrs: "_Headers", receive, send, principal, endpoint, t0: float) -> None:
        endpoint_name, upstream_path = endpoint
        started_at = datetime.now(timezone.utc)
        request_id = str(uuid.uuid4())
        out = _Outcome()
        model = ""
        is_stream = False
        task = asyncio.current_task()
        state = _ClientState()
        watcher = None
        try:
            body = await self._read_body(hdrs, receive)
            if body is None:
                out.status = 499
                return
            try:
                head = _head_decoder.decode(body)
            except msgspec.ValidationError as exc:
                raise errors.ProxyError(400, f"Invalid request body: {exc}", "invalid_request_error", "invalid_value")
            except msgspec.DecodeError as exc:
                raise errors.invalid_json(str(exc))
            model = head.model
            if not isinstance(model, str) or not model:
                model = "" if not isinstance(model, str) else model
                raise errors.missing_model()
            if len(model) > 512:
                raise errors.model_not_found(model)
            is_stream = bool(head.stream) and endpoint_name in _STREAMABLE
            client_wants_usage = False
            injected = False
            if is_stream:
                opts = head.stream_options
                if opts is msgspec.UNSET:
                    body = _inject_include_usage(body)
                    injected = True
                elif isinstance(opts, dict) and opts.get("include_usage") is True:
                    client_wants_usage = True
                else:
                    decoded = _json_decoder.decode(body)
                    so = dict(decoded.get("stream_options") or {}) if isinstance(decoded.get("stream_options"), dict) else {}
                    so["include_usage"] = True
                    decoded["stream_options"] = so
                    body = _json_encoder.encode(decoded)
                    injected = True
            session_key = None
            if hdrs.session:
                session_key = f"{principal.org_id}:{hdrs.session.decode('latin-1')}"
            watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, task, state))
            await self._route(send, principal, model, body, endpoint_name, upstream_path, is_stream,
                              client_wants_usage, injected, session_key, request_id, out, t0, state)
        except errors.ProxyError as exc:
            out.status = exc.status
            if not state.response_started:
                state.done = True
                await _send_simple(send, exc.status, exc.body, [(b"x-request-id", request_id.encode())])
        except asyncio.CancelledError:
            if not state.disconnected:
                raise
            # The client went away: the upstream request was dropped with the cancelled await.
            task.uncancel()
            out.status = 499
        finally:
            state.done = True
            if watcher is not None and not watcher.done():
                watcher.cancel()
            self._account(principal, model, endpoint_name, is_stream, started_at, request_id, out, t0)

    async def _route(self, send, principal, model, body, endpoint_name, upstream_path, is_stream,
                     client_wants_usage, injected, session_key, request_id, out, t0, state) -> None:
        s = self.settings
        allowed = self._allowed_orgs(str(principal.org_id))
        tried: list[str] = []
        last_error = errors.upstream_failed()
        for attempt in range(s.max_attempts):
            now = time.time()
            self._counter += 1
            choice = choose(self.table.snapshot, model, self._outstanding, now, self._penalised, session_key,
                            allowed_orgs=allowed, exclude=tried, tiebreak=self._counter)
            if choice is None and tried:
                # Nobody else: the same worker again, unless it was penalised (connect error, 5xx).
                choice = choose(self.table.snapshot, model, self._outstanding, now, self._penalised, session_key,
                                allowed_orgs=allowed, tiebreak=self._counter)
            if choice is None and attempt == 0 and self._penalised:
                # Every candidate failed recently. Rather than refusing the model outright for
                # penalty_s (one 500 on a lone worker would otherwise take the model down), try one
                # anyway: a dead worker fails fast, and stops being routable with its heartbeats.
                choice = choose(self.table.snapshot, model, self._outstanding, now, {}, session_key,
                                allowed_orgs=allowed, tiebreak=self._counter)
                if choice is not None:
                    choice = choice._replace(reason="last_resort")
            if choice is None:
                if attempt == 0:
                    raise self._no_worker(model, allowed)
                raise last_error
            iid = choice.instance_id
            out.instance_id = iid
            out.reason = choice.reason if attempt == 0 else f"{choice.reason};retry={attempt}"
            out.attempts = attempt + 1
            target = self._target(choice.upstream_url, upstream_path)
            wm = metrics.for_worker(model, iid)
            if target is None:
                self._penalise(iid, max(s.penalty_s, 30.0))
                tried.append(iid)
                continue
            self._outstanding[iid] = self._outstanding.get(iid, 0) + 1
            try:
                if is_stream:
                    await self._stream_once(send, target, body, request_id, client_wants_usage, injected, out, t0,
                                            state, wm)
                else:
                    await self._unary_once(send, target, body, request_id, out, t0, state, wm)
                return
            except _Retry as r:
                wm.error(r.kind)
                metrics.RETRIES.labels(model, iid, r.kind).inc()
                if r.penalise:
                    self._penalise(iid)
                tried.append(iid)
                last_error = errors.upstream_timeout() if r.kind == "connect_timeout" else errors.upstream_failed()
                log.warning("proxy.upstream_retry", model=model, instance=iid, kind=r.kind, attempt=attempt + 1)
            finally:
                n = self._outstanding.get(iid, 1) - 1
                if n:
                    self._outstanding[iid] = n
                else:
                    self._outstanding.pop(iid, None)
        raise last_error

    def _penalise(self, instance_id: str, seconds: float | None = None) -> None:
        now = time.time()
        if len(self._penalised) > 1000:
            self._penalised = {k: v for k, v in self._penalised.items() if v > now}
        self._penalised[instance_id] = now + (self.settings.penalty_s if seconds is None else seconds)

    def _no_worker(self, model: str, allowed) -> errors.ProxyError:
        if model in self.catalog:
            return errors.no_ready_worker(model)
        for w in self.table.snapshot.workers.get(model, ()):
            if allowed is None or w.org_id in allowed:
                return errors.no_ready_worker(model)
        return errors.model_not_found(model)

    async def _post(self, target: Target, body: bytes, request_id: str, stream: bool):
        try:
            return await self._client.request(target, body, request_id, stream)
        except UpstreamError as exc:
            if exc.kind == "read_timeout":  # the engine took the request but did not answer: no retry
                raise errors.upstream_timeout() from None
            # connect_error / connect_timeout: nothing was sent. disconnected: the engine went away
            # before answering (a dying worker, or an idle connection it closed): penalise only the former.
            raise _Retry(exc.kind, penalise=exc.kind != "disconnected") from None

    async def _unary_once(self, send, target, body, request_id, out, t0, state, wm) -> None:
        t_up = time.perf_counter()
        pre = t_up - t0
        resp = await self._post(target, body, request_id, stream=False)
        try:
            try:
                data = await resp.read()
            except UpstreamError as exc:
                if exc.kind == "read_timeout":
                    raise errors.upstream_timeout() from None
                raise _Retry("broken_response") from None
            status = resp.status
            if status >= 500:
                raise _Retry(f"http_{status}")
            ctype = resp.header(b"content-type", b"application/json")
        except BaseException:
            resp.close()
            raise
        finally:
            resp.release()
        t_back = time.perf_counter()
        out.status = status
        if status == 200:
            usage = usage_from_body(data)
            if usage is not None:
                out.prompt_tokens = usage.prompt_tokens
                out.completion_tokens = usage.completion_tokens
        state.response_started = True
        state.done = True
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode()),
                        (b"x-request-id", request_id.encode())],
        })
        await send({"type": "http.response.body", "body": data, "more_body": False})
        t_end = time.perf_counter()
        out.t_upstream = t_back - t_up
        out.added_s = pre + (t_end - t_back)

    async def _stream_once(self, send, target, body, request_id, client_wants_usage, injected, out, t0, state, wm):
        t_up = time.perf_counter()
        pre = t_up - t0
        resp = await self._post(target, body, request_id, stream=True)
        relay = None
        try:
            status = resp.status
            if status != 200:
                try:
                    data = await resp.read()
                except UpstreamError:
                    raise _Retry("broken_response") from None
                if status >= 500:
                    raise _Retry(f"http_{status}")
                out.status = status
                state.response_started = True
                state.done = True
                ctype = resp.header(b"content-type", b"application/json")
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode()),
                                        (b"x-request-id", request_id.encode())]})
                await send({"type": "http.response.body", "body": data, "more_body": False})
                out.added_s = pre
                return
            relay = StreamRelay(forward_usage=client_wants_usage, strip_null_usage=injected)
            started = False
            ended = False
            try:
                while True:
                    chunk = await resp.read_some()
                    if not chunk:
                        break
                    piece = relay.feed(chunk)
                    # The upstream's last bytes are here: send them as the end of the response (one
                    # send less per stream, and the client sees the end without another round).
                    ended = resp.at_eof()
                    if ended:
                        piece += relay.finish()
                    if not piece and not ended:
                        continue
                    if not started:
                        if not piece:  # the engine ended the stream without a single event
                            raise _Retry("empty_stream")
                        t_in = time.perf_counter()
                        state.response_started = True
                        await send({"type": "http.response.start", "status": 200,
                                    "headers": _SSE_HEADERS + [(b"x-request-id", request_id.encode())]})
                        if ended:
                            state.done = True
                        await send({"type": "http.response.body", "body": piece, "more_body": not ended})
                        started = True
                        t_first = time.perf_counter()
                        out.ttft_ms = (t_first - t0) * 1000.0
                        out.added_s = pre + (t_first - t_in)
                        wm.ttft.observe(t_first - t0)
                    else:
                        if ended:
                            state.done = True
                        await send({"type": "http.response.body", "body": piece, "more_body": not ended})
                    if ended:
                        break
                tail = b"" if ended else relay.finish()
            except UpstreamError as exc:
                if not started:
                    raise _Retry("broken_stream") from None
                # After the first byte there is no retry: end the stream with an error event.
                kind = "stream_timeout" if exc.kind == "read_timeout" else "stream_broken"
                wm.error(kind)
                out.status = 502
                self._penalise(out.instance_id)
                state.done = True
                resp.close()
                await send({"type": "http.response.body",
                            "body": errors.sse_error_event("The model worker failed mid-stream.", "upstream_error"),
                            "more_body": False})
                return
            if ended:
                out.status = 200
                return
            if not started:
                if not tail:
                    raise _Retry("empty_stream")
                state.response_started = True
                await send({"type": "http.response.start", "status": 200,
                            "headers": _SSE_HEADERS + [(b"x-request-id", request_id.encode())]})
                out.ttft_ms = (time.perf_counter() - t0) * 1000.0
                out.added_s = pre
            out.status = 200
            state.done = True
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except BaseException:
            resp.close()  # drop the connection: the engine sees it and stops generating
            raise
        finally:
            out.t_upstream = time.perf_counter() - t_up
            resp.release()
            if relay is not None:
                self._take_stream_usage(relay, out)

    @staticmethod
    def _take_stream_usage(relay: StreamRelay, out: _Outcome) -> None:
        if relay.usage is not None:
            out.prompt_tokens = relay.usage.prompt_tokens
            out.completion_tokens = relay.usage.completion_tokens
        else:  # no usage event (the stream broke): count the events we relayed, about one token each
            out.completion_tokens = relay.events

    # --- accounting ------------------------------------------------------------------------------

    def _account(self, principal, model, endpoint_name, is_stream, started_at, request_id, out: _Outcome, t0) -> None:
        duration_s = time.perf_counter() - t0
        iid = out.instance_id
        status = out.status or 500
        # Label only models we serve: a client inventing model names must not create metric series.
        label = model if (model in self.table.snapshot.workers or model in self.catalog) else "-"
        wm = metrics.for_worker(label, iid or "-")
        wm.request(endpoint_name, status)
        if iid is not None:
            if out.added_s is not None:
                wm.added.observe(out.added_s)
            if out.t_upstream:
                wm.upstream.observe(out.t_upstream)
            if out.prompt_tokens:
                wm.prompt_tokens.inc(out.prompt_tokens)
            if out.completion_tokens:
                wm.completion_tokens.inc(out.completion_tokens)
        try:
            record = UsageRecord(
                id=request_id,
                org_id=str(principal.org_id),
                occurred_at=started_at,
                endpoint=endpoint_name,
                model=model,
                api_key_id=getattr(principal, "key_id", None),
                user_id=None if getattr(principal, "user_id", None) is None else str(principal.user_id),
                instance_id=iid,
                prompt_tokens=max(0, int(out.prompt_tokens)),
                completion_tokens=max(0, int(out.completion_tokens)),
                status_code=status,
                stream=is_stream,
                duration_ms=round(duration_s * 1000.0, 3),
                ttft_ms=None if out.ttft_ms is None else round(out.ttft_ms, 3),
                routing_reason=out.reason,
            )
        except Exception:
            log.exception("proxy.usage_record_failed")
            return
        self.usage.submit(record)


class _Headers:
    __slots__ = ("auth", "api_key", "cookie", "content_length", "session")

    def __init__(self) -> None:
        self.auth = self.api_key = self.cookie = self.content_length = self.session = None


class _ClientState:
    __slots__ = ("done", "disconnected", "response_started")

    def __init__(self) -> None:
        self.done = False
        self.disconnected = False
        self.response_started = False


async def _watch_disconnect(receive, task: asyncio.Task, state: _ClientState) -> None:
    """Cancel the request's task when the client disconnects before its answer was complete."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not state.done:
                state.disconnected = True
                task.cancel()
            return


def _inject_include_usage(body: bytes) -> bytes:
    """Add ``"stream_options":{"include_usage":true}`` to a JSON object known to lack the key."""
    end = len(body)
    while end and body[end - 1] in b" \t\r\n":
        end -= 1
    inner = body[:end - 1].rstrip()
    sep = b"" if inner.endswith(b"{") else b","
    return inner + sep + b'"stream_options":{"include_usage":true}}'


def _cookie_value(header: bytes, name: str) -> str | None:
    text = header.decode("latin-1")
    for part in text.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip().strip('"') or None
    return None
