"""The NATS side of ``limit_sync``: publish this process's report, merge the peers'.

Core NATS, not JetStream: a report is telemetry, superseded a quarter of a second later, and a
lost one costs a bounded over-admission (``limit_sync.py``), not a wrong state. Every process
publishes on ``proxy.limits.<process id>`` (a random id per process start) every
``INVENTIV_PROXY_LIMIT_SYNC_S`` seconds, even with nothing to say (the report then tells the
peers that it is alive), and subscribes to ``proxy.limits.*``. Both run off the request path:
one background task, one subscription callback. A report that cannot be decoded, or whose
process id is not its subject's, is logged and ignored.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import msgspec
import structlog

from contracts import subjects

from . import metrics
from .limit_sync import LimitSync, decode_report, encode_report

log = structlog.get_logger(__name__)

report_subject = subjects.proxy_limits_subject


class LimitGossip:
    def __init__(self, admission, *, sync_s: float, process_id: str | None = None,
                 clock=time.monotonic_ns) -> None:
        self.sync_s = sync_s
        self.process_id = process_id or secrets.token_hex(8)
        self.subject = report_subject(self.process_id)
        self._admission = admission
        self._clock = clock
        self.sync: LimitSync | None = None  # made at start: admissions are recorded from then on
        self._nc = None
        self._sub = None
        self._task: asyncio.Task | None = None

    async def start(self, nc) -> None:
        if self._task is not None:
            return
        self._nc = nc
        self.sync = LimitSync(self._admission, process_id=self.process_id,
                              interval_ns=int(self.sync_s * 1_000_000_000), now_ns=self._clock())
        self._sub = await nc.subscribe(subjects.PROXY_LIMITS_ALL, cb=self._on_report)
        self._task = asyncio.get_running_loop().create_task(self._run())
        log.info("limits.sync_started", process_id=self.process_id, interval_s=self.sync_s)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                await self.publish_once()
            except Exception:  # never let one bad round stop the reports (peers would forget us)
                log.exception("limits.sync_round_failed")

    async def publish_once(self) -> None:
        now = self._clock()
        self.sync.expire(now)
        metrics.LIMIT_PEERS.set(self.sync.live_peers)
        data = encode_report(self.sync.report(now))
        try:
            await self._nc.publish(self.subject, data)
        except Exception as exc:  # disconnected with a full buffer, payload too large: that report is lost
            metrics.LIMIT_REPORTS.labels("publish_failed").inc()
            log.warning("limits.publish_failed", error=str(exc), size=len(data))
            return
        metrics.LIMIT_REPORTS.labels("published").inc()

    async def _on_report(self, msg) -> None:
        self.on_report(msg.subject, msg.data)

    def on_report(self, subject: str, data: bytes) -> None:
        if self.sync is None:
            return
        try:
            report = decode_report(data)
        except msgspec.DecodeError as exc:
            metrics.LIMIT_REPORTS.labels("bad").inc()
            log.warning("limits.bad_report", subject=subject, error=str(exc), size=len(data))
            return
        if subject.rpartition(".")[2] != report.process_id:
            metrics.LIMIT_REPORTS.labels("bad").inc()
            log.warning("limits.bad_report", subject=subject, error="process id differs from the subject's")
            return
        if self.sync.merge(report, self._clock()):
            metrics.LIMIT_REPORTS.labels("merged").inc()

    async def stop(self) -> None:
        """A last report (what was admitted since the previous one, what is still in flight), then quiet."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        self._task = None
        try:
            await self.publish_once()
        except Exception:
            pass
        self._admission.pending = None  # nobody reports them any more
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None
