"""Pick a worker for one request. Pure: everything it depends on is an argument.

Order of preference among the routable workers of the model:

1. fewest requests outstanding *from this process* (exact and instantly updated, unlike
   the engine's own counters, which arrive with the next heartbeat);
2. then the engine's reported queue depth (``requests_waiting``);
3. then its KV-cache use (unknown counts as empty);
4. then its running requests;
5. remaining ties are spread by ``tiebreak`` (the caller passes a counter), so equal
   workers take turns instead of one taking everything.

Never picked: a worker whose instance is not ready, whose last heartbeat is older than the
staleness window or not ``ready`` (draining, unhealthy, starting, failed), that is
penalised (failed recently) or excluded (already tried by this request), or that belongs to
an org the caller may not use.

With a ``session_key`` (the ``X-Inventiv-Session`` header, scoped to the caller's org), the
request goes to the session's worker by rendezvous hashing (``affinity.py``): its home among
the model's workers the caller may use when that one is routable (``session_affinity``), else
the highest-weight routable one (``session_fallback``: the home is stale, draining, unhealthy,
penalised or was already tried by this request). A home that leaves the table is replaced for
good by the session's next worker. Adding or removing a worker only moves the sessions of
that worker. Unlike the original (which ignored load when sticky), the pinned
worker is left for the least-loaded one when it has more than ``sticky_slack`` requests
outstanding above it (``session_overflow``).
"""

from __future__ import annotations

from typing import Container, Mapping, NamedTuple

from .affinity import weight
from .routing_table import RoutingSnapshot, WorkerState

STICKY_SLACK = 4


class Choice(NamedTuple):
    instance_id: str
    upstream_url: str
    org_id: str
    reason: str  # least_outstanding | session_affinity | session_fallback | session_overflow


def is_routable(worker: WorkerState, now: float, stale_s: float) -> bool:
    return (
        worker.instance_status == "ready"
        and worker.hb_status == "ready"
        and worker.hb_received_at is not None
        and now - worker.hb_received_at <= stale_s
    )


def eligible(
    snapshot: RoutingSnapshot,
    model: str,
    now: float,
    penalised: Mapping[str, float],
    *,
    allowed_orgs: Container[str] | None = None,
    exclude: Container[str] = (),
) -> list[WorkerState]:
    stale_s = snapshot.stale_s
    out = []
    for w in snapshot.workers.get(model, ()):
        if not is_routable(w, now, stale_s):
            continue
        if allowed_orgs is not None and w.org_id not in allowed_orgs:
            continue
        if w.instance_id in exclude:
            continue
        until = penalised.get(w.instance_id)
        if until is not None and until > now:
            continue
        out.append(w)
    return out


def _load_key(w: WorkerState, outstanding: Mapping[str, int]):
    kv = w.kv_cache_usage
    return (outstanding.get(w.instance_id, 0), w.requests_waiting, kv if kv is not None else 0.0, w.requests_running)


def choose(
    snapshot: RoutingSnapshot,
    model: str,
    outstanding: Mapping[str, int],
    now: float,
    penalised: Mapping[str, float],
    session_key: str | None = None,
    *,
    allowed_orgs: Container[str] | None = None,
    exclude: Container[str] = (),
    tiebreak: int = 0,
    sticky_slack: int = STICKY_SLACK,
) -> Choice | None:
    candidates = eligible(snapshot, model, now, penalised, allowed_orgs=allowed_orgs, exclude=exclude)
    if not candidates:
        return None
    if len(candidates) == 1 and not session_key:
        w = candidates[0]
        return Choice(w.instance_id, w.upstream_url, w.org_id, "least_outstanding")
    keys = [_load_key(w, outstanding) for w in candidates]
    best = min(keys)
    if session_key:
        weights = {w.instance_id: (weight(session_key, w.instance_id), w.instance_id)
                   for w in snapshot.workers.get(model, ())
                   if allowed_orgs is None or w.org_id in allowed_orgs}
        pinned = max(candidates, key=lambda w: weights[w.instance_id])
        if outstanding.get(pinned.instance_id, 0) <= best[0] + sticky_slack:
            reason = "session_affinity" if weights[pinned.instance_id] == max(weights.values()) else "session_fallback"
            return Choice(pinned.instance_id, pinned.upstream_url, pinned.org_id, reason)
    tied = [w for w, k in zip(candidates, keys) if k == best]
    w = tied[tiebreak % len(tied)]
    return Choice(w.instance_id, w.upstream_url, w.org_id, "session_overflow" if session_key else "least_outstanding")
