"""Per-key limits across API processes (limit_sync.py): examples, and the global bounds on simulated processes.

The simulation runs N ``Admission`` + ``LimitSync`` pairs on one clock: requests arrive at random
times on random processes, every process reports every S, and each report reaches each peer
after its own random lag of at most S (in order per sender, as core NATS delivers one
connection's messages). At every admission the bounds of ``limit_sync.py`` are checked, with the
exact number of requests the admitting process had not heard of, and in their closed form.
"""

from __future__ import annotations

import heapq
import random
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from services.api.proxy import errors, metrics
from services.api.proxy.admission import Admission
from services.api.proxy.limit_gossip import LimitGossip, report_subject
from services.api.proxy.limit_sync import (
    SILENT_INTERVALS,
    KeyUsage,
    LimitReport,
    LimitSync,
    decode_report,
    encode_report,
    max_claim,
)
from services.api.proxy.limits import NS_PER_MIN, NS_PER_S, charge, interval_ns
from services.api.proxy.settings import ProxySettings

S_NS = NS_PER_S // 4  # the default sync interval


def _principal(key_id="key-1", **kw):
    base = dict(key_id=key_id, user_id="u", org_id="o", requests_per_minute=None, max_concurrent_requests=None)
    base.update(kw)
    return SimpleNamespace(**base)


class _Clock:
    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


def _pair(rpm=0, concurrency=0, n=2):
    clock = _Clock()
    adms = [Admission(rpm=rpm, concurrency=concurrency, clock=clock) for _ in range(n)]
    syncs = [LimitSync(a, process_id=f"p{i}", interval_ns=S_NS, now_ns=0) for i, a in enumerate(adms)]
    return clock, adms, syncs


def _refused(adm, principal=None) -> errors.ProxyError:
    with pytest.raises(errors.ProxyError) as exc:
        adm.admit(principal or _principal())
    return exc.value


# --- the pure merge: examples ----------------------------------------------------------------


def test_charge_is_the_admission_step_count_times():
    step = interval_ns(60)
    assert charge(None, 5, 3, 60) == 5 + 3 * step
    assert charge(2, 5, 1, 60) == 5 + step  # a bucket that refilled starts from now
    assert charge(100 * step, 5, 2, 60) == 102 * step  # a debt is added to, not reset


def test_a_peers_admissions_use_up_the_local_bucket_with_the_exact_retry_after():
    clock, (a, b), (sa, sb) = _pair(rpm=3)
    a.admit(_principal())
    a.admit(_principal())
    assert sb.merge(sa.report(S_NS), S_NS)
    clock.now_ns = S_NS
    b.admit(_principal())  # the third of three
    exc = _refused(b)
    assert exc.status == 429 and b"rate_limit_exceeded" in exc.body
    # The first of the three was charged at S: a slot frees 20 s after that (60 s / 3), not earlier.
    assert exc.headers == [(b"retry-after", b"20")]


def test_a_report_is_merged_once_and_never_by_its_sender():
    clock, (a, b), (sa, sb) = _pair(rpm=10)
    for _ in range(4):
        a.admit(_principal())
    report = sa.report(S_NS)
    assert not sa.merge(report, S_NS)
    assert sb.merge(report, S_NS)
    tat = dict(b.rate._tat)
    assert not sb.merge(report, S_NS)  # a redelivery changes nothing
    assert b.rate._tat == tat == {"key-1": S_NS + 4 * interval_ns(10)}
    older = LimitReport("p0", report.seq - 1, S_NS, (KeyUsage("key-1", 5, 0, 10),))
    assert not sb.merge(older, S_NS)


def test_peers_in_flight_requests_count_and_each_report_replaces_the_previous_one():
    clock, (a, b), (sa, sb) = _pair(concurrency=2)
    slot = a.admit(_principal())
    a.admit(_principal(key_id="other"))
    sb.merge(sa.report(S_NS), S_NS)
    assert b.remote_in_flight == {"key-1": 1, "other": 1}
    b.admit(_principal())
    exc = _refused(b)
    assert exc.headers == [(b"retry-after", b"1")] and b"concurrency_limit_exceeded" in exc.body
    a.release(slot)
    sb.merge(sa.report(2 * S_NS), 2 * S_NS)  # key-1 no longer in the report: nothing in flight there
    assert b.remote_in_flight == {"other": 1}
    b.admit(_principal())


