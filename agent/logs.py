"""Structured logging: structlog to stderr (JSON lines or console), an in-memory ring of recent
events that ``GET /logs`` serves, and optionally the same events as JSON lines in a file
rotated by size (``--log-file``), so a worker keeps its history on disk within a fixed budget
(the original's event log grew until it was trimmed by hand).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections import deque
from datetime import datetime
from typing import Any

import msgspec
import structlog

RING_SIZE = 2000


class LogRing:
    """The last ``size`` events, as plain dicts, oldest first."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self.total = 0

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        # A structlog processor: keep a copy, pass the event on unchanged to the renderer.
        self._events.append({k: _plain(v) for k, v in event_dict.items()})
        self.total += 1
        return event_dict

    def tail(self, n: int, since: datetime | None = None) -> list[dict[str, Any]]:
        """The last ``n`` events, only those stamped at or after ``since`` when given."""
        if n <= 0:
            return []
        events = list(self._events)
        if since is not None:
            events = [e for e in events if _at_or_after(e.get("timestamp"), since)]
        return events[-n:]


def _at_or_after(stamp: Any, since: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(stamp)) >= since
    except (TypeError, ValueError):
        return False


class RotatingJsonFile:
    """A structlog processor appending each event as one JSON line to ``path``, rotated at
    ``max_bytes`` with ``backups`` old files kept (``path.1`` is the newest of those)."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self._handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8", delay=True)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._encode = msgspec.json.Encoder()

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        line = self._encode.encode({k: _plain(v) for k, v in event_dict.items()}).decode()
        # emit() rotates when needed and reports its own I/O errors without raising.
        self._handler.emit(logging.makeLogRecord({"msg": line, "args": None}))
        return event_dict

    def close(self) -> None:
        self._handler.close()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value) if isinstance(value, BaseException) else str(value)


def configure_logging(fmt: str, ring: LogRing, level: str = "info", file_sink: RotatingJsonFile | None = None
                      ) -> None:
    # Libraries (aiohttp, nats) log through the standard library; keep them at warning.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            ring,
            *([file_sink] if file_sink is not None else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
