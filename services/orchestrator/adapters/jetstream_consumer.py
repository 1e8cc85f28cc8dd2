"""The pull loop on the durable ``orchestrator`` consumer: fetch, handle concurrently, ack/nak/term.

- Decoding is kept apart from handling: a payload that does not decode (or names unsafe ids)
  can never succeed; it is recorded as ``command.rejected`` on ``evt.system.command.<id>.*``
  and ``term``'d. It never blocks the consumer.
- Outcomes map to acknowledgements: ``Done``/``Rejected`` → ack (a rejection is an event);
  ``Retry(delay)`` → ``nak(delay)``, the durable timer; long effects send ``in_progress``.
- Our own attempt budget per command type, from ``num_delivered`` (the server's
  ``max_deliver`` is only a backstop): past it, the command is given up (a rejection, or a
  failed instance for provisioning) and ``term``'d. A check timer past its budget is not given
  up: a fresh CheckInstance takes over and the old message is acked.
- Commands for one instance are handled one at a time in this replica (a lock per instance);
  across replicas, optimistic concurrency on the aggregate decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

import nats.errors
import structlog
from nats.js import JetStreamContext

from contracts import codec
from contracts import commands as cmd
from contracts.headers import MSG_ID

from .. import failpoints, handlers, metrics
from ..domain.decide import ORCHESTRATOR_ACTOR
from ..handlers import Done, Outcome, Ports, Rejected, Retry

log = structlog.get_logger(__name__)

FleetHandler = Callable[[cmd.FleetCommand], Awaitable[Outcome]]

DEFAULT_MAX_ATTEMPTS: Mapping[str, int] = {
    "instance.provision": 30,  # ~10 min of provider retries, then provisioning_failed
    "instance.terminate": 200,  # keep trying for an hour: a forgotten server costs money
    "instance.check": 900,  # then a fresh check takes over (~1 h of 4 s watching; status ends a timer, not this)
    "instance.reinstall": 10,
    "instance.archive": 10,
    "fleet.reconcile": 5,  # the next tick does it again anyway
    "fleet.cleanup": 5,
    "fleet.catalog_sync": 5,
}


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    stream: str = "COMMANDS"
    durable: str = "orchestrator"
    concurrency: int = 16
    batch: int = 16
    fetch_timeout_s: float = 0.5
    drain_timeout_s: float = 30.0
    max_attempts: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_ATTEMPTS))
    default_max_attempts: int = 20


class CommandConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        ports: Ports,
        config: ConsumerConfig | None = None,
        locks: dict[tuple[str, str], list] | None = None,
        fleet: FleetHandler | None = None,
    ):
        self._js = js
        self._ports = ports
        self._config = config or ConsumerConfig()
        self._tasks: set[asyncio.Task] = set()
        # key -> [lock, users]; shared with the replica's other consumer (commands and timers).
        self._locks: dict[tuple[str, str], list] = {} if locks is None else locks
        self._fleet = fleet

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self._config
        sub = await self._js.pull_subscribe_bind(durable=cfg.durable, stream=cfg.stream)
        log.info("orchestrator.consumer_started", durable=cfg.durable, concurrency=cfg.concurrency)
        failures = 0
        try:
            while not stop.is_set():
                free = cfg.concurrency - len(self._tasks)
                if free <= 0:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(batch=min(cfg.batch, free), timeout=cfg.fetch_timeout_s)
                except nats.errors.TimeoutError:
                    failures = 0
                    continue
                except Exception as exc:  # disconnected, reconnecting, consumer gone: back off, keep going
                    failures += 1
                    log.warning("orchestrator.fetch_failed", error=repr(exc), failures=failures)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=min(5.0, 0.2 * 2**min(failures, 5)))
                    continue
                failures = 0
                for msg in msgs:
                    task = asyncio.create_task(self._on_message(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            await self._drain()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            log.info("orchestrator.consumer_stopped")

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info("orchestrator.draining", in_flight=len(self._tasks))
        done, pending = await asyncio.wait(set(self._tasks), timeout=self._config.drain_timeout_s)
        for task in pending:  # their messages are redelivered after ack_wait; handlers are idempotent
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    @contextlib.asynccontextmanager
    async def _instance_lock(self, key: tuple[str, str], keepalive):
        """One command per instance at a time in this replica. Waiting behind another command
        (a provider call may take a minute) keeps the message alive, so ack_wait does not expire."""
        slot = self._locks.setdefault(key, [asyncio.Lock(), 0])
        slot[1] += 1
        try:
            async with handlers.keeping_alive(keepalive, self._ports.config.keepalive_s):
                await slot[0].acquire()
            try:
                yield
            finally:
                slot[0].release()
        finally:
            slot[1] -= 1
            if slot[1] == 0:
                self._locks.pop(key, None)

    async def _on_message(self, msg) -> None:
        started = time.monotonic()
        try:
            meta = msg.metadata
            delivered, stream_seq = meta.num_delivered, meta.sequence.stream
        except Exception:
            log.error("orchestrator.not_a_jetstream_message", subject=msg.subject)
            return
        try:
            command = codec.decode_command(msg.data)
            handlers.validate(command)
        except (codec.DecodeError, handlers.MalformedCommand) as exc:
            await self._reject_malformed(msg, stream_seq, str(exc))
            return
        kind = command.__struct_config__.tag
        if delivered > 1:
            metrics.REDELIVERIES.labels(kind).inc()
        metrics.IN_FLIGHT.inc()
        try:
            with structlog.contextvars.bound_contextvars(
                command_id=command.id, correlation_id=command.correlation_id,
                instance_id=getattr(command, "instance_id", None),
                command_type=kind, delivery=delivered,
            ):
                try:
                    outcome, label = await self._handle(command, delivered, msg)
                except Exception as exc:  # giving up or continuing failed (NATS down): try again later
                    log.exception("orchestrator.handler_error", error=repr(exc))
                    outcome, label = Retry(self._ports.config.provider_backoff.delay(delivered, command.id)), "error"
                await self._settle(msg, outcome, label)
                metrics.COMMANDS.labels(kind, label).inc()
                log.debug("orchestrator.command_handled", outcome=label)
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.COMMAND_SECONDS.labels(kind).observe(time.monotonic() - started)

    async def _handle(self, command, delivered: int, msg) -> tuple[Outcome, str]:
        kind = command.__struct_config__.tag
        budget = self._config.max_attempts.get(kind, self._config.default_max_attempts)
        if isinstance(command, cmd.FLEET_COMMANDS):
            return await self._handle_fleet(command, delivered, budget, msg)
        async with self._instance_lock((command.org_id, command.instance_id), msg.in_progress):
            if delivered > budget:
                return await self._over_budget(command, delivered)
            try:
                outcome = await handlers.handle(command, self._ports, attempt=delivered, keepalive=msg.in_progress)
            except Exception as exc:  # NATS trouble or a bug: retry later, loudly; the budget bounds it
                log.exception("orchestrator.handler_error", error=repr(exc))
                if delivered >= budget:
                    return await self._over_budget(command, delivered)
                return Retry(self._ports.config.provider_backoff.delay(delivered, command.id), "error"), "error"
            if isinstance(outcome, Retry):
                if isinstance(command, cmd.CheckInstance) and handlers.is_check_nudge(command):
                    return Done(), "done"  # a nudge is one-shot; the instance's main timer keeps going
                if delivered >= budget:
                    return await self._over_budget(command, delivered)
                return outcome, "retry"
            return outcome, "rejected" if isinstance(outcome, Rejected) else "done"

    async def _handle_fleet(self, command, delivered: int, budget: int, msg) -> tuple[Outcome, str]:
        if self._fleet is None:
            log.warning("orchestrator.fleet_command_ignored", reason="no fleet handler on this consumer")
            return Done(), "done"
        async with self._instance_lock(("fleet", command.__struct_config__.tag), msg.in_progress):
            try:
                async with handlers.keeping_alive(msg.in_progress, self._ports.config.keepalive_s):
                    return await self._fleet(command), "done"
            except Exception as exc:  # the fleet view could not be read (NATS trouble): the next tick will do
                log.exception("orchestrator.fleet_error", error=repr(exc))
                if delivered >= budget:
                    return Done(), "gave_up"
                return Retry(self._ports.config.provider_backoff.delay(delivered, command.id), "error"), "error"

    async def _over_budget(self, command, delivered: int) -> tuple[Outcome, str]:
        if isinstance(command, cmd.CheckInstance):
            if handlers.is_check_nudge(command):
                return Done(), "done"
            fresh = cmd.CheckInstance(
                id=handlers.continuation_command_id(command.id),
                org_id=command.org_id,
                actor=ORCHESTRATOR_ACTOR,
                correlation_id=command.correlation_id,
                causation_id=command.id,
                occurred_at=self._ports.clock.now(),
                instance_id=command.instance_id,
            )
            await self._ports.commands.publish(fresh)
            metrics.CHECKS_PUBLISHED.labels("continue").inc()
            log.info("orchestrator.check_continued", next_command_id=fresh.id)
            return Done(), "continued"
        log.warning("orchestrator.giving_up", attempts=delivered)
        return await handlers.give_up(command, self._ports, attempts=delivered), "gave_up"

    async def _settle(self, msg, outcome: Outcome, label: str) -> None:
        try:
            if isinstance(outcome, Retry):
                await msg.nak(delay=max(0.0, outcome.delay_s))
            elif label == "gave_up" and isinstance(outcome, Rejected):
                await msg.term()
            else:
                failpoints.hit("before_ack")
                await msg.ack()
        except Exception as exc:  # the message comes back after ack_wait; handling it again is harmless
            log.warning("orchestrator.ack_failed", error=repr(exc), outcome=label)

    async def _reject_malformed(self, msg, stream_seq: int, reason: str) -> None:
        msg_id = (msg.headers or {}).get(MSG_ID)
        try:
            command_id = await handlers.record_malformed(
                self._ports.store, msg_id=msg_id, subject=msg.subject, stream_seq=stream_seq,
                message=reason, now=self._ports.clock.now(),
            )
        except Exception as exc:
            log.warning("orchestrator.record_malformed_failed", error=repr(exc))
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        log.warning("orchestrator.malformed_command", command_id=command_id, subject=msg.subject, error=reason)
        metrics.COMMANDS.labels("unknown", "malformed").inc()
        with contextlib.suppress(Exception):
            await msg.term()
