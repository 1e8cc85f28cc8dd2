"""The agent's NATS connection: connects in the background and reconnects forever.

NATS being down must never stop the engine or the HTTP probes, so nothing waits on this
connection. Heartbeats published while disconnected are dropped (and counted), not buffered:
a stale heartbeat replayed after a reconnect would only lie about the present.

Identity: a .creds file or an nkey seed file (reliability.md §4.7). nats-py reconnects by
itself after a server restart. Two cases it does not cover are handled here by starting a fresh
client after a pause: the client closed for good (some protocol errors close it), and the
server refusing our credentials while reconnecting. nats-py derives the nkey's public key once
per client, so a seed rotated in place (new file, server reloaded with the new public key) is
only picked up by a fresh client; a worker whose credentials are rotated comes back without a
restart of the agent, let alone of the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import nats
import nats.errors
import structlog
from nats.aio.client import Client

from .metrics import AgentMetrics

log = structlog.get_logger("agent.nats")

ERROR_LOG_EVERY_S = 60.0
RETRY_S = 2.0


class NotConnected(Exception):
    pass


class NatsLink:
    def __init__(self, servers: str, instance_id: str, metrics: AgentMetrics, *, creds_file: str | None = None,
                 nkey_seed_file: str | None = None, on_connected: Callable[[], None] = lambda: None,
                 retry_s: float = RETRY_S) -> None:
        self.servers = [s.strip() for s in servers.split(",") if s.strip()]
        self.creds_file = creds_file
        self.nkey_seed_file = nkey_seed_file
        self.instance_id = instance_id
        self.metrics = metrics
        self.retry_s = retry_s
        self._on_connected = on_connected
        self.nc: Client = nats.NATS()
        self._closed_event = asyncio.Event()
        self._closing = False
        # This client object connected at least once (so a refusal now means changed credentials).
        self._client_connected = False
        self._replacing = False
        self._replace_task: asyncio.Task | None = None
        self._last_error_log = 0.0
        self._errors_since_log = 0

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def run(self) -> None:
        """Runs until ``close()``. nats-py retries refused connections and reconnects after drops
        itself (every ``reconnect_time_wait``); when it raises or closes the connection for good
        instead, this logs it and starts over with a fresh client."""
        while not self._closing:
            self._closed_event.clear()
            try:
                await self._connect()
            except Exception as exc:
                log.error("nats_connect_failed", error=repr(exc), retry_in_s=self.retry_s)
            else:
                self._client_connected = True
                await self._closed_event.wait()
                if self._closing:
                    return
                log.error("nats_connection_closed", error=repr(self.nc.last_error), retry_in_s=self.retry_s)
            await asyncio.sleep(self.retry_s)
            self.nc = nats.NATS()
            self._client_connected = self._replacing = False

    async def _connect(self) -> None:
        await self.nc.connect(
            servers=self.servers,
            name=f"inventiv-agent.{self.instance_id}",
            user_credentials=self.creds_file,
            nkeys_seed=self.nkey_seed_file,
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
        self._closing = True
        self._closed_event.set()
        if self.nc.is_connected:
            try:
                await self.nc.flush(timeout=2)
            except Exception as exc:  # best effort on the way out
                log.warning("nats_flush_failed", error=repr(exc))
        if not self.nc.is_closed:
            await self.nc.close()

    async def _error(self, exc: Exception) -> None:
        refused = isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()
        if refused and self._client_connected and not self.nc.is_closed and not self._replacing:
            # Our credentials were revoked or rotated: re-read them with a fresh client (see above).
            self._replacing = True
            log.warning("nats_credentials_refused", action="restarting the client to re-read the credentials",
                        retry_in_s=self.retry_s)
            # Not awaited here: nats-py calls this from inside its reconnect loop, which close() cancels.
            self._replace_task = asyncio.get_running_loop().create_task(self.nc.close())
            return
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
        self._closed_event.set()