def test_a_silent_peer_is_forgotten_after_three_intervals_with_its_slots():
    clock, (a, b), (sa, sb) = _pair(concurrency=1)
    a.admit(_principal())
    sb.merge(sa.report(S_NS), S_NS)
    assert sb.live_peers == 1
    assert sb.expire(S_NS + SILENT_INTERVALS * S_NS) == 0  # exactly the window: still there
    _refused(b)
    assert sb.expire(S_NS + SILENT_INTERVALS * S_NS + 1) == 1
    assert sb.live_peers == 0 and b.remote_in_flight == {} and sb.peer_seq("p0") == 0
    b.admit(_principal())
    # It comes back: known again, with what it now reports.
    sb.merge(sa.report(10 * S_NS), 10 * S_NS)
    assert sb.live_peers == 1 and b.remote_in_flight == {"key-1": 1}


def test_one_report_can_claim_at_most_what_one_process_could_admit():
    clock, (b,), (sb,) = _pair(rpm=60, n=1)
    step = interval_ns(60)
    bogus = LimitReport("peer", 1, 10 * NS_PER_MIN, (KeyUsage("key-1", 10**12, 0, 60),))
    sb.merge(bogus, 0)
    window = SILENT_INTERVALS * S_NS  # a report covers at most the silence window
    assert max_claim(60, window) == 60
    assert b.rate._tat["key-1"] == 60 * step  # one minute, not 10**12 of them
    honest = LimitReport("peer2", 1, S_NS, (KeyUsage("key-1", 10, 0, 60),))
    sb.merge(honest, 0)
    assert b.rate._tat["key-1"] == 70 * step  # below the cap: charged in full


def test_reports_carry_limited_keys_only_and_start_empty():
    clock, (a,), (sa,) = _pair(rpm=0, concurrency=0, n=1)
    empty = sa.report(S_NS)
    assert empty.keys == () and empty.seq == 1 and empty.interval_ns == S_NS
    a.admit(_principal(requests_per_minute=0, max_concurrent_requests=0))  # unlimited: never reported
    a.admit(_principal(key_id="rate-only", requests_per_minute=5))
    a.admit(_principal(key_id="rate-only", requests_per_minute=5))
    a.admit(_principal(key_id="both", requests_per_minute=7, max_concurrent_requests=3))
    a.admit(_principal(key_id="conc-only", max_concurrent_requests=3))
    report = sa.report(3 * S_NS)
    assert report.seq == 2 and report.interval_ns == 2 * S_NS
    assert _by_key(report) == {"rate-only": (2, 0, 5), "both": (1, 1, 7), "conc-only": (0, 1, 0)}
    again = sa.report(4 * S_NS)  # admissions are reported once; what is in flight, every time
    assert _by_key(again) == {"both": (0, 1, 0), "conc-only": (0, 1, 0)}


def _by_key(report: LimitReport) -> dict:
    return {u.key: (u.admitted, u.in_flight, u.rpm) for u in report.keys}


def test_admissions_are_not_recorded_while_nobody_reports():
    adm = Admission(rpm=5, concurrency=0, clock=lambda: 0)
    adm.admit(_principal())
    assert adm.pending is None


# --- the wire format ---------------------------------------------------------------------------


def test_a_report_round_trips_compactly():
    report = LimitReport("a1b2c3d4e5f60718", 7, S_NS, (KeyUsage("01HZX3K9V4N2M8Q7R6T5Y4W3E2", 12, 3, 3000),))
    data = encode_report(report)
    assert decode_report(data) == report
    assert len(data) < 70  # an array of arrays: no field names on the wire


@pytest.mark.parametrize("bad", [
    b"", b"\xc1", msgspec.msgpack.encode({"process_id": "p"}),
    msgspec.msgpack.encode(["p", -1, 0, []]),  # negative seq
    msgspec.msgpack.encode(["p", 1, 0, [["k", -5, 0, 60]]]),  # negative count
    msgspec.msgpack.encode(["p", 1, 0, [["k" * 300, 1, 0, 60]]]),  # absurd key
    msgspec.msgpack.encode(["p.>", 1, 0, []]),  # not a subject token
    msgspec.msgpack.encode(["p", 1, 0, [["k", "1", 0, 60]]]),
])
def test_anything_else_is_refused_by_the_decoder(bad):
    with pytest.raises(msgspec.DecodeError):
        decode_report(bad)


def _counter(outcome: str) -> float:
    return metrics.LIMIT_REPORTS.labels(outcome)._value.get()


