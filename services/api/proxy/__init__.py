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

Modules: ``app.py`` (HTTP behaviour), ``routing_table.py`` / ``policy.py`` (routing),
``upstream.py`` (HTTP client to the engines), ``sse.py`` (stream relay), ``usage.py`` (usage
records), ``jsfollow.py`` (gap-free event following), ``standalone.py`` (a proxy-only app).
"""

from __future__ import annotations

from .app import Proxy, SessionAuthenticator
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
