"""Publish one ``UsageRecord`` per request to ``usage.<org>``, off the request path.

A bounded queue feeds one background task. Each record is one message (``Nats-Msg-Id`` = the
record id, so a retried publish is stored once) and is only dropped from the queue once
JetStream acknowledged it. ``stop()`` drains the queue first: a clean shutdown loses nothing.
When the queue is full (NATS unreachable for a long time) new records are dropped and counted
(``inventiv_proxy_usage_dropped_total``) rather than slowing or failing requests.

Two ways to publish, chosen at start from the USAGE stream's config:

- **Atomic batches** (``allow_atomic: true`` on the stream, nats-server >= 2.12, ADR-50): up to
  ``_BATCH`` records per batch, one PubAck and -- with ``sync_interval: always`` -- one fsync
  per batch. With every write fsynced this is what lets usage keep up with the request rate:
  measured here, ~900 msg/s one at a time vs 20-50k msg/s in batches of 100-500. A batch is
  all or nothing; a retried batch that had in fact been stored is refused as a duplicate
  (err 10201), which means "done".
- **One PubAck per message** (``publish_async`` windows) otherwise. Correct, but bounded by the
  server's fsync rate when ``sync_interval: always``.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import structlog

from contracts import codec, headers, subjects
from contracts.usage import UsageRecord

from . import metrics

log = structlog.get_logger(__name__)

USAGE_STREAM = "USAGE"
_BATCH = 256
_WINDOW = 512
_ERR_BATCH_DUPLICATE = 10201
# How long the first record of a batch may wait for company (INVENTIV_PROXY_USAGE_LINGER_S). Nobody waits
# on a usage record, and each batch costs the server an fsync: measured here, ~1.6 ms of nats-server CPU
# per batch plus ~8 us per record. At low rates the batches are small, so the linger sets the fsync rate:
# at 2.8k req/s going from 10 to 50 ms cut nats-server's CPU per request from 84 to 30 us
# (benchmarks/README.md). The price: a crash (not a clean stop, which drains) loses up to one linger's
# worth of records more, next to the requests in flight it loses anyway.
DEFAULT_LINGER_S = 0.05


class UsagePublisher:
    def __init__(self, nc, *, maxsize: int = 100_000, ack_timeout_s: float = 5.0, stream: str = USAGE_STREAM,
                 linger_s: float = DEFAULT_LINGER_S) -> None:
        self._nc = nc
        self._linger_s = linger_s
        self._js = None
        self._stream = stream
        self._queue: asyncio.Queue[UsageRecord] = asyncio.Queue(maxsize=maxsize)
        self._ack_timeout_s = ack_timeout_s
        self._task: asyncio.Task | None = None
        self.atomic = False
        self.published = 0
        self.dropped = 0
        self.batches = 0  # publish rounds (each one PubAck, and one fsync with atomic batches)

    def submit(self, record: UsageRecord) -> bool:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            metrics.USAGE_DROPPED.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage.dropped", dropped=self.dropped)
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self, nc=None) -> None:
        if nc is not None:
            self._nc = nc
        if self._nc is None:
            raise RuntimeError("UsagePublisher needs a NATS connection")
        if self._task is not None:
            return
        self._js = self._nc.jetstream(publish_async_max_pending=_WINDOW * 2)
        try:
            info = await self._js.stream_info(self._stream)
            self.atomic = bool(getattr(info.config, "allow_atomic", False))
        except Exception as exc:  # no stream yet: publish one by one (the server answers once it exists)
            log.warning("usage.stream_info_failed", stream=self._stream, error=str(exc))
            self.atomic = False
        log.info("usage.publisher_started", atomic_batches=self.atomic)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        queue = self._queue
        limit = _BATCH if self.atomic else _WINDOW
        while True:
            first = await queue.get()
            if queue.qsize() < limit - 1:
                await asyncio.sleep(self._linger_s)
            batch = [first]
            while len(batch) < limit and not queue.empty():
                batch.append(queue.get_nowait())
            metrics.USAGE_QUEUE.set(queue.qsize())
            items = []
            for record in batch:
                try:
                    items.append((subjects.usage_subject(record.org_id), codec.encode(record), record.id))
                except subjects.UnsafeSubjectToken:
                    log.error("usage.bad_org", org=record.org_id)
            backoff = 0.05
            while items:
                try:
                    if self.atomic:
                        items = await self._publish_atomic(items)
                    else:
                        items = await self._publish_each(items)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("usage.publish_failed", error=str(exc), count=len(items))
                if items:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
            self.batches += 1
            for _ in batch:
                queue.task_done()

    def _acked(self, n: int) -> None:
        self.published += n
        metrics.USAGE_PUBLISHED.inc(n)

    async def _publish_atomic(self, items: list[tuple[str, bytes, str]]) -> list:
        """One atomic batch; returns what is left to publish ([] on success)."""
        nc = self._nc
        batch_id = uuid.uuid4().hex  # a fresh id per attempt: a half-sent earlier attempt is abandoned
        last = len(items) - 1
        for i, (subject, payload, msg_id) in enumerate(items):
            hdrs = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + 1), headers.MSG_ID: msg_id}
            if i < last:
                await nc.publish(subject, payload, headers=hdrs)
            else:
                hdrs["Nats-Batch-Commit"] = "1"
                reply = await nc.request(subject, payload, headers=hdrs, timeout=self._ack_timeout_s)
        ack = json.loads(reply.data)
        err = ack.get("error")
        if err is None:
            self._acked(len(items))
            return []
        if err.get("err_code") == _ERR_BATCH_DUPLICATE:
            # Only possible for a retry of a batch that was stored (same records, same ids).
            self._acked(len(items))
            return []
        # Anything else (atomic publishing switched off, a server limit): fall back to one PubAck per
        # message, which the server always accepts.
        log.warning("usage.batch_refused", error=err, count=len(items), fallback="one message at a time")
        self.atomic = False
        return items

    async def _publish_each(self, items: list[tuple[str, bytes, str]]) -> list:
        futures = []
        try:
            for subject, payload, msg_id in items:
                futures.append(await self._js.publish_async(
                    subject, payload, stream=self._stream, headers={headers.MSG_ID: msg_id}))
        except Exception as exc:  # disconnected and the client's buffer is full, etc.
            log.warning("usage.publish_failed", error=str(exc))
        done, not_done = await asyncio.wait(futures, timeout=self._ack_timeout_s) if futures else (set(), set())
        for f in not_done:
            f.cancel()  # frees the client's pending-ack slot; the record is retried with the same id
        failed = []
        for i, item in enumerate(items):
            fut = futures[i] if i < len(futures) else None
            if fut is None or fut not in done or fut.cancelled() or fut.exception() is not None:
                failed.append(item)
        self._acked(len(items) - len(failed))
        return failed

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued record was acknowledged; False on timeout."""
        if self._task is None:
            return self._queue.empty()
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self, timeout_s: float = 10.0) -> None:
        ok = await self.flush(timeout_s)
        if not ok:
            log.error("usage.unflushed_on_stop", pending=self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
