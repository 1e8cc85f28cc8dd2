"""Proxy settings: one place, parsed from the environment once (``ProxySettings.from_env``).

Each field's environment variable is in ``from_env``; the field docstrings say what they do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import msgspec

from services.api.auth.origin import allowed_origins_from_env
from services.runtime.engine_keys import EngineKeySecret, engine_key_secret_from_env


class ProxySettings(msgspec.Struct, frozen=True, kw_only=True):
    worker_stale_s: float = 30.0
    """A worker whose last heartbeat is older than this is not routable (the ONE staleness window)."""
    max_body_bytes: int = 10_000_000
    """Largest request body accepted; larger gets 413 (Litestar's own default, 10 MB)."""
    max_attempts: int = 3
    """Upstream attempts per request (first try + retries on other workers) before any byte went out."""
    penalty_s: float = 2.0
    """How long a worker that failed (connect error, 5xx) is skipped by the router."""
    connect_timeout_s: float = 3.0
    """Upstream TCP connect timeout; a connect failure is retried on another worker."""
    read_timeout_s: float = 300.0
    """Longest silence accepted from an upstream between two reads (504 if before the first byte)."""
    upstream_connections: int = 1000
    """Most upstream connections (keep-alive pool) across all workers."""
    upstream_client: str = "native"
    """``native`` (the proxy's own keep-alive HTTP/1.1 client, ~6x cheaper per request) or ``aiohttp``."""
    upstream_api_key: str | None = None
    """Fallback: ONE bearer token sent to every engine (vLLM ``--api-key``) when no ``engine_key_secret``
    is set. Fleet-wide, so weaker: any worker that knows it can call every other engine. Never the client's key."""
    engine_key_secret: EngineKeySecret | None = None
    """``INVENTIV_ENGINE_KEY_SECRET``: each worker's engine gets its own key derived from it (engine_keys.py);
    wins over ``upstream_api_key``. Shared with the orchestrator, which gives each worker its key."""
    usage_queue_size: int = 100_000
    """Usage records waiting for their PubAck before new ones are dropped (and counted)."""
    usage_publish_timeout_s: float = 5.0
    usage_linger_s: float = 0.05
    """How long a usage record may wait for others to share its batch (one PubAck and one fsync per batch);
    0 = publish at once. Longer: fewer fsyncs at low rates, a few more records lost if the process crashes."""
    shared_orgs: tuple[str, ...] = ()
    """Orgs whose workers every org may use; ``("*",)`` = no org scoping at all."""
    session_header: str = "x-inventiv-session"
    """Request header whose value pins a conversation to a worker (rendezvous hashing, load-capped)."""
    session_cookie: str | None = None
    """When set and no Authorization header is present, this cookie is passed to ``authenticate_session``."""
    allowed_origins: tuple[str, ...] = ()
    """``INVENTIV_API_ALLOWED_ORIGINS`` (the API's): origins besides our own whose pages may use the session
    cookie (auth/origin.py); a cookie request from any other origin gets 403."""
    max_tokens_cap: int = 32_768
    """Largest ``max_tokens`` / ``max_completion_tokens`` accepted; above gets 400 (param named), no upstream call."""
    max_n: int = 16
    """Largest ``n`` (and vLLM's ``best_of``) accepted; above gets 400, no upstream call."""
    key_rpm: int = 3_000
    """Requests per minute per API key (token bucket, burst = one minute's worth) unless the key carries its
    own limit; 0 = unlimited. Shared by the API processes through ``limit_sync_s``."""
    key_concurrency: int = 64
    """Requests in flight per API key unless the key carries its own limit; 0 = unlimited."""
    limit_sync_s: float = 0.25
    """How often each API process tells the others (core NATS) what it admitted per key and has in flight, so
    that the two limits above hold across processes (limit_sync.py: within a bounded lag); 0 = each process
    enforces them on its own (a key can then get N times them over N processes)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ProxySettings":
        env = os.environ if environ is None else environ

        def num(name: str, default, kind):
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise SystemExit(f"inventiv: {name} must be a number, got {raw!r}") from None

        shared = tuple(p.strip() for p in (env.get("INVENTIV_PROXY_SHARED_ORGS") or "").split(",") if p.strip())
        settings = cls(
            worker_stale_s=num("INVENTIV_WORKER_STALE_S", 30.0, float),
            max_body_bytes=num("INVENTIV_PROXY_MAX_BODY_BYTES", 10_000_000, int),
            max_attempts=num("INVENTIV_PROXY_MAX_ATTEMPTS", 3, int),
            penalty_s=num("INVENTIV_PROXY_PENALTY_S", 2.0, float),
            connect_timeout_s=num("INVENTIV_PROXY_CONNECT_TIMEOUT_S", 3.0, float),
            read_timeout_s=num("INVENTIV_PROXY_READ_TIMEOUT_S", 300.0, float),
            upstream_connections=num("INVENTIV_PROXY_UPSTREAM_CONNECTIONS", 1000, int),
            upstream_client=(env.get("INVENTIV_PROXY_UPSTREAM_CLIENT") or "native").strip().lower(),
            upstream_api_key=env.get("INVENTIV_PROXY_UPSTREAM_API_KEY") or None,
            engine_key_secret=engine_key_secret_from_env(env),
            usage_queue_size=num("INVENTIV_PROXY_USAGE_QUEUE", 100_000, int),
            usage_publish_timeout_s=num("INVENTIV_PROXY_USAGE_PUBLISH_TIMEOUT_S", 5.0, float),
            usage_linger_s=num("INVENTIV_PROXY_USAGE_LINGER_S", 0.05, float),
            shared_orgs=shared,
            session_cookie=env.get("INVENTIV_PROXY_SESSION_COOKIE") or None,
            allowed_origins=allowed_origins_from_env(env),
            max_tokens_cap=num("INVENTIV_PROXY_MAX_TOKENS", 32_768, int),
            max_n=num("INVENTIV_PROXY_MAX_N", 16, int),
            key_rpm=num("INVENTIV_PROXY_KEY_RPM", 3_000, int),
            key_concurrency=num("INVENTIV_PROXY_KEY_CONCURRENCY", 64, int),
            limit_sync_s=num("INVENTIV_PROXY_LIMIT_SYNC_S", 0.25, float),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.worker_stale_s <= 0:
            raise SystemExit("inventiv: INVENTIV_WORKER_STALE_S must be > 0")
        if self.max_attempts < 1:
            raise SystemExit("inventiv: INVENTIV_PROXY_MAX_ATTEMPTS must be >= 1")
        if self.max_body_bytes < 1024:
            raise SystemExit("inventiv: INVENTIV_PROXY_MAX_BODY_BYTES must be >= 1024")
        if self.upstream_client not in ("native", "aiohttp"):
            raise SystemExit("inventiv: INVENTIV_PROXY_UPSTREAM_CLIENT must be 'native' or 'aiohttp'")
        if self.upstream_api_key is not None and (
                not self.upstream_api_key.isprintable() or any(c.isspace() for c in self.upstream_api_key)):
            raise SystemExit("inventiv: INVENTIV_PROXY_UPSTREAM_API_KEY must be printable, without spaces")
        if self.max_tokens_cap < 1:
            raise SystemExit("inventiv: INVENTIV_PROXY_MAX_TOKENS must be >= 1")
        if self.max_n < 1:
            raise SystemExit("inventiv: INVENTIV_PROXY_MAX_N must be >= 1")
        if self.key_rpm < 0 or self.key_concurrency < 0:
            raise SystemExit("inventiv: INVENTIV_PROXY_KEY_RPM and INVENTIV_PROXY_KEY_CONCURRENCY must be >= 0")
        if not (math.isfinite(self.usage_linger_s) and 0 <= self.usage_linger_s <= 5):
            raise SystemExit("inventiv: INVENTIV_PROXY_USAGE_LINGER_S must be a number of seconds between 0 and 5")
        if not math.isfinite(self.limit_sync_s) or not (self.limit_sync_s == 0 or self.limit_sync_s >= 0.01):
            raise SystemExit("inventiv: INVENTIV_PROXY_LIMIT_SYNC_S must be 0 (off) or a finite number >= 0.01")
        if self.upstream_connections < 1:
            raise SystemExit("inventiv: INVENTIV_PROXY_UPSTREAM_CONNECTIONS must be >= 1")
