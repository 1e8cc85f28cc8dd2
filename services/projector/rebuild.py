"""``inventiv projector rebuild``: replay EVENTS into a fresh schema, compare, swap.

1. Create ``rm_next`` from the DDL file (dropping a leftover one).
2. Replay EVENTS from sequence 1 into it with the normal runner (``catch_up``: same
   projections, same batches, same transactions; there is no rebuild-only code path), up to
   the stream's last sequence, with a progress line on stderr.
3. In one transaction: ``LOCK TABLE rm.checkpoints IN EXCLUSIVE MODE`` pauses a live
   projector between two batches (readers are not blocked: plain SELECTs still run); bring
   the lagging side level (``rm_next`` up to the live checkpoint, or ``rm`` up to the rebuilt
   one if the live projector is behind or not running); compare every table (row count and an
   order-independent hash of the rows; on a mismatch, rows only on each side and samples);
   then ``ALTER SCHEMA rm RENAME TO rm_old; ALTER SCHEMA rm_next RENAME TO rm;
   DROP SCHEMA rm_old CASCADE`` unless ``--no-swap`` (then ``rm_next`` stays for inspection).

A live projector blocked on the checkpoint lock resumes on the new tables: Postgres resolves
the names again once the lock is granted, so its next batch reads the new checkpoint (moved
with the tables) and skips what the rebuild already applied. Any other error it meets is
retried from the checkpoint (runner). Readers using ``rm.<table>`` keep working, see
``services.projector.readers``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import asyncpg
import structlog

from services.runtime import natsio, pg
from services.runtime.logging import configure_logging
from services.runtime.settings import runtime_settings_from_env

from .read_model import ReadModelProjection
from .rowops import ident
from .runner import Projection, catch_up, read_checkpoint
from .schema import LIVE, OLD, SHADOW, LockBusy, create_schema, read_model_lock, schema_exists

log = structlog.get_logger(__name__)

NOT_COMPARED = frozenset({"checkpoints", "meta"})  # bookkeeping, not projections of events


@dataclass
class TableDiff:
    table: str
    live_rows: int | None
    rebuilt_rows: int | None
    only_live: int = 0
    only_rebuilt: int = 0
    note: str = ""
    samples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.table}: live {self.live_rows} rows, rebuilt {self.rebuilt_rows}"]
        if self.only_live or self.only_rebuilt:
            parts.append(f"{self.only_live} only in live, {self.only_rebuilt} only in rebuilt")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


@dataclass
class RebuildReport:
    head_seq: int  # the stream's last sequence when the replay started
    checkpoint: int  # where both schemas stood when compared (and swapped)
    seconds: float
    tables_compared: int
    differences: list[TableDiff]
    swapped: bool
    live_existed: bool

    def summary(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "seconds": round(self.seconds, 2),
            "tables_compared": self.tables_compared,
            "tables_differing": [d.table for d in self.differences],
            "swapped": self.swapped,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RebuildError(RuntimeError):
    pass


# --- progress -----------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """``rebuild [#####......] 41.2%  20600/50000 events  11,873 ev/s  ETA 0:00:02`` on stderr.

    On a terminal the line redraws in place (5 per second); otherwise (logs, pipes) it prints a
    new line every ``plain_interval_s``, plus the final one.
    """

    def __init__(self, stream: TextIO | None = None, *, label: str = "rebuild", plain_interval_s: float = 2.0):
        self.stream = stream or sys.stderr
        self.label = label
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.interval = 0.2 if self.tty else plain_interval_s
        self._t0: float | None = None
        self._seq0 = 0
        self._last_print = 0.0
        self._last_line = ""

    def line(self, done: int, total: int, now: float) -> str:
        elapsed = max(now - (self._t0 or now), 1e-9)
        rate = (done - self._seq0) / elapsed if done > self._seq0 else 0.0
        pct = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        eta = _duration((total - done) / rate) if rate > 0 and total > done else ("0:00:00" if done >= total else "?")
        filled = int(pct / 100 * 24)
        bar = "#" * filled + "." * (24 - filled)
        return f"{self.label} [{bar}] {pct:5.1f}%  {done}/{total} events  {rate:,.0f} ev/s  ETA {eta}"

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._seq0 = now, done
        final = done >= total
        if not final and now - self._last_print < self.interval and self._last_print:
            return
        line = self.line(done, total, now)
        if line == self._last_line:
            return
        pad = " " * max(0, len(self._last_line) - len(line))
        self._last_print, self._last_line = now, line
        if self.tty:
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class LogProgress:
    """Progress as structured log lines (for the automatic rebuild inside the service)."""

    def __init__(self, interval_s: float = 5.0):
        self.interval = interval_s
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        log.info("read_model.rebuild_progress", applied=done, target=total)


# --- comparison ---------------------------------------------------------------------------------


async def _tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    return sorted(r["tablename"] for r in rows if r["tablename"] not in NOT_COMPARED)


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        f"{schema}.{table}",
    )
    return [r["attname"] for r in rows]


async def _fingerprint(conn: asyncpg.Connection, schema: str, table: str, cols: list[str]) -> tuple[int, int]:
    row = ", ".join(ident(c) for c in cols)
    # Order-independent: the sum of a 64-bit hash of each row's text form.
    row_hash = f"('x' || substr(md5(ROW({row})::text), 1, 16))::bit(64)::bigint::numeric"
    value = await conn.fetchrow(
        f"SELECT count(*) AS n, COALESCE(sum({row_hash}), 0) AS h FROM {ident(schema)}.{ident(table)}"
    )
    return value["n"], int(value["h"])


async def compare_schemas(
    conn: asyncpg.Connection, live: str, rebuilt: str, *, samples: int = 3
) -> tuple[int, list[TableDiff]]:
    """Compare every projected table of two schemas; returns (tables compared, differences)."""
    diffs: list[TableDiff] = []
    names = sorted(set(await _tables(conn, live)) | set(await _tables(conn, rebuilt)))
    for table in names:
        live_cols = await _columns(conn, live, table)
        new_cols = await _columns(conn, rebuilt, table)
        if not live_cols or not new_cols:
            side = "live" if not live_cols else "rebuilt"
            n = await conn.fetchval(f"SELECT count(*) FROM {ident(rebuilt if side == 'live' else live)}.{ident(table)}")
            diffs.append(TableDiff(table, None if side == "live" else n, n if side == "live" else None,
                                   note=f"table missing in {side}"))  # fmt: skip
            continue
        common = [c for c in new_cols if c in live_cols]
        note = ""
        if common != new_cols or len(common) != len(live_cols):
            added = [c for c in new_cols if c not in live_cols]
            dropped = [c for c in live_cols if c not in new_cols]
            note = f"columns differ (compared the {len(common)} in common; new {added}, gone {dropped})"
        (n_live, h_live), (n_new, h_new) = (
            await _fingerprint(conn, live, table, common),
            await _fingerprint(conn, rebuilt, table, common),
        )
        if (n_live, h_live) == (n_new, h_new):
            if note:
                diffs.append(TableDiff(table, n_live, n_new, note=note))
            continue
        cols = ", ".join(ident(c) for c in common)
        a, b = f"{ident(live)}.{ident(table)}", f"{ident(rebuilt)}.{ident(table)}"
        live_only = f"(SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}) d"
        new_only = f"(SELECT {cols} FROM {b} EXCEPT ALL SELECT {cols} FROM {a}) d"
        only_live = await conn.fetchval(f"SELECT count(*) FROM {live_only}")
        only_new = await conn.fetchval(f"SELECT count(*) FROM {new_only}")
        example_rows = await conn.fetch(
            f"SELECT 'live: ' || left(d::text, 300) AS r FROM {live_only} LIMIT {samples:d}"
        )
        example_rows += await conn.fetch(
            f"SELECT 'rebuilt: ' || left(d::text, 300) AS r FROM {new_only} LIMIT {samples:d}"
        )
        diffs.append(TableDiff(table, n_live, n_new, only_live, only_new, note, [r["r"] for r in example_rows]))
    return len(names), diffs


# --- rebuild ------------------------------------------------------------------------------------


async def rebuild(
    nc,
    pool: asyncpg.Pool,
    projection: Projection | None = None,
    *,
    swap: bool = True,
    progress=None,
    wait_for_lock: bool = False,
    lock_timeout_s: float = 10.0,
) -> RebuildReport:
    """Rebuild ``rm`` from the event log (see the module docstring). Raises ``LockBusy`` if
    another rebuild holds the lock and ``wait_for_lock`` is false."""
    async with read_model_lock(pool, wait=wait_for_lock) as conn:
        return await rebuild_locked(conn, nc, pool, projection or ReadModelProjection(), swap=swap,
                                    progress=progress, lock_timeout_s=lock_timeout_s)  # fmt: skip


async def rebuild_locked(
    conn: asyncpg.Connection,
    nc,
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    swap: bool = True,
    progress=None,
    lock_timeout_s: float = 10.0,
    attempts: int = 3,
) -> RebuildReport:
    """``rebuild`` for a caller that already holds the read-model lock on ``conn``."""
    started = time.monotonic()
    await create_schema(conn, SHADOW, replace=True)
    head = (await nc.jetstream().stream_info(projection.stream)).state.last_seq
    log.info("read_model.rebuild_started", target=head)
    await catch_up(nc, pool, projection, schema=SHADOW, until_seq=head, progress=progress, batch_size=2000)
    for attempt in range(1, attempts + 1):
        try:
            checkpoint, compared, diffs, live_existed = await _level_compare_swap(
                conn, nc, projection, swap=swap, lock_timeout_s=lock_timeout_s
            )
            break
        except (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.DeadlockDetectedError) as exc:
            if attempt == attempts:
                raise RebuildError(
                    f"could not lock the live tables for the swap ({exc}); the live tables are unchanged"
                ) from exc
            log.warning("read_model.swap_retry", attempt=attempt, error=str(exc))
            await asyncio.sleep(0.5 * attempt)
    report = RebuildReport(head, checkpoint, time.monotonic() - started, compared, diffs, swap, live_existed)
    for diff in diffs:
        log.warning("read_model.difference", table=diff.table, detail=diff.describe(), samples=diff.samples)
    return report


async def _level_compare_swap(
    conn: asyncpg.Connection, nc, projection: Projection, *, swap: bool, lock_timeout_s: float
) -> tuple[int, int, list[TableDiff], bool]:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        live_exists = await schema_exists(conn, LIVE)
        shadow_seq = await read_checkpoint(conn, SHADOW, projection.name)
        compared, diffs = 0, []
        if live_exists:
            # Pauses a live projector (its next batch waits on the checkpoint row's table); readers go on.
            await conn.execute(f"LOCK TABLE {LIVE}.checkpoints IN EXCLUSIVE MODE")
            live_seq = await read_checkpoint(conn, LIVE, projection.name)
            if shadow_seq < live_seq:
                shadow_seq = await catch_up(nc, conn, projection, schema=SHADOW, until_seq=live_seq)
            elif live_seq < shadow_seq:
                live_seq = await catch_up(nc, conn, projection, schema=LIVE, until_seq=shadow_seq)
            if live_seq != shadow_seq:
                raise RebuildError(
                    f"could not bring both schemas to one sequence (live {live_seq}, rebuilt {shadow_seq})"
                )
            compared, diffs = await compare_schemas(conn, LIVE, SHADOW)
        if swap:
            if live_exists:
                await conn.execute(
                    f"ALTER SCHEMA {LIVE} RENAME TO {OLD}; ALTER SCHEMA {SHADOW} RENAME TO {LIVE}; "
                    f"DROP SCHEMA {OLD} CASCADE"
                )
            else:
                await conn.execute(f"ALTER SCHEMA {SHADOW} RENAME TO {LIVE}")
        return shadow_seq, compared, diffs, live_exists


# --- command line -------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _cli_main(swap: bool, out: TextIO, err: TextIO) -> RebuildReport:
    settings = runtime_settings_from_env()
    try:
        nc = await asyncio.wait_for(natsio.connect(settings.nats_url, name="projector-rebuild"), 15)
    except Exception as exc:
        raise RebuildError(f"cannot reach NATS at {settings.nats_url}: {_one_line(exc)}") from exc
    try:
        try:
            pool = await asyncio.wait_for(pg.create_pool(settings.database_url, min_size=1, max_size=4), 15)
        except Exception as exc:
            raise RebuildError(f"cannot reach Postgres: {_one_line(exc)}") from exc
        try:
            return await rebuild(nc, pool, swap=swap, progress=ProgressBar(err))
        finally:
            await pool.close()
    finally:
        await nc.close()


def print_report(report: RebuildReport, out: TextIO) -> None:
    out.write(
        f"replayed {report.checkpoint} events in {report.seconds:.1f}s; compared {report.tables_compared} tables "
        f"with the live read model: "
    )
    if not report.live_existed:
        out.write("no live read model to compare with\n")
    elif not report.differences:
        out.write("identical\n")
    else:
        out.write(f"{len(report.differences)} differ\n")
        for diff in report.differences:
            out.write(f"  {diff.describe()}\n")
            for sample in diff.samples:
                out.write(f"    {sample}\n")
    if report.swapped:
        out.write("swapped: rm now holds the rebuilt tables\n")
    else:
        out.write("not swapped (--no-swap): the rebuilt tables are left in rm_next\n")
    out.flush()


def run_rebuild_cli(args) -> int:
    """Entry point of ``inventiv projector rebuild [--no-swap]``; returns the exit code."""
    swap = not getattr(args, "no_swap", False)
    settings = runtime_settings_from_env()  # exits with a clear message when NATS_URL/DATABASE_URL are missing
    # Errors only: the progress line and the final report are the output; failures end in one line.
    configure_logging("projector", fmt=settings.log_format, level="error")
    try:
        report = asyncio.run(_cli_main(swap, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("inventiv projector rebuild: interrupted; the live tables are unchanged", file=sys.stderr)
        return 130
    except LockBusy as exc:
        print(f"inventiv projector rebuild: {exc}", file=sys.stderr)
        return 1
    except RebuildError as exc:
        print(f"inventiv projector rebuild: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"inventiv projector rebuild: failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    print_report(report, sys.stdout)
    return 0
