"""A generic projection runner: JetStream stream -> Postgres tables, exactly once per checkpoint.

The pattern (reliability.md §3.5, style.md §3.5):

- The checkpoint (last stream sequence applied) is a row of ``{schema}.checkpoints``, next to the
  rows it describes, so both swap together on rebuild.
- Messages come from an **ordered consumer** (ephemeral, AckNone, in memory on the server)
  started at checkpoint + 1. Nothing is acknowledged and nothing server-side needs cleaning
  up; after any error the consumer is thrown away and recreated from the checkpoint.
- Each batch is applied in **one transaction** that first locks the checkpoint row
  (``SELECT … FOR UPDATE``: rival projector processes serialise there), skips every sequence
  ≤ checkpoint (a redelivery or a rival's work), applies the rest and advances the checkpoint.
- Batches are whatever has arrived: the first message is awaited, the rest are drained
  without waiting. A live event is applied as soon as it arrives; during a replay the
  consumer keeps pushing while Postgres commits, so batches fill up by themselves.
- A batch Postgres refuses for its data (SQLSTATE class 22 or 23) is retried one event at a
  time; an event refused on its own is handed to ``projection.poisoned`` (if defined) and
  skipped, so one bad event never stops the projection. Any other error (connection lost,
  server restarted, relation missing during a swap) is retried from the checkpoint with
  backoff.

``run_projection`` runs forever (until ``stop``); ``catch_up`` replays up to a sequence and
returns; ``wait_for_seq`` waits (from any process) until a checkpoint reaches a sequence.

Any projection can use it (FinOps does): its schema needs a ``checkpoints`` table of the shape
in ``CHECKPOINTS_DDL`` (``ensure_checkpoints_table`` creates it), and ``apply`` must be
idempotent per row (guard writes by sequence) for the rare full redelivery.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol, Union, runtime_checkable

import asyncpg
import structlog

from services.runtime.retry import Backoff, sleep_or_stop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from . import metrics
from .rowops import ident

log = structlog.get_logger(__name__)

PoolOrConn = Union[asyncpg.Pool, asyncpg.Connection]
OnApplied = Callable[[int], Union[None, Awaitable[None]]]
Progress = Callable[[int, int], Any]

# Postgres refused the data itself: retrying the same batch cannot help.
DATA_ERRORS = (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError)

IDLE_CHECK_S = 2.0  # with nothing arriving, check the consumer is alive this often
HEARTBEAT_S = 2.0  # server idle heartbeats on the ordered consumer (missing two = recreate)


class StreamRecord(NamedTuple):
    """One stored message as a projection sees it."""

    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]
    timestamp: datetime | None


@runtime_checkable
class Projection(Protocol):
    name: str  # checkpoint name
    stream: str  # e.g. "EVENTS"
    filter_subject: str  # e.g. "evt.>"

    async def apply(self, conn: asyncpg.Connection, schema: str, batch: list[StreamRecord]) -> None:
        """Write the rows for ``batch`` (all newer than the checkpoint, in order) on ``conn``.

        Called inside the transaction that advances the checkpoint. Optional extra method:
        ``async def poisoned(conn, schema, record, exc)``, called (in a savepoint) for an event
        Postgres refused on its own, before it is skipped.
        """
        ...


# --- checkpoints -------------------------------------------------------------------------------


CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    name text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""


async def ensure_checkpoints_table(conn: asyncpg.Connection, schema: str) -> None:
    """The table every projection's schema needs (the read model's DDL has it already)."""
    await conn.execute(CHECKPOINTS_DDL.replace("{schema}", ident(schema)))


async def read_checkpoint(pool_or_conn: PoolOrConn, schema: str, name: str) -> int:
    """The last applied sequence (0 if none); creates the checkpoint row if missing."""
    s = ident(schema)
    async with _connection(pool_or_conn) as conn:
        await conn.execute(f"INSERT INTO {s}.checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
        return await conn.fetchval(f"SELECT last_seq FROM {s}.checkpoints WHERE name = $1", name)


async def wait_for_seq(
    pool_or_conn: PoolOrConn,
    seq: int,
    *,
    schema: str = "rm",
    name: str = "read_model",
    timeout_s: float = 10.0,
) -> int:
    """Wait until checkpoint ``name`` in ``schema`` is at least ``seq``; returns the checkpoint.

    Works from any process (polls one primary-key row, 2 ms at first, backing off to 50 ms).
    Raises ``TimeoutError``. ``seq`` must be the sequence of a message the projection consumes
    (for the read model, any EVENTS sequence).
    """
    s = ident(schema)
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        try:
            async with _connection(pool_or_conn) as conn:
                current = await conn.fetchval(f"SELECT last_seq FROM {s}.checkpoints WHERE name = $1", name)
        except (asyncpg.exceptions.UndefinedTableError, asyncpg.exceptions.InvalidSchemaNameError):
            current = None  # the schema is being created: not there yet
        if current is not None and current >= seq:
            return current
        if time.monotonic() >= deadline:
            raise TimeoutError(f"checkpoint {schema}.{name} at {current}, waited {timeout_s}s for {seq}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class _connection:
    """``async with _connection(pool_or_conn) as conn``: acquire from a pool, or use the connection."""

    def __init__(self, pool_or_conn: PoolOrConn):
        self._source = pool_or_conn
        self._acquired: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        if isinstance(self._source, asyncpg.Pool):
            self._acquired = self._source.acquire()
            return await self._acquired.__aenter__()
        return self._source  # type: ignore[return-value]

    async def __aexit__(self, *exc) -> None:
        if self._acquired is not None:
            await self._acquired.__aexit__(*exc)


async def _lock_checkpoint(conn: asyncpg.Connection, schema: str, name: str) -> int:
    sql = f"SELECT last_seq FROM {schema}.checkpoints WHERE name = $1 FOR UPDATE"
    value = await conn.fetchval(sql, name)
    if value is None:
        await conn.execute(f"INSERT INTO {schema}.checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
        value = await conn.fetchval(sql, name)
    return value


async def _set_checkpoint(conn: asyncpg.Connection, schema: str, name: str, seq: int) -> None:
    await conn.execute(f"UPDATE {schema}.checkpoints SET last_seq = $2, updated_at = now() WHERE name = $1", name, seq)


async def apply_batch(
    conn: asyncpg.Connection, projection: Projection, schema: str, batch: list[StreamRecord]
) -> tuple[int, int]:
    """Apply ``batch`` and advance the checkpoint atomically; returns (checkpoint, events applied).

    Safe to call with messages already applied (they are skipped) and from rival processes.
    """
    s = ident(schema)
    try:
        async with conn.transaction():
            checkpoint = await _lock_checkpoint(conn, s, projection.name)
            fresh = [r for r in batch if r.seq > checkpoint]
            if not fresh:
                return checkpoint, 0
            await projection.apply(conn, s, fresh)
            await _set_checkpoint(conn, s, projection.name, fresh[-1].seq)
            return fresh[-1].seq, len(fresh)
    except DATA_ERRORS as exc:
        log.warning("projection.batch_refused", projection=projection.name, error=str(exc), size=len(batch))
    return await _apply_one_by_one(conn, projection, s, batch)


async def _apply_one_by_one(
    conn: asyncpg.Connection, projection: Projection, schema: str, batch: list[StreamRecord]
) -> tuple[int, int]:
    checkpoint, applied = 0, 0
    for record in batch:
        async with conn.transaction():
            checkpoint = await _lock_checkpoint(conn, schema, projection.name)
            if record.seq <= checkpoint:
                continue
            try:
                async with conn.transaction():  # savepoint
                    await projection.apply(conn, schema, [record])
            except DATA_ERRORS as exc:
                metrics.POISONED.labels(projection.name).inc()
                log.error("projection.event_refused", projection=projection.name, seq=record.seq,
                          subject=record.subject, error=str(exc))  # fmt: skip
                hook = getattr(projection, "poisoned", None)
                if hook is not None:
                    try:
                        async with conn.transaction():
                            await hook(conn, schema, record, exc)
                    except DATA_ERRORS as hook_exc:
                        log.error("projection.poison_record_failed", seq=record.seq, error=str(hook_exc))
            await _set_checkpoint(conn, schema, projection.name, record.seq)
            checkpoint = record.seq
            applied += 1
    return checkpoint, applied


# --- the consumer ------------------------------------------------------------------------------


class OrderedReader:
    """An ordered push consumer (ephemeral, AckNone, flow controlled) feeding a bounded queue.

    nats-py recreates the server-side consumer on a sequence gap or two missed heartbeats.
    The bounded queue gives back-pressure: while it is full the subscription callback waits,
    flow-control replies stop and the server stops pushing.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        filter_subject: str,
        *,
        start_seq: int | None = None,
        last_per_subject: bool = False,
        max_buffer: int = 2000,
    ):
        self._js = js
        self._stream = stream
        self._filter = filter_subject
        self._start_seq = start_seq
        self._last_per_subject = last_per_subject
        self._queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=max_buffer)
        self._sub: Any = None
        self.last_pending = 0  # messages still on the server after the last one taken (filtered)

    async def __aenter__(self) -> "OrderedReader":
        if self._last_per_subject:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
        else:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(1, self._start_seq or 1)
            )
        self._sub = await self._js.subscribe(
            self._filter,
            stream=self._stream,
            cb=self._on_msg,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT_S,
            config=config,
        )
        return self

    async def __aexit__(self, *exc) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        consumer = getattr(sub, "_consumer", None)
        try:
            await sub.unsubscribe()
        except Exception:
            pass
        # The server drops an ephemeral consumer without interest by itself; deleting it now is tidier.
        if consumer:
            try:
                await asyncio.wait_for(self._js.delete_consumer(self._stream, consumer), 1.0)
            except Exception:
                pass

    async def _on_msg(self, msg: Msg) -> None:
        await self._queue.put(msg)

    @property
    def buffered(self) -> int:
        return self._queue.qsize()

    async def next_batch(self, max_n: int, timeout: float, stop: asyncio.Event | None = None) -> list[StreamRecord]:
        """Wait up to ``timeout`` for one message (or ``stop``), then take what else is buffered."""
        try:
            first = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            first = await _get_or_stop(self._queue, timeout, stop)
            if first is None:
                return []
        msgs = [first]
        while len(msgs) < max_n:
            try:
                msgs.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        records = []
        for msg in msgs:
            md = msg.metadata
            records.append(StreamRecord(md.sequence.stream, msg.subject, msg.data, msg.headers or {}, md.timestamp))
        self.last_pending = msgs[-1].metadata.num_pending
        return records

    async def pending_on_server(self) -> int:
        """Messages matching the filter not yet delivered; raises if the consumer is gone."""
        info = await self._sub.consumer_info()
        return info.num_pending or 0


