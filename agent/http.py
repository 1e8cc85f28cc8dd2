"""The agent's HTTP endpoints (bound to the private address, like the engine).

- ``/healthz``  the agent process is alive (200 even when the engine is not: restarting the
                agent would not help, and the heartbeat says what is wrong).
- ``/readyz``   200 only while the status is ``ready``: the engine lists the model and a warm-up
                completion produced a token; 503 with status and reason otherwise.
- ``/metrics``  Prometheus text from the agent's registry.
- ``/info``     version, package SHA-256, engine, model, uptime.
- ``/logs``     the last ``tail`` structured events (default 100, at most the ring size), only
                those at or after ``since`` (ISO 8601, e.g. ``2026-01-02T03:04:05Z``) when given.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from .logs import LogRing
from .metrics import AgentMetrics
from .settings import AgentSettings
from .state import AgentState

DEFAULT_TAIL = 100


class HttpContext(msgspec.Struct, kw_only=True):
    settings: AgentSettings
    state: AgentState
    metrics: AgentMetrics
    ring: LogRing
    version: str
    sha256: str
    gpu_sampler: str
    system_sampler: str


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json")


def make_app(ctx: HttpContext) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        st = ctx.state
        return _json({"status": st.status, "reason": st.reason}, 200 if st.status == "ready" else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=ctx.metrics.render(), headers={"Content-Type": ctx.metrics.content_type})

    async def info(request: web.Request) -> web.Response:
        st, s = ctx.state, ctx.settings
        return _json({
            "agent_version": ctx.version,
            "agent_sha256": ctx.sha256,
            "python": platform.python_version(),
            "instance_id": s.instance_id,
            "org_id": s.org_id,
            "engine": s.engine,
            "model": s.model,
            "engine_port": s.engine_port,
            "engine_pid": st.engine_pid,
            "engine_state": st.engine_state,
            "engine_incarnation": st.engine_incarnation,
            "engine_restarts": st.engine_restarts,
            "status": st.status,
            "reason": st.reason,
            "gpu_sampler": ctx.gpu_sampler,
            "system_sampler": ctx.system_sampler,
            "uptime_s": round(st.uptime_s(), 3),
        })

    async def logs(request: web.Request) -> web.Response:
        raw = request.query.get("tail", str(DEFAULT_TAIL))
        try:
            tail = int(raw)
        except ValueError:
            return _json({"error": f"tail must be an integer, got {raw!r}"}, 400)
        if tail < 0:
            return _json({"error": "tail must be >= 0"}, 400)
        since = None
        if "since" in request.query:
            raw_since = request.query["since"]
            try:
                since = datetime.fromisoformat(raw_since)
            except ValueError:
                return _json({"error": f"since must be an ISO 8601 timestamp, got {raw_since!r}"}, 400)
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)  # event timestamps are UTC
        events = ctx.ring.tail(tail, since)
        return _json({"total_events": ctx.ring.total, "returned": len(events), "events": events})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/info", info)
    app.router.add_get("/logs", logs)
    return app
