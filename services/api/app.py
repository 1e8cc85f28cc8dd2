"""The Litestar application: routes, dependencies, errors, OpenAPI, middleware, lifespan.

Plug-ins owned by other modules are mounted here, each in one place:
- the OpenAI-compatible proxy (``services.api.proxy.build_proxy``): built and its
  ``route_handlers`` mounted in ``create_app``; ``start(nc=, pool=, key_cache=)`` / ``stop()`` run
  in the lifespan (``lifespan.py``), after the connections and the key cache exist;
- the FinOps read API (``services/api/routes/finops.py``): its ``route_handlers`` are registered
  in ``create_app``; it gets the app-wide ``org_id`` and ``pg_pool`` dependencies.
Both are optional imports (the API runs without them); ``INVENTIV_API_PROXY=0`` leaves /v1 out.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import asyncpg
from litestar import Litestar, Request
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from services.runtime.settings import RuntimeSettings

from .auth.principal import provide_org_id, provide_principal
from .auth.runtime import identity_lifespan
from .errors import EXCEPTION_HANDLERS
from .keycache import ApiKeyPrincipal
from .lifespan import build_lifespan
from .middleware import request_context_middleware
from .routes import api_keys, auth, catalog, deployments, events, fleet, instances, meta
from .routes import audit, invitations, members, organizations, passwords, sessions, users
from .settings import ApiSettings
from .state import resources


def _provide_pool(request: Request) -> asyncpg.Pool:  # the FinOps controller (and others) take ``pg_pool``
    return resources(request).pool


class _SessionBridge:
    """Lets the proxy accept session tokens (Bearer or cookie) as well as API keys.

    Built with the app (before any connection exists); resolves through the SessionStore the
    lifespan creates. People get the ``inference`` scope in their current organisation.
    """

    def __init__(self) -> None:
        self.sessions = None

    async def __call__(self, token: str):
        if self.sessions is None:
            return None
        info = await self.sessions.load(token)
        if info is None or not info.org_id:
            return None
        return ApiKeyPrincipal(key_id=None, org_id=info.org_id, user_id=info.user_id, scopes=frozenset({"inference"}))


def load_proxy(api: ApiSettings) -> tuple[Any | None, _SessionBridge | None]:
    """The OpenAI proxy (``services.api.proxy.build_proxy``), not started, when it exists and is enabled."""
    if not api.mount_proxy or importlib.util.find_spec("services.api.proxy") is None:
        return None, None
    import msgspec  # noqa: PLC0415

    from services.api.proxy import ProxySettings, build_proxy  # noqa: PLC0415 - optional module

    from .auth.sessions import SESSION_COOKIE  # noqa: PLC0415

    proxy_settings = ProxySettings.from_env()
    if proxy_settings.session_cookie is None:
        proxy_settings = msgspec.structs.replace(proxy_settings, session_cookie=SESSION_COOKIE)
    bridge = _SessionBridge()
    # nc / pool / key_cache are handed over in the lifespan (Proxy.start), once they exist.
    proxy = build_proxy(nc=None, pool=None, key_cache=None, settings=proxy_settings, authenticate_session=bridge)
    return proxy, bridge


def load_finops_handlers() -> list[Any]:
    """The FinOps engineer's controller(s) from ``services/api/routes/finops.py`` when present."""
    if importlib.util.find_spec("services.api.routes.finops") is None:
        return []
    module = importlib.import_module("services.api.routes.finops")
    handlers = getattr(module, "route_handlers", None)
    if handlers:
        return list(handlers)
    controller = getattr(module, "FinOpsController", None) or getattr(module, "FinopsController", None)
    return [controller] if controller is not None else []


def create_app(settings: RuntimeSettings, api: ApiSettings | None = None) -> Litestar:
    api = api or ApiSettings.from_env()
    proxy, session_bridge = load_proxy(api)
    route_handlers: list[Any] = [
        *meta.route_handlers,
        *auth.route_handlers,
        *api_keys.route_handlers,
        *organizations.route_handlers,
        *members.route_handlers,
        *invitations.route_handlers,
        *users.route_handlers,
        *sessions.route_handlers,
        *passwords.route_handlers,
        *audit.route_handlers,
        *catalog.route_handlers,
        *deployments.route_handlers,
        *instances.route_handlers,
        *fleet.route_handlers,
        *events.route_handlers,
        *load_finops_handlers(),
    ]
    if proxy is not None:
        # THE place where the proxy's /v1/* routes are mounted.
        route_handlers.extend(proxy.route_handlers)

    openapi = OpenAPIConfig(
        title="Inventiv API",
        version="1.0.0",
        description="Control plane for serving LLMs on rented GPUs. Errors are RFC 9457 problem+json "
                    "(OpenAI's error shape under /v1/*).",
        path="/api-docs",
        render_plugins=[SwaggerRenderPlugin(path="/swagger")],
        components=Components(security_schemes={
            "session": SecurityScheme(type="apiKey", name="inventiv_session", security_scheme_in="cookie"),
            "bearer": SecurityScheme(type="http", scheme="bearer",
                                     description="an API key (sk-inv-...) or a session token"),
        }),
        security=[{"session": []}, {"bearer": []}],
    )
    app = Litestar(
        route_handlers=route_handlers,
        dependencies={
            "principal": Provide(provide_principal),
            "org_id": Provide(provide_org_id),
            "pg_pool": Provide(_provide_pool, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[request_context_middleware],
        lifespan=[build_lifespan(settings, api, proxy, session_bridge), identity_lifespan(settings)],
        openapi_config=openapi,
        request_max_body_size=api.max_body_bytes,
        debug=False,
        logging_config=None,
    )
    app.state.proxy = proxy
    return app


def asgi_entry(app: Litestar):
    """What the server runs: ``app``, with ``/v1/*`` answered by the proxy before Litestar sees it.

    The proxy is a complete ASGI handler of its own (request id, OpenAI-shaped errors, metrics, one
    usage record per request), so Litestar's routing and the API's request middleware would only add
    work on the hot path: ~25 us of CPU per request at c=32 and ~55 us at c=1 (benchmarks/README.md),
    plus an access log line per inference request (the usage record in USAGE is that request's
    durable record) and a second, different ``X-Request-Id``. The ``/v1`` mount stays in Litestar, so
    ``app`` served as it is still answers ``/v1`` the slower way. Everything else, lifespan included,
    goes to ``app``.
    """
    proxy = getattr(app.state, "proxy", None)
    return app if proxy is None else proxy.wrap_asgi(app)
