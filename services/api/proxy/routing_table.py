"""Which workers can serve which model, right now: in memory, fed by NATS.

Two inputs, each trusted for what it is:

- **Instance events** (the facts, from the EVENTS stream): ``instance.ready`` adds a worker with
  the ``upstream_url`` *of the event* (set by the orchestrator from provider facts; never from
  a worker or a client); ``instance.recovered`` makes a known one ready again;
  ``instance.unavailable`` takes it out (kept, so a recovery can bring it back);
  ``termination_requested`` / ``terminated`` / ``failed`` / ``archived`` forget it.
- **Heartbeats** (telemetry, ``hb.<org>.<instance>``): the worker's own status and load. The
  instance id and org come from the SUBJECT only (NATS permissions bind a worker to its own
  subject); a heartbeat whose org is not the instance's org is ignored. The time kept is when
  it reached NATS: the stream's ``Nats-Time-Stamp`` for the ones loaded at start, the
  receive time for live ones; never the worker's ``sent_at``.

A worker is routable when its instance is ready, its last heartbeat is at most
``worker_stale_s`` old (the one staleness window, ``INVENTIV_WORKER_STALE_S``) and that
heartbeat says ``ready``. That test lives in ``policy.is_routable``.

Start: subscribe to ``hb.>`` first, then read the last heartbeat per subject from the
HEARTBEATS stream (so none is missed in between; a loaded one never overwrites a newer live
one); load ready instances from ``rm.instances`` with the projector's checkpoint in one
snapshot, then follow instance events from ``checkpoint + 1`` (``jsfollow``). Without a read
model, the instance events are replayed from the start of the stream.

Readers get an immutable ``RoutingSnapshot``; each change swaps in a new tuple for the one
model it touches (copy on write), so the hot path never locks and never sees half an update.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Mapping

import msgspec
import structlog

from contracts import codec, subjects
from contracts.events import (
    InstanceArchived,
    InstanceFailed,
    InstanceReady,
    InstanceRecovered,
    InstanceTerminated,
    InstanceTerminationRequested,
    InstanceUnavailable,
)

from ..read_model_snapshot import read_model_snapshot
from .jsfollow import EventFollower

log = structlog.get_logger(__name__)

HEARTBEATS_STREAM = "HEARTBEATS"
INSTANCE_EVENT_SUBJECTS = [
    f"evt.*.instance.*.{name}"
    for name in ("ready", "recovered", "unavailable", "termination_requested", "terminated", "failed", "archived")
]
_GONE = (InstanceTerminationRequested, InstanceTerminated, InstanceFailed, InstanceArchived)


class WorkerState(msgspec.Struct, frozen=True, kw_only=True):
    """One worker as the router sees it. Immutable: a change replaces the object."""

    instance_id: str
    org_id: str
    model: str
    upstream_url: str
    instance_status: str = "ready"
    hb_status: str | None = None
    hb_received_at: float | None = None  # epoch seconds
    requests_running: float = 0.0
    requests_waiting: float = 0.0
    kv_cache_usage: float | None = None


class RoutingSnapshot(msgspec.Struct, frozen=True):
    workers: Mapping[str, tuple[WorkerState, ...]]
    stale_s: float = 30.0


class _Instance(msgspec.Struct):
    org_id: str
    model: str
    upstream_url: str
    status: str


class _Heartbeat(msgspec.Struct):
    org_id: str
    status: str
    model: str
    received_at: float
    running: float
    waiting: float
    kv: float | None


def _ts_from_header(value: str | None) -> float | None:
    """``Nats-Time-Stamp`` (RFC 3339 with nanoseconds, UTC) -> epoch seconds."""
    if not value:
        return None
    try:
        text = value.strip().replace("Z", "+00:00")
        # Python parses at most microseconds: trim the fraction to 6 digits.
        if "." in text:
            head, _, rest = text.partition(".")
            digits = "".join(ch for ch in rest if ch.isdigit())
            tz = rest[len(digits):]
            text = f"{head}.{digits[:6]}{tz}"
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class RoutingTable:
    def __init__(self, *, stale_s: float = 30.0, clock=time.time) -> None:
        self.stale_s = stale_s
        self._clock = clock
        self._instances: dict[str, _Instance] = {}
        self._heartbeats: dict[str, _Heartbeat] = {}
        self._workers: dict[str, tuple[WorkerState, ...]] = {}
        self.snapshot = RoutingSnapshot({}, stale_s)
        self._follower: EventFollower | None = None
        self._hb_sub = None
        self._gc_task: asyncio.Task | None = None
        self.models_seen: set[str] = set()

    # --- building views ----------------------------------------------------------------------

    def _worker(self, instance_id: str, inst: _Instance) -> WorkerState:
        hb = self._heartbeats.get(instance_id)
        if hb is None or hb.org_id != inst.org_id:
            return WorkerState(instance_id=instance_id, org_id=inst.org_id, model=inst.model,
                               upstream_url=inst.upstream_url, instance_status=inst.status)
        return WorkerState(
            instance_id=instance_id, org_id=inst.org_id, model=inst.model, upstream_url=inst.upstream_url,
            instance_status=inst.status, hb_status=hb.status, hb_received_at=hb.received_at,
            requests_running=hb.running, requests_waiting=hb.waiting, kv_cache_usage=hb.kv,
        )

    def _rebuild_model(self, model: str) -> None:
        workers = tuple(
            sorted(
                (self._worker(iid, inst) for iid, inst in self._instances.items() if inst.model == model),
                key=lambda w: w.instance_id,
            )
        )
        new = dict(self._workers)
        if workers:
            new[model] = workers
        else:
            new.pop(model, None)
        self._workers = new
        self.snapshot = RoutingSnapshot(new, self.stale_s)

    def _update_one(self, instance_id: str) -> None:
        inst = self._instances.get(instance_id)
        if inst is None:
            return
        current = self._workers.get(inst.model, ())
        fresh = self._worker(instance_id, inst)
        for i, w in enumerate(current):
            if w.instance_id == instance_id:
                new_tuple = current[:i] + (fresh,) + current[i + 1:]
                new = dict(self._workers)
                new[inst.model] = new_tuple
                self._workers = new
                self.snapshot = RoutingSnapshot(new, self.stale_s)
                return
        self._rebuild_model(inst.model)

    # --- inputs ------------------------------------------------------------------------------

    def set_instance(self, instance_id: str, *, org_id: str, model: str, upstream_url: str, status: str = "ready") -> None:
        old = self._instances.get(instance_id)
        self._instances[instance_id] = _Instance(org_id=org_id, model=model, upstream_url=upstream_url, status=status)
        self.models_seen.add(model)
        if old is not None and old.model != model:
            self._rebuild_model(old.model)
        self._rebuild_model(model)

    def set_status(self, instance_id: str, status: str) -> None:
        inst = self._instances.get(instance_id)
        if inst is not None and inst.status != status:
            inst.status = status
            self._update_one(instance_id)

    def remove_instance(self, instance_id: str) -> None:
        inst = self._instances.pop(instance_id, None)
        if inst is not None:
            self._rebuild_model(inst.model)

    def apply_event(self, seq: int, event) -> None:
        if isinstance(event, InstanceReady):
            self.set_instance(event.instance_id, org_id=event.org_id, model=event.model_name,
                              upstream_url=event.upstream_url, status="ready")
        elif isinstance(event, InstanceRecovered):
            self.set_status(event.instance_id, "ready")
        elif isinstance(event, InstanceUnavailable):
            self.set_status(event.instance_id, "unavailable")
        elif isinstance(event, _GONE):
            self.remove_instance(event.instance_id)

    def apply_heartbeat(self, org_id: str, instance_id: str, hb, received_at: float) -> None:
        old = self._heartbeats.get(instance_id)
        if old is not None and old.received_at > received_at:
            return  # a stored heartbeat older than one already seen live
        eng = hb.engine
        self._heartbeats[instance_id] = _Heartbeat(
            org_id=org_id, status=hb.status, model=hb.model, received_at=received_at,
            running=float(eng.requests_running), waiting=float(eng.requests_waiting), kv=eng.kv_cache_usage,
        )
        if instance_id in self._instances:
            self._update_one(instance_id)

    def apply_heartbeat_message(self, subject: str, data: bytes, received_at: float) -> None:
        try:
            org_id, instance_id = subjects.parse_heartbeat_subject(subject)
            hb = codec.decode_heartbeat(data)
        except Exception as exc:
            log.debug("routing.bad_heartbeat", subject=subject, error=str(exc))
            return
        self.apply_heartbeat(org_id, instance_id, hb, received_at)

    def forget_old_heartbeats(self, older_than_s: float) -> int:
        limit = self._clock() - older_than_s
        gone = [iid for iid, hb in self._heartbeats.items() if hb.received_at < limit]
        for iid in gone:
            del self._heartbeats[iid]
            self._update_one(iid)
        return len(gone)

    # --- lifecycle -------------------------------------------------------------------------

    async def _on_heartbeat(self, msg) -> None:
        self.apply_heartbeat_message(msg.subject, msg.data, self._clock())

    async def _load_heartbeats(self, js) -> int:
        try:
            info = await js.stream_info(HEARTBEATS_STREAM, subjects_filter="hb.>")
        except Exception as exc:
            log.warning("routing.heartbeats_unavailable", error=str(exc))
            return 0
        names = list((info.state.subjects or {}).keys())

        async def last(subject: str):
            try:
                return await js.get_msg(HEARTBEATS_STREAM, subject=subject, direct=True)
            except Exception:
                return None

        loaded = 0
        now = self._clock()
        for i in range(0, len(names), 256):
            for raw in await asyncio.gather(*(last(s) for s in names[i:i + 256])):
                if raw is None:
                    continue
                stamp = _ts_from_header((raw.headers or {}).get("Nats-Time-Stamp"))
                # Server time, capped at our own clock so a skewed server never makes a heartbeat "future-fresh".
                received = min(stamp, now) if stamp is not None else now - self.stale_s - 1
                self.apply_heartbeat_message(raw.subject, raw.data or b"", received)
                loaded += 1
        return loaded

    async def _load_instances(self, pool) -> int:
        checkpoint, rows = await read_model_snapshot(
            pool,
            "SELECT id, org_id, model_name, upstream_url, status FROM rm.instances "
            "WHERE status IN ('ready', 'unavailable', 'draining') AND upstream_url IS NOT NULL",
            what="instances",
        )
        for row in rows:
            self.set_instance(str(row["id"]), org_id=str(row["org_id"]), model=row["model_name"],
                              upstream_url=row["upstream_url"], status=row["status"])
        return int(checkpoint)

    async def start(self, nc, pool) -> None:
        self._hb_sub = await nc.subscribe("hb.>", cb=self._on_heartbeat)
        hb_loaded = await self._load_heartbeats(nc.jetstream())
        checkpoint = await self._load_instances(pool)
        self._follower = EventFollower(nc, name="routing", filter_subjects=INSTANCE_EVENT_SUBJECTS,
                                       handler=self.apply_event)
        await self._follower.start(checkpoint + 1)
        self._gc_task = asyncio.get_running_loop().create_task(self._gc_loop())
        log.info("routing.started", instances=len(self._instances), heartbeats=hb_loaded, checkpoint=checkpoint,
                 last_seq=self._follower.last_seq)

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(max(5.0, self.stale_s))
            self.forget_old_heartbeats(max(120.0, 4 * self.stale_s))

    async def stop(self) -> None:
        if self._gc_task is not None:
            self._gc_task.cancel()
            self._gc_task = None
        if self._hb_sub is not None:
            try:
                await self._hb_sub.unsubscribe()
            except Exception:
                pass
            self._hb_sub = None
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None
