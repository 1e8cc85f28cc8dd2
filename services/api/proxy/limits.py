"""Per-key limits: requests per minute and requests in flight. Pure core, one small store.

**Requests per minute** is a token bucket in its GCRA form (one integer per key, exact integer
nanoseconds): a key may send ``burst`` requests back to back (``burst`` = its per-minute limit,
one minute's allowance), then one every ``60 s / rpm``. Over any span of T seconds it gets at
most ``burst + T * rpm / 60`` requests: ``rpm`` per minute sustained, at most twice that in
the one minute that starts with a full bucket. A refused request costs nothing, and its
``Retry-After`` is the exact wait, rounded up to whole seconds: retrying after that many
seconds succeeds (if nothing else was sent meanwhile), retrying one second earlier would not.

**Concurrent requests** is a counter per key, taken when a request is admitted and given back
when it ends (completed, failed, or cancelled by a client that went away). Nobody knows when a
slot frees up, so its ``Retry-After`` is 1 s.

**Across processes** (``limit_sync.py``, ``limit_gossip.py``). Both live in the memory of each
API process, and every ``INVENTIV_PROXY_LIMIT_SYNC_S`` seconds each process tells the others, over
core NATS, what it admitted per key since its last report and what it has in flight now. A
peer's admissions are charged to the local bucket (``charge``: exactly as if they had been
admitted here, when the report arrives), its in-flight requests are added to the local count.
Nothing of this is on the request path: a decision reads local memory only. What the processes
cannot know is what their peers admitted since their last report arrived, so a key can get more
than its limit by at most what the other processes admit in that lag (the bound, and why, are
in ``limit_sync.py``). With syncing off (``INVENTIV_PROXY_LIMIT_SYNC_S=0``) or one process, the
limits are per process, as before. A restart forgets the buckets (a key starts with a full one).

Limits come from the key (``ApiKeyPrincipal.requests_per_minute`` / ``max_concurrent_requests``
when the key carries them) or else from the settings; 0 means unlimited.
"""

from __future__ import annotations

from typing import NamedTuple

NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S


def interval_ns(rpm: int) -> int:
    """Time between two requests at the sustained rate; rounded up, so never more than ``rpm`` a minute."""
    return -(-NS_PER_MIN // rpm)


class Decision(NamedTuple):
    allowed: bool
    tat_ns: int  # the key's new theoretical arrival time (unchanged when refused)
    retry_after_ns: int  # 0 when allowed


def gcra(tat_ns: int | None, now_ns: int, rpm: int, burst: int) -> Decision:
    """Admit one request at ``now_ns`` for a key whose theoretical arrival time is ``tat_ns``."""
    step = interval_ns(rpm)
    tat = now_ns if tat_ns is None or tat_ns < now_ns else tat_ns
    allow_at = tat - step * (burst - 1)
    if now_ns < allow_at:
        return Decision(False, tat, allow_at - now_ns)
    return Decision(True, tat + step, 0)


def charge(tat_ns: int | None, now_ns: int, count: int, rpm: int) -> int:
    """The theoretical arrival time after ``count`` requests admitted elsewhere, charged at ``now_ns``.

    The same step as ``gcra``'s admission, ``count`` times, without its test: the requests were
    already admitted (by another process), so they cost what they would have cost here. The
    result may lie more than a burst ahead (the bucket "below empty"): that debt is the peers'
    over-admission, and it is paid back by refusing here until it has drained. Forgiving it
    (stopping at one burst) would let N saturated processes each refill their own bucket from
    the debt they forgot and admit N times the rate forever; ``limit_sync.py`` caps instead
    what one report may claim.
    """
    return max(now_ns if tat_ns is None else tat_ns, now_ns) + count * interval_ns(rpm)


def retry_after_s(retry_after_ns: int) -> int:
    """Whole seconds, rounded up, at least 1 (what the ``Retry-After`` header carries)."""
    return max(1, -(-retry_after_ns // NS_PER_S))


class RateLimiter:
    """The GCRA state of every key seen recently. A key whose bucket is full again is forgotten."""

    __slots__ = ("_tat", "_max_keys")

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, int] = {}
        self._max_keys = max_keys

    def take(self, key: str, now_ns: int, rpm: int, burst: int | None = None) -> Decision:
        d = gcra(self._tat.get(key), now_ns, rpm, burst or rpm)
        if d.allowed:
            if len(self._tat) >= self._max_keys and key not in self._tat:
                self.forget_full(now_ns)
            self._tat[key] = d.tat_ns
        return d

    def charge(self, key: str, now_ns: int, count: int, rpm: int) -> int:
        """Charge ``count`` requests admitted by another process (``charge``); returns the new state."""
        if len(self._tat) >= self._max_keys and key not in self._tat:
            self.forget_full(now_ns)
        tat = self._tat[key] = charge(self._tat.get(key), now_ns, count, rpm)
        return tat

    def forget_full(self, now_ns: int) -> None:
        """Drop keys whose bucket has refilled completely: they behave exactly like unseen keys."""
        self._tat = {k: t for k, t in self._tat.items() if t > now_ns}

    def __len__(self) -> int:
        return len(self._tat)


class ConcurrencyLimiter:
    __slots__ = ("_in_flight",)

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}

    def acquire(self, key: str, limit: int) -> bool:
        n = self._in_flight.get(key, 0)
        if n >= limit:
            return False
        self._in_flight[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self._in_flight.get(key, 0) - 1
        if n > 0:
            self._in_flight[key] = n
        else:
            self._in_flight.pop(key, None)

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        """Every key with requests in flight, and how many (a copy)."""
        return dict(self._in_flight)

    def __len__(self) -> int:
        return len(self._in_flight)
