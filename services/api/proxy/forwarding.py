"""Send one request to a worker of its model, retrying on another while nothing went to the client.

Per attempt: ``policy.choose`` over the routing table's current snapshot, this process's
outstanding counts and penalties; then ``relay.unary_once`` / ``relay.stream_once``. A worker
that failed (connect error, 5xx, a broken answer before the first byte) is penalised for
``penalty_s`` and excluded for the rest of the request; ``max_attempts`` bounds the tries.
"""

from __future__ import annotations

import time

import structlog

from . import errors, metrics
from .accounting import Outcome
from .policy import choose
from .relay import RetryElsewhere, stream_once, unary_once
from .request import InferenceRequest
from .responses import ClientState
from .routing_table import RoutingTable
from .settings import ProxySettings
from .targets import TargetCache

log = structlog.get_logger(__name__)


class Forwarder:
    def __init__(self, table: RoutingTable, settings: ProxySettings, catalog_has) -> None:
        self.table = table
        self.settings = settings
        self.client = None  # set at start: upstream.UpstreamClient or AiohttpUpstream
        self.outstanding: dict[str, int] = {}
        self.penalised: dict[str, float] = {}
        self.targets = TargetCache(settings.engine_key_secret, settings.upstream_api_key)
        self._catalog_has = catalog_has
        self._counter = 0

    def penalise(self, instance_id: str, seconds: float | None = None) -> None:
        now = time.time()
        if len(self.penalised) > 1000:
            self.penalised = {k: v for k, v in self.penalised.items() if v > now}
        self.penalised[instance_id] = now + (self.settings.penalty_s if seconds is None else seconds)

    def _choose(self, model, allowed, session_key, tried, attempt):
        now = time.time()
        self._counter += 1
        snap = self.table.snapshot
        choice = choose(snap, model, self.outstanding, now, self.penalised, session_key,
                        allowed_orgs=allowed, exclude=tried, tiebreak=self._counter)
        if choice is None and tried:
            # Nobody else: the same worker again, unless it was penalised (connect error, 5xx).
            choice = choose(snap, model, self.outstanding, now, self.penalised, session_key,
                            allowed_orgs=allowed, tiebreak=self._counter)
        if choice is None and attempt == 0 and self.penalised:
            # Every candidate failed recently. Rather than refusing the model outright for
            # penalty_s (one 500 on a lone worker would otherwise take the model down), try one
            # anyway: a dead worker fails fast, and stops being routable with its heartbeats.
            choice = choose(snap, model, self.outstanding, now, {}, session_key, allowed_orgs=allowed,
                            tiebreak=self._counter)
            if choice is not None:
                choice = choice._replace(reason="last_resort")
        return choice

    async def forward(self, send, req: InferenceRequest, upstream_path: str, allowed, session_key: str | None,
                      request_id: str, out: Outcome, t0: float, state: ClientState) -> None:
        model = req.model
        tried: list[str] = []
        last_error = errors.upstream_failed()
        for attempt in range(self.settings.max_attempts):
            choice = self._choose(model, allowed, session_key, tried, attempt)
            if choice is None:
                if attempt == 0:
                    raise self.no_worker(model, allowed)
                raise last_error
            iid = choice.instance_id
            out.instance_id = iid
            out.reason = choice.reason if attempt == 0 else f"{choice.reason};retry={attempt}"
            out.attempts = attempt + 1
            target = self.targets.get(iid, choice.upstream_url, upstream_path)
            if target is None:
                self.penalise(iid, max(self.settings.penalty_s, 30.0))
                tried.append(iid)
                continue
            wm = metrics.for_worker(model, iid)
            self.outstanding[iid] = self.outstanding.get(iid, 0) + 1
            try:
                if req.is_stream:
                    await stream_once(self.client, send, target, req, request_id, out, t0, state, wm, self.penalise)
                else:
                    await unary_once(self.client, send, target, req, request_id, out, t0, state)
                return
            except RetryElsewhere as r:
                wm.error(r.kind)
                metrics.RETRIES.labels(model, iid, r.kind).inc()
                if r.kind == "engine_refused_key":
                    # Does not heal in seconds: keep the worker out longer, and say what to fix.
                    self.penalise(iid, max(self.settings.penalty_s, 30.0))
                    log.error("proxy.engine_refused_key", model=model, instance=iid,
                              fix="the proxy and the orchestrator that installed this worker must share "
                                  "INVENTIV_ENGINE_KEY_SECRET (or INVENTIV_PROXY_UPSTREAM_API_KEY)")
                elif r.penalise:
                    self.penalise(iid)
                tried.append(iid)
                last_error = errors.upstream_timeout() if r.kind == "connect_timeout" else errors.upstream_failed()
                log.warning("proxy.upstream_retry", model=model, instance=iid, kind=r.kind, attempt=attempt + 1)
            finally:
                n = self.outstanding.get(iid, 1) - 1
                if n:
                    self.outstanding[iid] = n
                else:
                    self.outstanding.pop(iid, None)
        raise last_error

    def no_worker(self, model: str, allowed) -> errors.ProxyError:
        if self._catalog_has(model):
            return errors.no_ready_worker(model)
        for w in self.table.snapshot.workers.get(model, ()):
            if allowed is None or w.org_id in allowed:
                return errors.no_ready_worker(model)
        return errors.model_not_found(model)
