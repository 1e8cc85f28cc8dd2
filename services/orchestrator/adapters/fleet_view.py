"""The whole fleet as the log knows it, for reconciliation: one ``KnownInstance`` per instance.

Reads the last event of every ``evt.*.instance.*.*`` subject (an ephemeral consumer with
``deliver_policy: last_per_subject``, so the cost grows with instances × event types, not with
history). Instances whose last events include ``terminated``/``archived`` are over; every other
one is loaded and folded, so its status and recorded server are exact.
"""

from __future__ import annotations

import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.codec import DecodeError

from ..domain import lifecycle as lc
from ..domain.evolve import IllegalTransition, fold
from ..domain.reconcile import KnownInstance
from ..ports import EventStore

log = structlog.get_logger(__name__)

EVENTS_STREAM = "EVENTS"
INSTANCE_SUBJECTS = "evt.*.instance.*.*"
_OVER = {"terminated": lc.TERMINATED, "archived": lc.ARCHIVED}


class JetStreamFleetView:
    def __init__(self, js: JetStreamContext, store: EventStore, *, batch: int = 512, fetch_timeout_s: float = 2.0):
        self._js, self._store = js, store
        self._batch, self._fetch_timeout_s = batch, fetch_timeout_s

    async def known_instances(self) -> dict[str, KnownInstance]:
        names = await self._last_event_names()
        known: dict[str, KnownInstance] = {}
        for (org_id, instance_id), seen in names.items():
            over = [status for name, status in _OVER.items() if name in seen]
            if over:
                known[instance_id] = KnownInstance(instance_id, org_id, max(over, key=lc.STATUSES.index))
                continue
            try:
                loaded = await self._store.load(subjects.aggregate_filter(org_id, "instance", instance_id))
                state = fold(item.event for item in loaded)
            except (DecodeError, IllegalTransition, subjects.UnsafeSubjectToken) as exc:
                log.warning("orchestrator.fleet_view_skipped", instance_id=instance_id, error=repr(exc))
                continue
            if state.status is None:
                continue  # only rejections: an instance that never existed
            known[instance_id] = KnownInstance(
                instance_id, org_id, state.status, state.zone, state.server_id if state.has_live_server else None
            )
        return known

    async def _last_event_names(self) -> dict[tuple[str, str], set[str]]:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            filter_subject=INSTANCE_SUBJECTS,
            inactive_threshold=60.0,
        )
        sub = await self._js.pull_subscribe(INSTANCE_SUBJECTS, stream=EVENTS_STREAM, config=config)
        names: dict[tuple[str, str], set[str]] = {}
        try:
            pending = (await sub.consumer_info()).num_pending
            while pending > 0:
                try:
                    msgs = await sub.fetch(batch=min(self._batch, pending), timeout=self._fetch_timeout_s)
                except nats.errors.TimeoutError:
                    break
                for msg in msgs:
                    parts = msg.subject.split(".")  # evt.<org>.instance.<id>.<name>
                    if len(parts) == 5:
                        names.setdefault((parts[1], parts[3]), set()).add(parts[4])
                    pending = msg.metadata.num_pending
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # the ephemeral consumer expires on its own (inactive_threshold)
                pass
        return names
