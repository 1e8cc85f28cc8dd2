"""Per-key limits across API processes: the report each process sends, and how a peer's is merged. Pure.

Every ``INVENTIV_PROXY_LIMIT_SYNC_S`` seconds (S) each proxy process reports, per limited key it
saw since its last report: how many requests it admitted in that interval, and how many it has
in flight now (``LimitReport``; key ids and limits only, never a key or its hash). A process
merges a peer's report (``LimitSync.merge``) by charging the admitted requests to its own
bucket for the key (``limits.charge``: as if admitted here, when the report arrives) and by
keeping the peer's in-flight counts, which ``Admission`` adds to its own in the concurrency
check. A report replaces the peer's previous in-flight counts (a key it leaves out has none),
so a lost report heals with the next one; a report no newer than the last one merged from that
peer is ignored, so merging is idempotent. A peer silent for more than 3 intervals is
forgotten, with its in-flight counts: a crashed process does not hold a key's slots forever.

**What is guaranteed.** N processes, a key with ``rpm`` (one request every ``step`` =
60 s / rpm, burst B = rpm) and ``max_concurrent_requests`` M; a report reaches every peer at
most L after it is sent (L <= S expected: core NATS on one cluster), so a request is known to
every process at most D = S + L after it was admitted (it goes out with the next report, at
most S later). ``tests/unit/proxy/test_limit_sync.py`` checks both bounds with Hypothesis on
simulated processes, with the exact U of each admission and with the closed forms.

- Requests per minute: over any window of T seconds, all processes together admit at most
  ``B + floor(T / step) + U``, where U counts the window's requests admitted by other
  processes than the one that admitted its last request, and that it had not merged by then:
  ``U <= (N - 1) * (B + floor(D / step))``.
  Why: take the window's last request, admitted by process P at t. In P's bucket, the slack
  ``max(tat - now, 0)`` falls by at most T over the window, rises by one step per request P
  admitted or merged, and is at most ``(B - 1) * step`` just before t (else P refuses). So
  the requests P admitted or merged in the window are at most ``B + floor(T / step)``; every
  other request of the window is a peer's that P had not merged at t, so admitted in the
  last D before t, and a peer's own bucket holds what it admits in D to ``B + floor(D / step)``.
- Requests in flight: at any moment, at most M + the requests that other processes than the
  one that admitted last admitted after the in-flight counts it had from them were taken
  (so within D, and at most M per process): at most ``M + (N - 1) * M``, in practice
  ``M +`` what the peers admit in D. Why: P admits only while its own count plus the peers'
  last reported counts is below M; a peer's true count exceeds its reported one only by what
  it admitted since (what ended since only lowers it); the total grows only at admissions.

For a key kept at its limit, U is what the peers admit in D, about what the key may send in D
(rpm 3000, S = 0.25 s, D <= 0.5 s: ~25).
The B in its bound is the worst case: a key with a full bucket everywhere whose requests hit
all N processes at once gets up to N x B before any report arrives. That excess is then paid
back rather than forgotten (``limits.charge`` lets the bucket go below empty), so over long
windows the key gets its rpm, not N x rpm. Not covered: a report lost on the way (core NATS
delivers at most once), or a live peer forgotten after 3 silent intervals (a partition): what
it reported late or never is simply not charged.

**A cap on what one report may claim**: per key, ``B + floor(interval / step)`` requests, the
interval being the one the report covers (at most the silence window): no correct process can
admit more in that time (its own bucket holds it to that), so a corrupt report can delay a key
by that much, not forever.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .limits import interval_ns

SILENT_INTERVALS = 3
"""A peer whose last report is older than this many sync intervals is forgotten."""

_Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class KeyUsage(msgspec.Struct, array_like=True, frozen=True):
    """One key in a report: admitted since the previous report, in flight now, its rpm (0 = none)."""

    key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    admitted: _Count
    in_flight: _Count
    rpm: _Count


class LimitReport(msgspec.Struct, array_like=True, frozen=True):
    process_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    seq: _Count  # 1, 2, ... per process
    interval_ns: _Count  # the time its ``admitted`` counts cover (since the previous report)
    keys: tuple[KeyUsage, ...] = ()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LimitReport)


def encode_report(report: LimitReport) -> bytes:
    return _encoder.encode(report)


def decode_report(data: bytes) -> LimitReport:
    """Raises ``msgspec.DecodeError`` (validation errors included) on anything that is not a report."""
    return _decoder.decode(data)


def max_claim(rpm: int, window_ns: int) -> int:
    """The most requests one process can admit for a key within ``window_ns`` (its own bucket's bound)."""
    return rpm + window_ns // interval_ns(rpm)


class _Peer:
    __slots__ = ("seq", "last_seen_ns", "in_flight")

    def __init__(self) -> None:
        self.seq = 0
        self.last_seen_ns = 0
        self.in_flight: dict[str, int] = {}


class LimitSync:
    """One process's side: the reports it sends, the peers' reports merged into its ``Admission``."""

    def __init__(self, admission, *, process_id: str, interval_ns: int, now_ns: int) -> None:
        if interval_ns <= 0:
            raise ValueError("interval_ns must be > 0")
        self.admission = admission
        self.process_id = process_id
        self.interval_ns = interval_ns
        self.silence_ns = SILENT_INTERVALS * interval_ns
        self.seq = 0
        self._last_report_ns = now_ns
        self._peers: dict[str, _Peer] = {}
        admission.take_pending()  # from now on, admissions are recorded for the reports

    @property
    def live_peers(self) -> int:
        return len(self._peers)

    def peer_seq(self, process_id: str) -> int:
        """The last report merged from that peer (0: none, or forgotten)."""
        peer = self._peers.get(process_id)
        return peer.seq if peer is not None else 0

    def peers_last_seen_ns(self) -> dict[str, int]:
        """Each live peer and when its last report was merged."""
        return {pid: peer.last_seen_ns for pid, peer in self._peers.items()}

    def report(self, now_ns: int) -> LimitReport:
        """What this process admitted since the last report, and what it has in flight now."""
        pending = self.admission.take_pending()
        keys = []
        for key, n in self.admission.concurrency.snapshot().items():
            entry = pending.pop(key, None)
            keys.append(KeyUsage(key, entry[0], n, entry[1]) if entry else KeyUsage(key, 0, n, 0))
        keys.extend(KeyUsage(key, count, 0, rpm) for key, (count, rpm) in pending.items())
        self.seq += 1
        interval = max(0, now_ns - self._last_report_ns)
        self._last_report_ns = now_ns
        return LimitReport(self.process_id, self.seq, interval, tuple(keys))

    def merge(self, report: LimitReport, now_ns: int) -> bool:
        """Merge a peer's report; False when ignored (our own, a duplicate, or older than one merged)."""
        if report.process_id == self.process_id:
            return False
        peer = self._peers.get(report.process_id)
        if peer is None:
            peer = self._peers[report.process_id] = _Peer()
        elif report.seq <= peer.seq:
            return False
        peer.seq = report.seq
        peer.last_seen_ns = now_ns
        window_ns = min(report.interval_ns, self.silence_ns)
        rate = self.admission.rate
        in_flight: dict[str, int] = {}
        for usage in report.keys:
            if usage.admitted and usage.rpm:
                rate.charge(usage.key, now_ns, min(usage.admitted, max_claim(usage.rpm, window_ns)), usage.rpm)
            if usage.in_flight:
                in_flight[usage.key] = in_flight.get(usage.key, 0) + usage.in_flight
        self._replace_in_flight(peer, in_flight)
        return True

    def expire(self, now_ns: int) -> int:
        """Forget the peers silent for longer than the silence window; returns how many."""
        gone = [pid for pid, peer in self._peers.items() if now_ns - peer.last_seen_ns > self.silence_ns]
        for pid in gone:
            self._replace_in_flight(self._peers.pop(pid), {})
        return len(gone)

    def _replace_in_flight(self, peer: _Peer, new: dict[str, int]) -> None:
        remote = self.admission.remote_in_flight
        for key, n in peer.in_flight.items():
            left = remote.get(key, 0) - n
            if left > 0:
                remote[key] = left
            else:
                remote.pop(key, None)
        for key, n in new.items():
            remote[key] = remote.get(key, 0) + n
        peer.in_flight = new
