"""OpenAI-compatible data plane: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``, load-balanced over the ready workers of each model.

Use::

    proxy = build_proxy(nc=None, pool=None, key_cache=None)        # at app build time
    app = Litestar(route_handlers=[..., *proxy.route_handlers])    # mounts /v1 (raw ASGI)
    # in the lifespan, once connected:
    await proxy.start(nc=nc, pool=pool, key_cache=key_cache)       # key_cache already started
    ...
    await proxy.stop()                                             # flushes the usage records

Optionally serve ``proxy.wrap_asgi(app)`` instead of ``app`` to answer ``/v1/*`` before Litestar
(cheaper per request; Litestar's app-level middleware then does not run for ``/v1``).

Modules, one job each:

- ``app.py``: the ASGI entry point and lifecycle, wiring the steps below in order;
- ``request.py``: headers, bounded body, JSON and field validation (caps), include_usage;
- ``auth.py``: API key (key cache) or session; the ``inference`` scope;
- ``admission.py`` / ``limits.py``: per-key requests per minute and in flight (pure limiter);
  ``limit_sync.py`` (pure) / ``limit_gossip.py`` (core NATS): the same limits across API processes;
- ``forwarding.py``: worker choice and retries; ``policy.py`` / ``affinity.py`` (pure) and
  ``routing_table.py`` (fed by NATS) behind it; ``targets.py``: where a worker is;
- ``relay.py``: one upstream attempt relayed to the client; ``sse.py``: the stream relay (pure);
  ``upstream.py``: the HTTP/1.1 client to the engines (``upstream_aiohttp.py``: the aiohttp alternative);
- ``accounting.py`` / ``usage.py`` / ``metrics.py``: usage record and metrics per request;
- ``models_endpoint.py``: ``/v1/models``; ``errors.py`` / ``responses.py``: OpenAI-shaped answers;
- ``jsfollow.py`` (gap-free event following), ``catalog.py``, ``settings.py``,
  ``standalone.py`` (a proxy-only app), ``http_protocol.py`` (OpenAI-shaped parser errors).
"""

from __future__ import annotations

from .app import Proxy
from .auth import SessionAuthenticator
from .settings import ProxySettings


def build_proxy(
    *,
    nc,
    pool,
    key_cache,
    settings: ProxySettings | None = None,
    authenticate_session: SessionAuthenticator | None = None,
    mount_path: str = "/v1",
) -> Proxy:
    """The proxy, not started.

    - ``nc``: a connected nats-py client (heartbeats, instance events, usage publishing); may be
      None here and given to ``start()``.
    - ``pool``: an asyncpg pool for the initial load (``rm.instances``, ``rm.checkpoints``,
      ``public.models``), or None to rebuild from the streams alone; may be given to ``start()``.
    - ``key_cache``: a started ``services.api.keycache.KeyCache`` (its lifecycle stays with the
      caller); may be given to ``start()``.
    - ``settings``: ``ProxySettings``; default ``ProxySettings.from_env()``.
    - ``authenticate_session``: optional ``async (token) -> principal | None`` for bearer tokens that
      are not API keys (and for the cookie named by ``settings.session_cookie``). A principal has
      ``org_id``, ``user_id``, ``key_id`` (None for people) and ``scopes`` (must contain ``"inference"``);
      ``services.api.keycache.ApiKeyPrincipal`` is such a type.
    """
    return Proxy(nc=nc, pool=pool, key_cache=key_cache, settings=settings,
                 authenticate_session=authenticate_session, mount_path=mount_path)


__all__ = ["Proxy", "ProxySettings", "SessionAuthenticator", "build_proxy"]
