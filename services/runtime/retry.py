"""Retrying start-up steps until they succeed or the service is asked to stop."""

from __future__ import annotations

import asyncio
import random
from typing import Awaitable, Callable, TypeVar

import structlog

T = TypeVar("T")


class Backoff:
    """Doubling delays with jitter (50–100 % of the nominal value), capped."""

    def __init__(self, first: float = 0.1, cap: float = 5.0):
        self._first, self._cap, self._next = first, cap, first

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        value = self._next
        self._next = min(self._cap, self._next * 2)
        return value * (0.5 + random.random() / 2)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def retry_until_stopped(service: str, step: str, make: Callable[[], Awaitable[T]],
                              stop: asyncio.Event) -> T | None:
    """Run ``make`` until it succeeds (its result) or ``stop`` is set (None).

    Services start before their servers may be up (a fresh `inventiv up`, a restarted Postgres):
    they wait and log, rather than crash and be restarted.
    """
    log = structlog.get_logger(service)
    backoff = Backoff(first=0.5, cap=10.0)
    while not stop.is_set():
        try:
            return await make()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure here is retried and logged
            delay = backoff.next()
            log.warning(f"{service}.start_retry", step=step, error=f"{type(exc).__name__}: {exc}",
                        retry_in_s=round(delay, 1))
            await sleep_or_stop(stop, delay)
    return None
