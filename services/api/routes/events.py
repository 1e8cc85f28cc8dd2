"""``GET /events/stream``: the caller's organisation's events, live, over SSE.

``id:`` is the EVENTS stream sequence. A reconnecting client sends it back as ``Last-Event-ID``
(browsers do so by themselves; ``?last_event_id=`` works too) and gets what it missed, then the
live feed, with no gap and no duplicate. Authenticate with the session cookie (browsers) or an
``Authorization`` header (programs); credentials are never accepted in the URL. The stream is
closed when the credential is revoked (checked at every keep-alive).
"""

from __future__ import annotations

from litestar import Request, get
from litestar.exceptions import NotAuthorizedException
from litestar.params import Parameter

from ..auth.principal import Principal, authenticate
from ..errors import Problem, field_error
from ..sse import SseSession, TooManyStreams
from ..sse_response import SseResponse
from ..state import resources
from ..validation import path_uuid


def _last_event_id(request: Request, query_value: str | None) -> int | None:
    raw = request.headers.get("last-event-id")
    if raw is None or raw == "":
        raw = query_value
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise field_error("Last-Event-ID", "must be a stream sequence (a non-negative integer)", status_code=400)
    return int(raw)


@get("/events/stream", tags=["events"], summary="Server-sent events of your organization (text/event-stream)",
     description="Each message: `id: <stream seq>`, `event: <type tag>`, `data: {seq, type, instance_id, status, "
                 "occurred_at, ...}`. A `hello` event (without id) opens the stream; comments keep it alive.")
async def event_stream(
    request: Request,
    principal: Principal,
    org_id: str,
    instance_id: str | None = Parameter(default=None, max_length=36, description="only this instance's events"),
    last_event_id: str | None = Parameter(default=None, max_length=20,
                                          description="resume after this sequence (the Last-Event-ID header wins)"),
    topics: str | None = Parameter(default=None, max_length=200, description="accepted for compatibility; ignored"),
) -> SseResponse:
    if instance_id is not None:
        instance_id = path_uuid("instance_id", instance_id)
    resume_after = _last_event_id(request, last_event_id)
    res = resources(request)
    try:
        subscriber = res.hub.subscribe(org_id, instance_id)
    except TooManyStreams as exc:
        raise Problem(429, f"too many open event streams ({exc.cap} limit)", type_="too-many-streams",
                      headers={"Retry-After": "5"}) from exc

    async def still_authorized() -> bool:
        request.scope.get("state", {}).pop("principal", None)
        try:
            again = await authenticate(request)
        except NotAuthorizedException:
            return False
        except Exception:  # noqa: BLE001 - a database hiccup is not a revocation
            return True
        return again is not None and again.org_id == org_id

    session = SseSession(res.hub, subscriber, last_event_id=resume_after, keepalive_s=res.api.sse_keepalive_s,
                         still_authorized=still_authorized)
    return SseResponse(session, write_timeout_s=res.api.sse_write_timeout_s)


route_handlers = [event_stream]
