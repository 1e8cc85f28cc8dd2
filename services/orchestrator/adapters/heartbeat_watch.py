"""Turns worker status changes into immediate checks, so ``ready`` follows the real signal.

Subscribes to ``hb.>`` (plain NATS; heartbeats are telemetry). When an instance's worker
status changes to ``starting``, ``ready``, ``failed``, ``unhealthy`` or ``draining``, it publishes a one-shot
CheckInstance whose id (and ``Nats-Msg-Id``) is derived from ``check:<instance>:<status>``:
every replica that sees the change publishes the same id and the stream keeps one. The
check decides from the stream (last heartbeat, engine probe), never from this message.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timezone

import structlog
from nats.aio.client import Client as NATS

from contracts import codec, subjects
from contracts import commands as cmd

from .. import metrics
from ..domain.decide import ORCHESTRATOR_ACTOR
from ..handlers import NUDGE_STATUSES, nudge_command_id
from ..ports import CommandPublisher

log = structlog.get_logger(__name__)


class HeartbeatWatcher:
    def __init__(self, nc: NATS, commands: CommandPublisher, *, max_tracked: int = 100_000):
        self._nc = nc
        self._commands = commands
        self._max_tracked = max_tracked
        self._last: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._sub = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{subjects.HEARTBEATS_PREFIX}.>", cb=self._on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None

    async def _on_message(self, msg) -> None:
        try:
            org_id, instance_id = subjects.parse_heartbeat_subject(msg.subject)
            heartbeat = codec.decode_heartbeat(msg.data)
        except (subjects.UnsafeSubjectToken, codec.DecodeError):
            return
        await self.observe(org_id, instance_id, heartbeat.status)

    async def observe(self, org_id: str, instance_id: str, status: str) -> None:
        key = (org_id, instance_id)
        previous = self._last.get(key)
        self._last[key] = status
        self._last.move_to_end(key)
        while len(self._last) > self._max_tracked:
            self._last.popitem(last=False)
        if status == previous or status not in NUDGE_STATUSES:
            return
        command_id = nudge_command_id(instance_id, status)
        check = cmd.CheckInstance(
            id=command_id,
            org_id=org_id,
            actor=ORCHESTRATOR_ACTOR,
            correlation_id=command_id,
            causation_id=command_id,
            occurred_at=datetime.now(timezone.utc),
            instance_id=instance_id,
        )
        try:
            await self._commands.publish(check)
        except Exception as exc:
            # Forget the status so the next heartbeat tries again; the main check timer covers us meanwhile.
            self._last.pop(key, None)
            log.warning("orchestrator.nudge_publish_failed", instance_id=instance_id, error=repr(exc))
            return
        metrics.CHECKS_PUBLISHED.labels(f"heartbeat_{status}").inc()
        log.debug("orchestrator.nudge_published", instance_id=instance_id, worker_status=status)