async def _get_or_stop(queue: asyncio.Queue, timeout: float, stop: asyncio.Event | None):
    getter = asyncio.ensure_future(queue.get())
    waiters = {getter}
    stopper = None
    if stop is not None:
        stopper = asyncio.ensure_future(stop.wait())
        waiters.add(stopper)
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if getter in done:
        return getter.result()
    getter.cancel()
    try:
        await getter
    except asyncio.CancelledError:
        pass
    else:  # it completed while being cancelled: keep the message
        return getter.result()
    return None


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


async def _apply_and_measure(
    pool_or_conn: PoolOrConn, projection: Projection, schema: str, batch: list[StreamRecord]
) -> int:
    started = time.perf_counter()
    async with _connection(pool_or_conn) as conn:
        checkpoint, applied = await apply_batch(conn, projection, schema, batch)
    labels = (projection.name, schema)
    metrics.APPLY_SECONDS.labels(*labels).observe(time.perf_counter() - started)
    metrics.BATCH_SIZE.labels(*labels).observe(len(batch))
    metrics.EVENTS_APPLIED.labels(*labels).inc(applied)
    metrics.CHECKPOINT.labels(*labels).set(checkpoint)
    return checkpoint


_CONNECTION_ERRORS = (
    OSError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: terminated by an admin, server shutting down
)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, _CONNECTION_ERRORS):
        return "connection"
    if isinstance(exc, asyncpg.PostgresError):
        return "postgres"
    module = type(exc).__module__ or ""
    if module.startswith("nats"):
        return "nats"
    return "other"


