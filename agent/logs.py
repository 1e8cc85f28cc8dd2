"""Structured logging: structlog to stderr (JSON lines or console), plus an in-memory ring of
recent events that ``GET /logs`` serves. The ring replaces the original's log file that grew
on the worker's disk; the durable copy is whatever collects the process's stderr (journald).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any

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

    def tail(self, n: int) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        events = list(self._events)
        return events[-n:]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value) if isinstance(value, BaseException) else str(value)


def configure_logging(fmt: str, ring: LogRing, level: str = "info") -> None:
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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
