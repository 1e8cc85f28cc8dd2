"""KeyCache and RoutingTable fed directly (no NATS): what each input does to what the router sees."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from contracts import codec, ids
from contracts.events import (
    ApiKeyCreated,
    ApiKeyRevoked,
    InstanceFailed,
    InstanceReady,
    InstanceRecovered,
    InstanceTerminationRequested,
    InstanceUnavailable,
)
from contracts.heartbeats import EngineLoad, Heartbeat
from services.api.keycache import KeyCache
from services.api.keys import generate_api_key, hash_api_key
from services.api.proxy.policy import eligible
from services.api.proxy.routing_table import RoutingTable, _ts_from_header

NOW = 1_000_000.0


def env(org="o1"):
    return dict(id=ids.new_id(), org_id=org, actor="system:test", correlation_id="c", causation_id="c",
                occurred_at=datetime.now(timezone.utc))


def created(raw, key_id="k1", org="o1", scopes=("inference",), expires_at=None):
    return ApiKeyCreated(**env(org), key_id=key_id, name="n", prefix=raw[:15], key_hash=hash_api_key(raw),
                         user_id="u1", scopes=scopes, expires_at=expires_at)


def test_keycache_authenticates_revokes_and_never_resurrects():
    cache = KeyCache()
    raw = generate_api_key()
    assert cache.authenticate(raw) is None
    cache.apply(1, created(raw))
    p = cache.authenticate(raw)
    assert p.key_id == "k1" and p.org_id == "o1" and p.has_scope("inference")
    assert cache.authenticate(raw[:-1] + ("0" if raw[-1] != "0" else "1")) is None
    assert cache.authenticate("Bearer " + raw) is None
    cache.apply(2, ApiKeyRevoked(**env(), key_id="k1"))
    assert cache.authenticate(raw) is None
    cache.apply(1, created(raw))  # a replayed creation after the revocation
    assert cache.authenticate(raw) is None


def test_keycache_refuses_expired_keys():
    cache = KeyCache()
    old, new = generate_api_key(), generate_api_key()
    cache.add_from_event(created(old, "k1", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    cache.add_from_event(created(new, "k2", expires_at=datetime.now(timezone.utc) + timedelta(hours=1)))
    assert cache.authenticate(old) is None
    assert cache.authenticate(new).key_id == "k2"


def test_keycache_carries_per_key_limits_when_given_and_none_otherwise():
    cache = KeyCache()
    plain, limited = generate_api_key(), generate_api_key()
    cache.add_from_event(created(plain, "k1"))  # today's contract has no limit fields
    p = cache.authenticate(plain)
    assert p.requests_per_minute is None and p.max_concurrent_requests is None
    cache.add(key_id="k2", key_hash=hash_api_key(limited), org_id="o1", user_id="u1", scopes=("inference",),
              expires_at=None, requests_per_minute=30, max_concurrent_requests="2")
    q = cache.authenticate(limited)
    assert (q.requests_per_minute, q.max_concurrent_requests) == (30, 2)
    cache.add(key_id="k2", key_hash=hash_api_key(limited), org_id="o1", user_id="u1", scopes=("inference",),
              expires_at=None, requests_per_minute=-1, max_concurrent_requests="lots")
    q = cache.authenticate(limited)
    assert (q.requests_per_minute, q.max_concurrent_requests) == (None, None)  # unusable: the defaults apply


def hb(status="ready", model="m", waiting=0.0):
    return Heartbeat(status=status, model=model, sent_at=datetime(2000, 1, 1, tzinfo=timezone.utc),
                     engine=EngineLoad(requests_waiting=waiting))


def ready(iid, org="o1", model="m", url="http://10.0.0.1:8000"):
    return InstanceReady(**env(org), instance_id=iid, upstream_url=url, model_name=model)


def routable(table, model="m", now=NOW):
    return [w.instance_id for w in eligible(table.snapshot, model, now, {})]


def test_routable_needs_ready_event_fresh_ready_heartbeat_of_the_same_org():
    t = RoutingTable(stale_s=30, clock=lambda: NOW)
    t.apply_heartbeat("o1", "i1", hb(), NOW)  # heartbeat before the event
    assert routable(t) == []
    t.apply_event(1, ready("i1"))
    assert routable(t) == ["i1"]
    assert routable(t, now=NOW + 30.001) == []  # stale
    t.apply_heartbeat("o1", "i1", hb("draining"), NOW + 1)
    assert routable(t) == []
    t.apply_heartbeat("o1", "i1", hb(), NOW + 2)
    assert routable(t) == ["i1"]
    t.apply_heartbeat("o2", "i1", hb(), NOW + 3)  # another org's subject: not this instance's heartbeat
    assert routable(t) == []


def test_unavailable_recovered_and_gone():
    t = RoutingTable(stale_s=30, clock=lambda: NOW)
    for iid in ("i1", "i2", "i3"):
        t.apply_event(1, ready(iid, url=f"http://{iid}:8000"))
        t.apply_heartbeat("o1", iid, hb(), NOW)
    assert routable(t) == ["i1", "i2", "i3"]
    t.apply_event(2, InstanceUnavailable(**env(), instance_id="i1", reason_code="hb_lost"))
    t.apply_event(3, InstanceTerminationRequested(**env(), instance_id="i2", reason_code="user"))
    t.apply_event(4, InstanceFailed(**env(), instance_id="i3", status="failed", reason_code="x"))
    assert routable(t) == []
    t.apply_event(5, InstanceRecovered(**env(), instance_id="i1"))
    assert routable(t) == ["i1"]
    assert [w.upstream_url for w in t.snapshot.workers["m"]] == ["http://i1:8000"]


def test_an_older_stored_heartbeat_never_overwrites_a_live_one():
    t = RoutingTable(stale_s=30, clock=lambda: NOW)
    t.apply_event(1, ready("i1"))
    t.apply_heartbeat("o1", "i1", hb("ready", waiting=1), NOW)
    t.apply_heartbeat("o1", "i1", hb("draining"), NOW - 5)
    w = t.snapshot.workers["m"][0]
    assert w.hb_status == "ready" and w.requests_waiting == 1


def test_heartbeat_message_takes_identity_from_the_subject_only():
    t = RoutingTable(stale_s=30, clock=lambda: NOW)
    t.apply_event(1, ready("i1"))
    t.apply_heartbeat_message("hb.o1.i1", codec.encode(hb()), NOW)
    assert routable(t) == ["i1"]
    t.apply_heartbeat_message("hb.o1.*", codec.encode(hb()), NOW)  # unsafe subject: ignored
    t.apply_heartbeat_message("hb.o1.i1", b"{not json", NOW)
    assert routable(t) == ["i1"]


def test_model_change_and_snapshot_immutability():
    t = RoutingTable(stale_s=30, clock=lambda: NOW)
    t.apply_event(1, ready("i1", model="a"))
    t.apply_heartbeat("o1", "i1", hb(), NOW)
    before = t.snapshot
    t.apply_event(2, ready("i1", model="b"))
    assert "a" in before.workers and "a" not in t.snapshot.workers
    assert routable(t, "b") == ["i1"]


def test_forget_old_heartbeats():
    t = RoutingTable(stale_s=30, clock=lambda: NOW)
    t.apply_event(1, ready("i1"))
    t.apply_heartbeat("o1", "i1", hb(), NOW - 500)
    assert t.forget_old_heartbeats(120) == 1
    assert t.snapshot.workers["m"][0].hb_status is None


def test_nats_timestamp_header_parsing():
    ts = _ts_from_header("2026-11-21T01:02:03.123456789Z")
    assert abs(ts - datetime(2026, 11, 21, 1, 2, 3, 123456, tzinfo=timezone.utc).timestamp()) < 1e-6
    assert _ts_from_header("garbage") is None and _ts_from_header(None) is None


def test_keycache_drops_the_keys_of_a_removed_member_or_a_deleted_user():
    from contracts.events import MemberRemoved, UserDeleted

    cache = KeyCache()
    mine, elsewhere, other_user = generate_api_key(), generate_api_key(), generate_api_key()
    cache.add(key_id="k1", key_hash=hash_api_key(mine), org_id="o1", user_id="u1", scopes=("inference",),
              expires_at=None)
    cache.add(key_id="k2", key_hash=hash_api_key(elsewhere), org_id="o2", user_id="u1", scopes=("inference",),
              expires_at=None)
    cache.add(key_id="k3", key_hash=hash_api_key(other_user), org_id="o1", user_id="u2", scopes=("inference",),
              expires_at=None)
    # Removed from o1: the keys there die now, even if their own revocations never get appended.
    cache.apply(5, MemberRemoved(**env(), organization_id="o1", user_id="u1"))
    assert cache.authenticate(mine) is None
    assert cache.authenticate(elsewhere).key_id == "k2" and cache.authenticate(other_user).key_id == "k3"
    cache.apply(6, UserDeleted(**env(), user_id="u1"))
    assert cache.authenticate(elsewhere) is None and cache.authenticate(other_user).key_id == "k3"
