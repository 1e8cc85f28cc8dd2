"""After each inference request: its metrics and its ONE usage record (queued, published off-path)."""

from __future__ import annotations

import os
import time
from datetime import datetime

import structlog

from contracts.usage import UsageRecord

from . import metrics
from .usage import UsagePublisher

log = structlog.get_logger(__name__)


def new_request_id() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` but in a quarter of the time (~0.9 us).

    It is the request's ``X-Request-Id`` and its usage record's id (the record's ``Nats-Msg-Id``):
    never taken from the client, whose repeated ids would make JetStream drop records as duplicates.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class Outcome:
    """What happened to one request, filled in as it goes."""

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


def account(usage: UsagePublisher, served_models, principal, model: str, endpoint_name: str, is_stream: bool,
            started_at: datetime, request_id: str, out: Outcome, t0: float) -> None:
    """``served_models(model)`` tells whether ``model`` may be a metric label (a model we serve):
    a client inventing model names must not create metric series."""
    duration_s = time.perf_counter() - t0
    iid = out.instance_id
    status = out.status or 500
    wm = metrics.for_worker(model if served_models(model) else "-", iid or "-")
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
    usage.submit(record)
