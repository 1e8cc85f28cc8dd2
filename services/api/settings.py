"""API-only settings, read from ``INVENTIV_API_*`` environment variables once, at startup."""

from __future__ import annotations

import os

import msgspec

from services.runtime.settings import env_float, env_int

from .auth.origin import allowed_origins_from_env


def _env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    return raw.strip().lower() in ("1", "true", "yes", "on")


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8003
    max_body_bytes: int = 1_048_576
    """Request bodies above this are refused with 413 (the /v1 proxy may set its own limit)."""
    session_ttl_s: int = 12 * 3600
    cookie_secure: bool | None = None
    """``None``: the session cookie is ``Secure`` when the request came over https."""
    allowed_origins: tuple[str, ...] = ()
    """Extra origins (``https://ui.example.com``) allowed to send cookie-authenticated writes."""
    publish_timeout_s: float = 5.0
    sse_keepalive_s: float = 15.0
    sse_queue_size: int = 256
    """Events buffered per SSE connection; a client that falls further behind is disconnected."""
    sse_write_timeout_s: float = 10.0
    sse_max_per_org: int = 100
    sse_max_total: int = 5000
    sse_replay_max: int = 10_000
    login_max_failures: int = 10
    login_window_s: int = 300
    mount_proxy: bool = True
    """Serve the OpenAI-compatible proxy under /v1 in this process (INVENTIV_API_PROXY=0 to turn off)."""

    @classmethod
    def from_env(cls) -> "ApiSettings":
        origins = allowed_origins_from_env(os.environ)
        return cls(
            host=os.environ.get("INVENTIV_API_HOST", "127.0.0.1"),
            port=env_int("INVENTIV_API_PORT", 8003),
            max_body_bytes=env_int("INVENTIV_API_MAX_BODY_BYTES", 1_048_576),
            session_ttl_s=env_int("INVENTIV_SESSION_TTL_S", 12 * 3600),
            cookie_secure=_env_bool("INVENTIV_COOKIE_SECURE"),
            allowed_origins=origins,
            publish_timeout_s=env_float("INVENTIV_API_PUBLISH_TIMEOUT_S", 5.0),
            sse_keepalive_s=env_float("INVENTIV_SSE_KEEPALIVE_S", 15.0),
            sse_queue_size=env_int("INVENTIV_SSE_QUEUE_SIZE", 256),
            sse_write_timeout_s=env_float("INVENTIV_SSE_WRITE_TIMEOUT_S", 10.0),
            sse_max_per_org=env_int("INVENTIV_SSE_MAX_PER_ORG", 100),
            sse_max_total=env_int("INVENTIV_SSE_MAX_TOTAL", 5000),
            sse_replay_max=env_int("INVENTIV_SSE_REPLAY_MAX", 10_000),
            login_max_failures=env_int("INVENTIV_LOGIN_MAX_FAILURES", 10),
            login_window_s=env_int("INVENTIV_LOGIN_WINDOW_S", 300),
            mount_proxy=_env_bool("INVENTIV_API_PROXY") is not False,
        )
