"""What the lifespan builds and the handlers use, kept on ``app.state.resources``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg
    from litestar import Request
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from services.runtime.eventstore import JetStreamEventStore
    from services.runtime.settings import RuntimeSettings

    from .auth.ratelimit import LoginLimiter
    from .auth.sessions import SessionStore
    from .settings import ApiSettings
    from .sse import EventHub


@dataclass
class Resources:
    settings: "RuntimeSettings"
    api: "ApiSettings"
    nc: "NATS"
    js: "JetStreamContext"
    pool: "asyncpg.Pool"
    store: "JetStreamEventStore"
    sessions: "SessionStore"
    keycache: Any
    hub: "EventHub"
    login_limiter: "LoginLimiter"
    proxy: Any = None


def resources(request: "Request") -> Resources:
    return request.app.state.resources
