"""Redelivery delays: pure functions of the attempt number and a key (no clock, no global random).

``delay(attempt)`` grows ``base * factor**(attempt-1)`` up to ``cap``, then takes off up to
``jitter`` of it, by an amount derived from ``key`` and ``attempt``: replicas and replays compute
the same delay, while different instances (different keys) spread out instead of waking together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 15.0
    jitter: float = 0.2  # fraction of the delay that may be taken off

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.factor >= 1 and self.cap_s >= self.base_s and 0 <= self.jitter < 1):
            raise ValueError(f"invalid backoff {self}")

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter: non-decreasing in ``attempt``, between ``base_s`` and ``cap_s``."""
        n = max(1, attempt) - 1
        # Stop multiplying once past the cap: no float overflow for huge attempt numbers.
        value = self.base_s
        for _ in range(n):
            value *= self.factor
            if value >= self.cap_s:
                return self.cap_s
        return min(value, self.cap_s)

    def delay(self, attempt: int, key: str = "") -> float:
        return self.ceiling(attempt) * (1.0 - self.jitter * unit_fraction(key, attempt))


def unit_fraction(key: str, attempt: int) -> float:
    """A deterministic number in [0, 1) from ``key`` and ``attempt``."""
    digest = hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


CHECK = Backoff()  # the per-instance check timer: 0.5 s doubling to 15 s
PROVIDER = Backoff(base_s=1.0, cap_s=30.0)  # provider errors (transient, 5xx, timeouts)
CONFLICT = Backoff(base_s=0.05, cap_s=1.0, jitter=0.5)  # re-read after an optimistic-concurrency loss
