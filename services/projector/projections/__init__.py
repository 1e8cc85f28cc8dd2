"""Pure projections of domain events into read-model row operations.

``project(event, meta, instances) -> list[RowOp]`` for one event, where ``instances`` maps
instance ids to their current ``instances`` rows (the only state a projection may read: its
own rows, as of the previous event). ``project_batch`` folds a batch, feeding each event the
rows the previous ones produced, so a batch gives the same rows as the same events one at a
time. Nothing here reads the clock or does I/O.

Never raises on a bad event: whatever cannot be projected becomes a failed action-log row.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from contracts import codec, subjects
from contracts.events import CatalogOffersObserved, CommandRejected, Event, InstanceEvent

from ..rowops import InsertIfAbsent, RowOp, Upsert
from .action_log import INVALID_EVENT, PROJECTION_ERROR, EventMeta, action_log_row, unreadable_row, uuid_or_none
from .catalog import project_catalog_event
from .identity import IDENTITY_EVENTS, project_identity_event
from .instances import INSTANCE_COLUMNS, project_command_rejected, project_instance_event

log = structlog.get_logger(__name__)

Row = dict[str, Any]

__all__ = [
    "INSTANCE_COLUMNS",
    "EventMeta",
    "instance_id_of",
    "project",
    "project_batch",
    "project_unreadable",
]


def instance_id_of(event: Event) -> str | None:
    """The (canonical) id of the instance row an event reads, if any."""
    if isinstance(event, InstanceEvent):
        return uuid_or_none(event.instance_id)
    if isinstance(event, CommandRejected) and event.instance_id:
        return uuid_or_none(event.instance_id)
    return None


def _subject_problem(event: Event, meta: EventMeta) -> str | None:
    try:
        expected = codec.event_subject_for(event)
    except (subjects.UnsafeSubjectToken, ValueError) as exc:
        return f"event cannot be addressed: {exc}"
    if expected != meta.subject:
        return f"payload belongs on {expected}, stored on {meta.subject}"
    return None


def project(event: Event, meta: EventMeta, instances: MutableMapping[str, Row] | dict[str, Row]) -> list[RowOp]:
    try:
        problem = _subject_problem(event, meta)
        iid = instance_id_of(event)
        current = instances.get(iid) if iid else None
        if problem is not None:
            status = current["status"] if current else None
            return [InsertIfAbsent("action_logs", action_log_row(
                event, meta, status="failed", instance_id=iid, before=status, after=status,
                error_code=INVALID_EVENT, error_message=problem))]  # fmt: skip
        if isinstance(event, InstanceEvent):
            return project_instance_event(event, meta, current)
        if isinstance(event, CommandRejected):
            return project_command_rejected(event, meta, current)
        if isinstance(event, IDENTITY_EVENTS):
            return project_identity_event(event, meta)
        if isinstance(event, CatalogOffersObserved):
            return project_catalog_event(event, meta)
        # An event type this projector has no table for: it still belongs in the log.
        return [InsertIfAbsent("action_logs", action_log_row(event, meta))]
    except Exception as exc:  # a bug or an event shape nobody expected: record it, keep going
        log.exception("projection.error", seq=meta.seq, subject=meta.subject)
        try:
            row = action_log_row(event, meta, status="failed", error_code=PROJECTION_ERROR, error_message=repr(exc))
        except Exception:
            row = unreadable_row(meta, None, error_code=PROJECTION_ERROR, error_message=repr(exc))
        return [InsertIfAbsent("action_logs", row)]


def project_unreadable(meta: EventMeta, headers: dict[str, str] | None, error: str,
                       code: str = INVALID_EVENT) -> list[RowOp]:  # fmt: skip
    """A message we could not decode (or that Postgres refused): one failed action-log row."""
    return [InsertIfAbsent("action_logs", unreadable_row(meta, headers, error_code=code, error_message=error))]


def fold_instances(instances: MutableMapping[str, Row], ops: Iterable[RowOp]) -> None:
    """Apply the instance upserts among ``ops`` to ``instances`` with the database's guard."""
    for op in ops:
        if isinstance(op, Upsert) and op.table == "instances":
            old = instances.get(op.row["id"])
            if old is None:
                instances[op.row["id"]] = dict(op.row)
            elif old["last_event_seq"] < op.seq:
                new = dict(op.row)
                for col in op.insert_only:
                    new[col] = old[col]
                instances[op.row["id"]] = new


def project_batch(
    items: Iterable[tuple[Event | None, EventMeta, dict[str, str] | None, str | None]],
    instances: MutableMapping[str, Row],
) -> list[RowOp]:
    """Project ``(event or None, meta, headers, decode error)`` items in order; updates ``instances``."""
    ops: list[RowOp] = []
    for event, meta, headers, error in items:
        if event is None:
            new = project_unreadable(meta, headers, error or "undecodable")
        else:
            new = project(event, meta, instances)
            fold_instances(instances, new)
        ops.extend(new)
    return ops