async def test_the_adapter_logs_and_ignores_a_report_it_cannot_read():
    clock = _Clock()
    adm = Admission(rpm=5, concurrency=2, clock=clock)
    gossip = LimitGossip(adm, sync_s=0.25, process_id="me", clock=clock)
    nc = SimpleNamespace(published=[])

    async def subscribe(subject, cb):
        nc.subject = subject
        return SimpleNamespace(unsubscribe=_noop)

    async def publish(subject, data):
        nc.published.append((subject, data))

    nc.subscribe, nc.publish = subscribe, publish
    await gossip.start(nc)
    try:
        assert nc.subject == "proxy.limits.*"
        bad_before, merged_before = _counter("bad"), _counter("merged")
        with capture_logs() as logs:
            gossip.on_report("proxy.limits.peer", b"\x00garbage")
            gossip.on_report("proxy.limits.peer", encode_report(LimitReport("someone-else", 1, S_NS)))
        assert [entry["event"] for entry in logs] == ["limits.bad_report", "limits.bad_report"]
        assert all(entry["log_level"] == "warning" for entry in logs)
        assert _counter("bad") == bad_before + 2 and gossip.sync.live_peers == 0
        gossip.on_report("proxy.limits.peer", encode_report(
            LimitReport("peer", 1, S_NS, (KeyUsage("key-1", 5, 2, 5),))))
        assert _counter("merged") == merged_before + 1 and adm.remote_in_flight == {"key-1": 2}
        adm.admit(_principal(key_id="mine"))
        await gossip.publish_once()
        subject, data = nc.published[-1]
        assert subject == report_subject("me") == "proxy.limits.me"
        assert decode_report(data).keys == (KeyUsage("mine", 1, 1, 5),)
        assert metrics.LIMIT_PEERS._value.get() == 1
    finally:
        await gossip.stop()
    assert adm.pending is None


async def _noop():
    return None


@pytest.mark.parametrize("raw", ["nan", "inf", "-1", "0.001"])
def test_the_sync_interval_is_validated(raw):
    with pytest.raises(SystemExit):
        ProxySettings.from_env({"INVENTIV_PROXY_LIMIT_SYNC_S": raw})


def test_the_sync_interval_defaults_to_a_quarter_second_and_zero_turns_it_off():
    assert ProxySettings.from_env({}).limit_sync_s == 0.25
    assert ProxySettings.from_env({"INVENTIV_PROXY_LIMIT_SYNC_S": "0"}).limit_sync_s == 0


# --- the global guarantee, on simulated processes ------------------------------------------------


class _Request:
    __slots__ = ("t", "proc", "seq", "end", "slot", "ended")

    def __init__(self, t, proc, seq, end, slot) -> None:
        self.t, self.proc, self.seq, self.end, self.slot, self.ended = t, proc, seq, end, slot, False


