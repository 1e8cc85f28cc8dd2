"""Admission of an authenticated request against its key's limits (``limits.py``).

The limits of a request are its API key's own when the key carries them
(``requests_per_minute`` / ``max_concurrent_requests`` on the principal), else the settings'
defaults (``INVENTIV_PROXY_KEY_RPM`` / ``INVENTIV_PROXY_KEY_CONCURRENCY``); 0 = unlimited.
Requests made with a session (a person, no key) are limited per user with the same defaults.

Every decision reads this process's memory only. Other API processes come in through two
fields that ``limit_sync.LimitSync`` maintains off the request path (from the peers' reports
on NATS): their admissions are already charged to ``rate``, and ``remote_in_flight`` holds
their requests in flight per key, added to ours in the concurrency check. ``pending`` collects
what this process admitted since its last report (a dict increment per admitted request; None
while nobody reports, so nothing accumulates). Without peers this is exactly a per-process limit.
"""

from __future__ import annotations

import time

from . import errors
from .limits import ConcurrencyLimiter, RateLimiter, retry_after_s


def limit_key(principal) -> str:
    key_id = getattr(principal, "key_id", None)
    if key_id:
        return key_id
    user_id = getattr(principal, "user_id", None)
    return f"user:{user_id}" if user_id else f"org:{principal.org_id}"


class Admission:
    __slots__ = ("default_rpm", "default_concurrency", "rate", "concurrency", "remote_in_flight", "pending",
                 "_clock")

    def __init__(self, *, rpm: int, concurrency: int, clock=time.monotonic_ns) -> None:
        self.default_rpm = rpm
        self.default_concurrency = concurrency
        self.rate = RateLimiter()
        self.concurrency = ConcurrencyLimiter()
        self.remote_in_flight: dict[str, int] = {}  # key -> requests in flight in the other processes
        self.pending: dict[str, list[int]] | None = None  # key -> [admitted since the last report, its rpm]
        self._clock = clock

    def admit(self, principal) -> str | None:
        """Take a slot for one request; returns the key to ``release`` (None when unlimited), or raises 429."""
        rpm = getattr(principal, "requests_per_minute", None)
        if rpm is None:
            rpm = self.default_rpm
        max_conc = getattr(principal, "max_concurrent_requests", None)
        if max_conc is None:
            max_conc = self.default_concurrency
        if not rpm and not max_conc:
            return None
        key = limit_key(principal)
        if max_conc and self.concurrency.in_flight(key) + self.remote_in_flight.get(key, 0) >= max_conc:
            raise errors.too_many_concurrent(max_conc, 1)
        if rpm:
            d = self.rate.take(key, self._clock(), rpm)
            if not d.allowed:
                raise errors.rate_limited(rpm, retry_after_s(d.retry_after_ns))
            pending = self.pending
            if pending is not None:
                entry = pending.get(key)
                if entry is None:
                    pending[key] = [1, rpm]
                else:
                    entry[0] += 1
        if not max_conc:
            return None
        self.concurrency.acquire(key, max_conc)
        return key

    def release(self, key: str | None) -> None:
        if key is not None:
            self.concurrency.release(key)

    def take_pending(self) -> dict[str, list[int]]:
        """What was admitted since the last call (and start recording, if not yet)."""
        pending, self.pending = self.pending, {}
        return pending or {}
