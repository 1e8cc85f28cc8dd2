"""The agent's NATS connection: connects in the background and reconnects forever.

NATS being down must never stop the engine or the HTTP probes, so nothing waits on this
connection. Heartbeats published while disconnected are dropped (and counted), not buffered:
a stale heartbeat replayed after a reconnect would only lie about the present.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import nats
import structlog
from nats.aio.client import Client

from .metrics import AgentMetrics

log = structlog.get_logger("agent.nats")

ERROR_LOG_EVERY_S = 60.0
RETRY_S = 5.0


class NotConnected(Exception):
    pass


class NatsLink:
    def __init__(self, servers: str, creds: str | None, instance_id: str, metrics: AgentMetrics,
                 on_connected: Callable[[], None] = lambda: None) -> None:
        self.servers = [s.strip() for s in servers.split(",") if s.strip()]
        self.creds = creds
        self.instance_id = instance_id
        self.metrics = metrics
        self._on_connected = on_connected
        self.nc: Client = nats.NATS()
        self._last_error_log = 0.0
        self._errors_since_log = 0

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def run(self) -> None:
        """Returns once connected. nats-py retries refused/failed connections itself (every
        ``reconnect_time_wait``); anything it raises instead is logged and retried with a fresh client."""
        while True:
            try:
                await self._connect()
                return
            except Exception as exc:
                log.error("nats_connect_failed", error=repr(exc), retry_in_s=RETRY_S)
                await asyncio.sleep(RETRY_S)
                self.nc = nats.NATS()

    async def _connect(self) -> None:
        await self.nc.connect(
            servers=self.servers,
            name=f"inventiv-agent.{self.instance_id}",
            user_credentials=self.creds,
            # Worker permissions allow only this inbox prefix (reliability.md §4.7): _INBOX.> would
            # let a worker read everyone's replies.
            inbox_prefix=f"_INBOX_{self.instance_id}",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=2,
            connect_timeout=2,
            # Notice a dead server within about a minute rather than the default four.
            ping_interval=20,
            max_outstanding_pings=3,
            error_cb=self._error,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            closed_cb=self._closed,
        )
        log.info("nats_connected", url=str(self.nc.connected_url.netloc if self.nc.connected_url else None))
        self.metrics.nats_connected.set(1)
        self._on_connected()

    async def publish(self, subject: str, payload: bytes) -> None:
        if not self.nc.is_connected:
            raise NotConnected("not connected to NATS")
        await self.nc.publish(subject, payload)

    async def close(self) -> None:
        if self.nc.is_connected:
            try:
                await self.nc.flush(timeout=2)
            except Exception as exc:  # best effort on the way out
                log.warning("nats_flush_failed", error=repr(exc))
        if not self.nc.is_closed:
            await self.nc.close()

    async def _error(self, exc: Exception) -> None:
        # Every failed reconnect attempt lands here; one line a minute is enough to see NATS is down.
        self._errors_since_log += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:
            log.warning("nats_error", error=repr(exc), errors_since_last_log=self._errors_since_log)
            self._last_error_log = now
            self._errors_since_log = 0

    async def _disconnected(self) -> None:
        self.metrics.nats_connected.set(0)
        if not self.nc.is_closed:
            log.warning("nats_disconnected")

    async def _reconnected(self) -> None:
        self.metrics.nats_connected.set(1)
        log.info("nats_reconnected", url=str(self.nc.connected_url.netloc if self.nc.connected_url else None))
        self._on_connected()

    async def _closed(self) -> None:
        self.metrics.nats_connected.set(0)