class Simulation:
    """N processes with one key; ``requests`` = [(time_ns, process, duration_ns)]."""

    def __init__(self, n: int, rpm: int, concurrency: int, *, sync_ns: int = S_NS, lag=None, sync: bool = True):
        self.n, self.rpm, self.concurrency, self.sync_ns = n, rpm, concurrency, sync_ns
        self.clock = _Clock()
        self.adm = [Admission(rpm=rpm, concurrency=concurrency, clock=self.clock) for _ in range(n)]
        self.syncs = [LimitSync(a, process_id=f"p{i}", interval_ns=sync_ns, now_ns=0) for i, a in enumerate(self.adm)]
        self.lag = lag or (lambda: sync_ns)
        self.sync = sync
        self.admitted: list[_Request] = []
        self.merged = [[0] * n for _ in range(n)]  # merged[i][j]: the last report of j that i merged
        self.checks = 0

    def run(self, requests) -> list[_Request]:
        events: list = []
        order = 0

        def push(t, kind, payload):
            nonlocal order
            order += 1
            heapq.heappush(events, (t, kind, order, payload))

        # At one instant: slots given back, then reports arriving, then reports sent, then requests.
        for t, proc, duration in requests:
            push(t, 3, (proc, duration))
        end = max((t for t, _, _ in requests), default=0)
        if self.sync:
            for k in range(1, end // self.sync_ns + 2):
                for j in range(self.n):
                    push(k * self.sync_ns, 2, j)
        while events:
            t, kind, _, payload = heapq.heappop(events)
            self.clock.now_ns = t
            if kind == 0:
                payload.ended = True
                self.adm[payload.proc].release(payload.slot)
            elif kind == 1:
                receiver, report = payload
                assert self.syncs[receiver].merge(report, t)
                self.merged[receiver][int(report.process_id[1:])] = report.seq
            elif kind == 2:
                sync = self.syncs[payload]
                assert sync.expire(t) == 0  # reports keep coming: nobody is ever forgotten here
                report = sync.report(t)
                for receiver in range(self.n):
                    if receiver != payload:
                        lag = self.lag()
                        assert 0 <= lag <= self.sync_ns
                        push(t + lag, 1, (receiver, report))
            else:
                proc, duration = payload
                try:
                    slot = self.adm[proc].admit(_principal())
                except errors.ProxyError:
                    continue
                req = _Request(t, proc, self.syncs[proc].seq + 1, t + duration, slot)
                self.admitted.append(req)
                if slot is not None:
                    push(req.end, 0, req)
                self._check(req)
        return self.admitted

    def _check(self, last: _Request) -> None:
        self.checks += 1
        i, merged = last.proc, self.merged[last.proc]
        if self.rpm:
            step, burst = interval_ns(self.rpm), self.rpm
            worst_unheard = (self.n - 1) * (burst + (2 * self.sync_ns) // step)  # D = S + lag <= 2 S
            count = unheard = 0
            for first in reversed(self.admitted):  # every window that ends with this admission
                count += 1
                if first.proc != i and first.seq > merged[first.proc]:
                    unheard += 1
                allowed = burst + (last.t - first.t) // step
                assert count <= allowed + unheard, (count, allowed, unheard)
                assert count <= allowed + worst_unheard or not self.sync
        if self.concurrency and last.slot is not None:
            live = [r for r in self.admitted if r.slot is not None and not r.ended]
            unheard = sum(1 for r in live if r.proc != i and r.seq > merged[r.proc])
            assert len(live) <= self.concurrency + unheard, (len(live), unheard)  # holds unsynced too: all unheard
            assert len(live) <= self.n * self.concurrency


@st.composite
def scenarios(draw):
    """N processes, a key's limits, and requests: bursts, steady streams and lulls, on random processes."""
    n = draw(st.integers(1, 4))
    rpm = draw(st.sampled_from([0, 1, 2, 3, 7, 20, 60, 240]))
    concurrency = draw(st.integers(1 if rpm == 0 else 0, 5))
    mean_gap = draw(st.sampled_from([0, NS_PER_S // 1000, NS_PER_S // 50, NS_PER_S // 10, NS_PER_S // 2, 2 * NS_PER_S]))
    size = draw(st.integers(1, 200))
    gaps = draw(st.lists(st.integers(0, 2 * mean_gap), min_size=size, max_size=size))
    procs = draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size))
    durations = draw(st.lists(st.integers(1, 3 * NS_PER_S), min_size=size, max_size=size))
    t, requests = 0, []
    for gap, proc, duration in zip(gaps, procs, durations):
        t += gap
        requests.append((t, proc, duration))
    return n, rpm, concurrency, requests, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_n_processes_never_admit_more_than_the_derived_bounds(scenario):
    n, rpm, concurrency, requests, seed = scenario
    rng = random.Random(seed)
    sim = Simulation(n, rpm, concurrency, lag=lambda: rng.randint(0, S_NS))
    sim.run(requests)
    assert sim.checks == len(sim.admitted)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, NS_PER_S), min_size=1, max_size=100), st.sampled_from([1, 3, 60, 600]),
       st.integers(0, 3))
def test_one_process_with_syncing_decides_exactly_as_one_without(gaps, rpm, concurrency):
    times = [sum(gaps[:i + 1]) for i in range(len(gaps))]
    plain, synced = (Simulation(1, rpm, concurrency, sync=s) for s in (False, True))
    requests = [(t, 0, NS_PER_S) for t in times]
    assert [r.t for r in plain.run(requests)] == [r.t for r in synced.run(requests)]


def test_two_saturated_processes_pay_back_a_double_burst_and_then_share_one_rate():
    """A key of 60 a minute: 60 requests on each of two processes at once, then one every 50 ms
    (alternately) for 5 minutes.

    Without syncing: 2 x (60 + 300). With the peers' admissions charged in full, the second burst
    is paid back within the first minute and the key gets exactly one burst + one a second, what
    one process alone would give. Forgiving the peers' over-admission instead (a bucket never
    below empty) gives 518 here, 4/3 of the rate for good: each process keeps refilling its own
    bucket from the debt it forgot.
    """
    n, rpm, duration_s = 2, 60, 300
    burst = [(0, k % n, 1) for k in range(n * rpm)]
    steady = [(k * NS_PER_S // 20, k % n, 1) for k in range(1, duration_s * 20)]
    admitted = Simulation(n, rpm, 0).run(burst + steady)
    ideal = rpm + duration_s
    assert ideal - 1 <= len(admitted) <= ideal + 1
    late = [r for r in admitted if r.t >= 120 * NS_PER_S]
    assert duration_s - 120 - 1 <= len(late) <= duration_s - 120 + 1
    assert len(Simulation(n, rpm, 0, sync=False).run(burst + steady)) >= n * ideal - 2


def test_peers_that_all_burst_at_once_over_admit_by_at_most_their_bursts():
    n, rpm = 4, 10
    requests = [(0, k % n, NS_PER_S) for k in range(100)]
    assert len(Simulation(n, rpm, 0).run(requests)) == n * rpm  # the worst case the bound allows
