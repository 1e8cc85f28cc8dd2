"""Unauthenticated operational endpoints: health, readiness, metrics, version."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

from litestar import Request, Response, get
from litestar.response import Redirect

from .. import metrics
from ..state import resources

_STARTED_AT = datetime.now(timezone.utc)

try:
    _VERSION = version("inventiv")
except PackageNotFoundError:  # running from a checkout without an install
    _VERSION = "0.0.0+local"


@get("/healthz", tags=["ops"], summary="Liveness: the process answers and holds its connections",
     include_in_schema=True)
async def healthz(request: Request) -> Response[dict]:
    res = resources(request)
    nats_ok = res.nc.is_connected
    body = {"status": "ok" if nats_ok else "degraded", "nats": "connected" if nats_ok else "disconnected",
            "sse_clients": res.hub.subscriber_count}
    # Liveness stays 200 while NATS reconnects by itself; /readyz is the strict check.
    return Response(body, status_code=200, headers={"Cache-Control": "no-store"})


@get("/readyz", tags=["ops"], summary="Readiness: NATS connected and Postgres answering")
async def readyz(request: Request) -> Response[dict]:
    res = resources(request)
    pg_ok = True
    try:
        await asyncio.wait_for(res.pool.fetchval("SELECT 1"), 2.0)
    except Exception:  # noqa: BLE001 - reported, not raised
        pg_ok = False
    ok = pg_ok and res.nc.is_connected
    return Response({"status": "ok" if ok else "unavailable", "postgres": pg_ok, "nats": res.nc.is_connected},
                    status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


@get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint() -> Response[bytes]:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@get(["/version", "/api/version"], tags=["ops"], summary="Backend version")
async def backend_version() -> dict:
    return {"backend_version": _VERSION, "build_time": _STARTED_AT.isoformat()}


@get("/swagger-ui", include_in_schema=False)
async def swagger_redirect() -> Redirect:
    return Redirect(path="/api-docs/swagger")


route_handlers = [healthz, readyz, metrics_endpoint, backend_version, swagger_redirect]