async def run_projection(
    nc: NATS,
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    schema: str,
    stop: asyncio.Event,
    batch_size: int = 500,
    on_applied: OnApplied | None = None,
) -> None:
    """Keep ``{schema}`` up to date with ``projection.stream`` until ``stop`` is set.

    Never returns on an error: it logs, counts, waits (exponential backoff, capped at 5 s) and
    resumes from the checkpoint. ``on_applied(checkpoint)`` is called after each committed batch.
    """
    js = nc.jetstream()
    labels = (projection.name, schema)
    backoff = Backoff()
    while not stop.is_set():
        try:
            checkpoint = await read_checkpoint(pool, schema, projection.name)
            async with OrderedReader(
                js, projection.stream, projection.filter_subject, start_seq=checkpoint + 1, max_buffer=batch_size * 4
            ) as reader:
                log.info("projection.consuming", projection=projection.name, schema=schema, from_seq=checkpoint + 1)
                while not stop.is_set():
                    batch = await reader.next_batch(batch_size, IDLE_CHECK_S, stop)
                    if not batch:
                        if stop.is_set():
                            break
                        # Idle: make sure the consumer still exists (a NATS restart loses it).
                        metrics.LAG.labels(*labels).set(await reader.pending_on_server() + reader.buffered)
                        continue
                    checkpoint = await _apply_and_measure(pool, projection, schema, batch)
                    metrics.LAG.labels(*labels).set(reader.last_pending + reader.buffered)
                    backoff.reset()
                    if on_applied is not None:
                        await _maybe_await(on_applied(checkpoint))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = _error_kind(exc)
            metrics.ERRORS.labels(projection.name, schema, kind).inc()
            delay = backoff.next()
            log.warning("projection.retrying", projection=projection.name, schema=schema, kind=kind,
                        error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))  # fmt: skip
            if isinstance(exc, asyncpg.PostgresError) or kind == "connection":
                # Idle connections may be dead too (server restarted) or hold statements prepared
                # against dropped tables; new ones are opened on demand.
                try:
                    await pool.expire_connections()
                except Exception:
                    pass
            await sleep_or_stop(stop, delay)


