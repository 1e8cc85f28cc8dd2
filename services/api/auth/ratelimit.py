"""Failed-login throttle, per e-mail address and per client address (in this process).

After ``max_failures`` failures inside ``window_s`` the next attempts get 429 until the oldest
failure leaves the window. A success clears the e-mail's counter. Per process only: with
several API replicas the effective limit is multiplied by their number (a shared store is
the later fix, see the report).
"""

from __future__ import annotations

import time
from collections import deque


class LoginLimiter:
    def __init__(self, max_failures: int, window_s: float, *, clock=time.monotonic, max_keys: int = 100_000) -> None:
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        cutoff = self._clock() - self._window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            self._failures.pop(key, None)
        return q

    def retry_after(self, *keys: str) -> int:
        """Seconds to wait when any key is over the limit, else 0."""
        wait = 0.0
        for key in keys:
            q = self._recent(key)
            if len(q) >= self._max:
                wait = max(wait, q[0] + self._window - self._clock())
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, *keys: str) -> None:
        if len(self._failures) > self._max_keys:
            self._failures.clear()
        now = self._clock()
        for key in keys:
            q = self._failures.setdefault(key, deque())
            q.append(now)
            while len(q) > self._max:
                q.popleft()

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
