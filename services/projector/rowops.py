"""Row operations: what a projection asks the database to do, as values.

A projection never writes SQL; it returns ``RowOp`` values and ``apply_ops`` turns a whole
batch of them into a few set-based statements (one ``INSERT … SELECT FROM
jsonb_populate_recordset(…)`` per table and kind). Every operation is idempotent, so
applying an event twice, or an old event after a newer one, changes nothing:

- ``Upsert``: insert the row, or overwrite it only if the stored ``last_event_seq`` is older
  than this row's.
- ``Update``: change some columns of an existing row, under the same ``last_event_seq`` guard.
- ``InsertIfAbsent``: insert a row keyed by something unique to one event (its stream
  sequence), or do nothing if it exists.

``MemoryTables`` applies the same operations to dicts with the same semantics; the pure tests
use it, and the integration tests check that Postgres agrees.

Rows travel to Postgres as one JSON document per statement (msgspec encodes datetimes,
Decimals and UUIDs), and ``jsonb_populate_recordset(NULL::<table>, …)`` converts each field to
the column's own type: no per-table type lists to keep in sync with the DDL, and array and
jsonb columns work (an ``unnest`` of a ``text[][]`` would flatten them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import asyncpg
import msgspec

SEQ_COLUMN = "last_event_seq"

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_json = msgspec.json.Encoder(decimal_format="string")

Row = dict[str, Any]


def ident(name: str) -> str:
    """A schema, table or column name we are about to put into SQL text."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert ``row``; if a row with the same ``key`` exists, overwrite it when this one is newer.

    ``row`` must carry ``last_event_seq``. Columns in ``insert_only`` are written on insert and
    kept on update (e.g. ``created_at``).
    """

    table: str
    key: tuple[str, ...]
    row: Mapping[str, Any]
    insert_only: frozenset[str] = frozenset()

    @property
    def seq(self) -> int:
        return self.row[SEQ_COLUMN]


@dataclass(frozen=True, slots=True)
class Update:
    """Set ``values`` on the row matching every column of ``key``, if its ``last_event_seq < seq``.

    Columns in ``keep_existing`` are only filled where they are still NULL (first writer wins,
    e.g. ``revoked_at``). A row that does not exist is not created.
    """

    table: str
    key: Mapping[str, Any]
    values: Mapping[str, Any]
    seq: int
    keep_existing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class InsertIfAbsent:
    """Insert ``row`` unless a row with the same ``key`` already exists.

    By default a conflict on any unique column is ignored (an action-log row whose event id is
    already there). With ``strict=True`` only a conflict on ``key`` is: a second organisation with
    the same slug is an error, which the runner turns into a failed action-log entry.
    """

    table: str
    row: Mapping[str, Any]
    key: tuple[str, ...] = ("seq",)
    strict: bool = False


RowOp = Union[Upsert, Update, InsertIfAbsent]


# --- in memory --------------------------------------------------------------------------------


@dataclass
class MemoryTables:
    """The semantics of ``apply_ops`` over dicts: ``tables[table][key tuple] = row``."""

    keys: Mapping[str, tuple[str, ...]]
    tables: dict[str, dict[tuple, Row]] = field(default_factory=dict)

    def table(self, name: str) -> dict[tuple, Row]:
        return self.tables.setdefault(name, {})

    def apply(self, ops: Iterable[RowOp]) -> None:
        for op in ops:
            rows = self.table(op.table)
            if isinstance(op, Upsert):
                k = tuple(op.row[c] for c in op.key)
                old = rows.get(k)
                if old is None:
                    rows[k] = dict(op.row)
                elif old[SEQ_COLUMN] < op.seq:
                    new = dict(old)
                    new.update({c: v for c, v in op.row.items() if c not in op.insert_only})
                    rows[k] = new
            elif isinstance(op, InsertIfAbsent):
                k = tuple(op.row[c] for c in op.key)
                rows.setdefault(k, dict(op.row))
            elif isinstance(op, Update):
                pk = self.keys[op.table]
                for k, old in rows.items():
                    if all(old.get(c) == v for c, v in op.key.items()) and old[SEQ_COLUMN] < op.seq:
                        new = dict(old)
                        for c, v in op.values.items():
                            if c in op.keep_existing and old.get(c) is not None:
                                continue
                            new[c] = v
                        new[SEQ_COLUMN] = op.seq
                        rows[k] = new
                        assert tuple(new[c] for c in pk) == k
            else:  # pragma: no cover
                raise TypeError(f"not a RowOp: {op!r}")

    def rows(self, table: str) -> list[Row]:
        return [self.tables.get(table, {})[k] for k in sorted(self.tables.get(table, {}), key=repr)]


# --- Postgres ---------------------------------------------------------------------------------


@dataclass
class _Run:
    kind: type
    table: str
    columns: tuple[str, ...]
    ops: list[RowOp]


def _columns(op: RowOp) -> tuple[str, ...]:
    if isinstance(op, Update):
        return tuple(op.key) + tuple(op.values)
    return tuple(op.row)


def _runs(ops: Iterable[RowOp]) -> list[_Run]:
    """Group ops per table, keeping each table's order; consecutive ops of one kind and shape merge.

    Tables are independent (no foreign keys), so only the order within a table matters.
    """
    per_table: dict[str, list[_Run]] = {}
    for op in ops:
        runs = per_table.setdefault(op.table, [])
        cols = _columns(op)
        if runs and runs[-1].kind is type(op) and runs[-1].columns == cols and _same_options(runs[-1].ops[0], op):
            runs[-1].ops.append(op)
        else:
            runs.append(_Run(type(op), op.table, cols, [op]))
    return [run for runs in per_table.values() for run in runs]


def _same_options(a: RowOp, b: RowOp) -> bool:
    if isinstance(a, Upsert) and isinstance(b, Upsert):
        return a.key == b.key and a.insert_only == b.insert_only
    if isinstance(a, InsertIfAbsent) and isinstance(b, InsertIfAbsent):
        return a.key == b.key and a.strict == b.strict
    if isinstance(a, Update) and isinstance(b, Update):
        return a.keep_existing == b.keep_existing
    return False


def _dedupe_upserts(ops: Sequence[Upsert]) -> list[Row]:
    # One statement may not touch a row twice; the newest version of each key is the result.
    latest: dict[tuple, Upsert] = {}
    for op in ops:
        k = tuple(op.row[c] for c in op.key)
        prev = latest.get(k)
        if prev is None or prev.seq < op.seq:
            if prev is not None and op.insert_only:
                merged = dict(op.row)
                merged.update({c: prev.row[c] for c in op.insert_only if c in prev.row})
                latest[k] = Upsert(op.table, op.key, merged, op.insert_only)
            else:
                latest[k] = op
    return [dict(op.row) for op in latest.values()]


def _dedupe_inserts(ops: Sequence[InsertIfAbsent]) -> list[Row]:
    first: dict[tuple, Row] = {}
    for op in ops:
        first.setdefault(tuple(op.row[c] for c in op.key), dict(op.row))
    return list(first.values())


def _dedupe_updates(ops: Sequence[Update]) -> list[Row]:
    merged: dict[tuple, Row] = {}
    for op in sorted(ops, key=lambda o: o.seq):
        k = tuple(sorted(op.key.items()))
        row = merged.get(k)
        if row is None:
            merged[k] = {**op.key, **op.values, SEQ_COLUMN: op.seq}
            continue
        for c, v in op.values.items():
            if c in op.keep_existing and row.get(c) is not None:
                continue
            row[c] = v
        row[SEQ_COLUMN] = op.seq
    return list(merged.values())


def _payload(rows: list[Row]) -> str:
    return _json.encode(rows).decode()


async def apply_ops(conn: asyncpg.Connection, schema: str, ops: Iterable[RowOp]) -> None:
    """Apply a batch of RowOps with one statement per (table, kind, shape) run, in order."""
    s = ident(schema)
    for run in _runs(ops):
        t = ident(run.table)
        cols = [ident(c) for c in run.columns]
        collist = ", ".join(cols)
        source = f"jsonb_populate_recordset(NULL::{s}.{t}, $1::text::jsonb)"
        first = run.ops[0]
        if run.kind is Upsert:
            assert isinstance(first, Upsert)
            rows = _dedupe_upserts(run.ops)  # type: ignore[arg-type]
            key = ", ".join(ident(c) for c in first.key)
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in first.key and c not in first.insert_only)
            sql = (
                f"INSERT INTO {s}.{t} AS t ({collist}) SELECT {collist} FROM {source} "
                f"ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE t.{SEQ_COLUMN} < EXCLUDED.{SEQ_COLUMN}"
            )
        elif run.kind is InsertIfAbsent:
            assert isinstance(first, InsertIfAbsent)
            rows = _dedupe_inserts(run.ops)  # type: ignore[arg-type]
            target = f"({', '.join(ident(c) for c in first.key)}) " if first.strict else ""
            sql = f"INSERT INTO {s}.{t} ({collist}) SELECT {collist} FROM {source} ON CONFLICT {target}DO NOTHING"
        else:
            assert isinstance(first, Update)
            rows = _dedupe_updates(run.ops)  # type: ignore[arg-type]
            sets = []
            for c in first.values:
                c = ident(c)
                sets.append(f"{c} = COALESCE(t.{c}, v.{c})" if c in first.keep_existing else f"{c} = v.{c}")
            sets.append(f"{SEQ_COLUMN} = v.{SEQ_COLUMN}")
            where = " AND ".join(f"t.{ident(c)} = v.{ident(c)}" for c in first.key)
            sql = (
                f"UPDATE {s}.{t} AS t SET {', '.join(sets)} FROM {source} AS v "
                f"WHERE {where} AND t.{SEQ_COLUMN} < v.{SEQ_COLUMN}"
            )
        await conn.execute(sql, _payload(rows))