async def catch_up(
    nc: NATS,
    pool_or_conn: PoolOrConn,
    projection: Projection,
    *,
    schema: str,
    until_seq: int | None = None,
    progress: Progress | None = None,
    batch_size: int = 1000,
    idle_timeout_s: float = 30.0,
) -> int:
    """Apply everything from the checkpoint up to ``until_seq`` (default: the stream's last
    sequence now) and return the checkpoint.

    Uses the same batches and transactions as ``run_projection``. With a connection that is in
    a transaction, each batch is a savepoint of it. ``progress(checkpoint, target)`` is called
    after each batch. Raises on errors (the caller decides whether to retry) and
    ``TimeoutError`` when nothing arrives for ``idle_timeout_s`` while messages are pending.
    """
    js = nc.jetstream()
    checkpoint = await read_checkpoint(pool_or_conn, schema, projection.name)
    if until_seq is None:
        until_seq = (await js.stream_info(projection.stream)).state.last_seq
    if progress is not None:
        await _maybe_await(progress(checkpoint, until_seq))
    if checkpoint >= until_seq:
        return checkpoint
    async with OrderedReader(
        js, projection.stream, projection.filter_subject, start_seq=checkpoint + 1, max_buffer=batch_size * 4
    ) as reader:
        last_progress = time.monotonic()
        while checkpoint < until_seq:
            batch = await reader.next_batch(batch_size, 0.5)
            if not batch:
                if reader.buffered == 0 and await reader.pending_on_server() == 0:
                    break  # nothing more matches the filter (the rest of the stream is not ours)
                if time.monotonic() - last_progress > idle_timeout_s:
                    raise TimeoutError(f"catch-up of {schema} stalled at {checkpoint}")
                continue
            last_progress = time.monotonic()
            wanted = [r for r in batch if r.seq <= until_seq]
            if wanted:
                checkpoint = await _apply_and_measure(pool_or_conn, projection, schema, wanted)
            if progress is not None:
                await _maybe_await(progress(checkpoint, until_seq))
            if len(wanted) < len(batch) or (reader.last_pending == 0 and reader.buffered == 0):
                break
    return checkpoint


__all__ = [
    "DATA_ERRORS",
    "OrderedReader",
    "Projection",
    "StreamRecord",
    "CHECKPOINTS_DDL",
    "apply_batch",
    "catch_up",
    "ensure_checkpoints_table",
    "read_checkpoint",
    "run_projection",
    "wait_for_seq",
]
