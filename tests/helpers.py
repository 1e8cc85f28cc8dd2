"""Test helpers: waiting on conditions with deadlines (never sleeping for a fixed time)."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; return that value or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message} (last value: {last!r})")
        await asyncio.sleep(interval_s)


def wait_until_sync(predicate: Callable[[], Any], *, timeout_s: float = 10.0, interval_s: float = 0.02,
                    message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message} (last value: {value!r})")
        time.sleep(interval_s)
