"""Structured logging: structlog to stderr (JSON lines or console), an in-memory ring of recent
events that ``GET /logs`` serves, and optionally the same events as JSON lines in a file
rotated by size (``--log-file``), so a worker keeps its history on disk within a fixed budget
(the original's event log grew until it was trimmed by hand).

With a log file, stderr stops being a second unbounded copy: it can be narrowed to warnings and
errors (``--log-stderr-level``), and what Python writes to it is capped at the file's size per
run (``CappedStream``). The standard library's loggers (nats, aiohttp) go through the same
processors, so they reach the ring and the file too. Budget on disk: ``(backups + 1) * max_bytes``
for the file and its backups, plus ``max_bytes`` of stderr per run for whoever captures it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
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
    """A structlog processor appending each event as one JSON line to ``path``, rotated by size with
    ``backups`` old files kept (``path.1`` is the newest of those; with 0 the file is emptied instead).

    Sizes are counted in bytes, so no file ever exceeds ``max_bytes``: an event too big to fit in one
    file on its own is replaced by a short ``log_event_too_large`` record. A write error (disk full)
    is reported once on stderr and the event dropped; the agent keeps running.
    """

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._encode = msgspec.json.Encoder()
        self._lock = threading.Lock()  # stdlib loggers may log from other threads
        self._file: Any = None
        self._size = 0
        self._failing = False

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        data = self._encode.encode({k: _plain(v) for k, v in event_dict.items()}) + b"\n"
        if len(data) > self.max_bytes:
            data = self._encode.encode({"timestamp": _plain(event_dict.get("timestamp")),
                                        "level": _plain(event_dict.get("level")),
                                        "event": "log_event_too_large",
                                        "original_event": str(event_dict.get("event"))[:200],
                                        "size_bytes": len(data)}) + b"\n"
        with self._lock:
            try:
                self._write(data)
                self._failing = False
            except OSError as exc:
                if not self._failing:
                    print(f"inventiv-agent: cannot write the log file {self.path}: {exc}", file=sys.stderr)
                self._failing = True
                self._close()
        return event_dict

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)  # unbuffered: one write() per event
            self._size = os.fstat(self._file.fileno()).st_size
        if self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self._close()
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                try:
                    os.replace(f"{self.path}.{index}", f"{self.path}.{index + 1}")
                except FileNotFoundError:
                    pass
            os.replace(self.path, f"{self.path}.1")
            self._file = open(self.path, "ab", buffering=0)
        else:
            self._file = open(self.path, "wb", buffering=0)
        self._size = 0

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()


class CappedStream:
    """A text stream passing at most ``max_bytes`` (UTF-8) to ``stream``, the last of them a notice
    saying so, then nothing: what a captured stderr can cost on disk, per run."""

    def __init__(self, stream: Any, max_bytes: int, notice: str) -> None:
        self._stream = stream
        self._notice = f"\n{notice}\n"
        self._room = max_bytes - len(self._notice.encode())
        self._written = 0
        self._capped = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        length, size = len(text), len(text.encode("utf-8", "replace"))
        with self._lock:
            if self._capped:
                return length
            if self._written + size > self._room:
                self._capped = True
                text = self._notice
            self._written += size
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                pass
        return length

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8")


_STANDARD_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


class _ToStructlog(logging.Handler):
    """Standard-library records (nats, aiohttp, asyncio) through structlog: same ring, file and stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        # structlog knows the five standard levels only: a custom one counts as the standard one below it.
        level = max((n for n in _STANDARD_LEVELS if n <= record.levelno), default=logging.DEBUG)
        try:
            structlog.get_logger(record.name).log(level, record.getMessage(), logger=record.name,
                                                  exc_info=record.exc_info or False)
        except Exception:
            self.handleError(record)


def _at_least(level: str) -> Any:
    threshold = getattr(logging, level.upper(), logging.INFO)

    def drop_below(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if getattr(logging, str(event_dict.get("level", "")).upper(), logging.CRITICAL) < threshold:
            raise structlog.DropEvent
        return event_dict

    return drop_below


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value) if isinstance(value, BaseException) else str(value)


def configure_logging(fmt: str, ring: LogRing, level: str = "info", file_sink: RotatingJsonFile | None = None,
                      stderr_level: str | None = None) -> None:
    """``level`` filters every sink; ``stderr_level`` narrows stderr further. With a file sink, stderr
    (``sys.stderr`` itself, so tracebacks too) is capped at the file's ``max_bytes`` for this run."""
    stderr: Any = sys.stderr
    if file_sink is not None:
        stderr = CappedStream(sys.stderr, file_sink.max_bytes,
                              f"inventiv-agent: stderr capped at {file_sink.max_bytes} bytes for this run; "
                              f"every event is in {file_sink.path}")
        sys.stderr = stderr
    # Libraries (aiohttp, nats) log through the standard library; keep them at warning.
    logging.basicConfig(level=logging.WARNING, handlers=[_ToStructlog()], force=True)
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
            *([_at_least(stderr_level)] if stderr_level is not None else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stderr),
        cache_logger_on_first_use=True,
    )
