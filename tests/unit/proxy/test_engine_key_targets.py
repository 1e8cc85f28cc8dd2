"""Which key the proxy presents to a worker's engine: its own derived key, the fleet key, or none."""

from __future__ import annotations

import pytest
import structlog

from services.api.proxy import ProxySettings
from services.api.proxy import targets as targets_mod
from services.api.proxy.targets import TargetCache, upstream_key
from services.runtime.engine_keys import SECRET_ENV, EngineKeySecret, generate_secret

SECRET = EngineKeySecret.parse(generate_secret())
URL = "http://10.0.0.7:8000"
PATH = "/v1/chat/completions"


def auth_line(key: str) -> bytes:
    return f"authorization: Bearer {key}\r\n".encode()


def test_each_worker_gets_its_own_derived_key_in_its_prebuilt_heads():
    cache = TargetCache(SECRET, fleet_key=None)
    a, b = cache.get("inst-a", URL, PATH), cache.get("inst-b", URL, PATH)
    for target, iid, other in ((a, "inst-a", "inst-b"), (b, "inst-b", "inst-a")):
        assert auth_line(SECRET.key_for(iid)) in target.head_json
        assert auth_line(SECRET.key_for(iid)) in target.head_sse
        assert SECRET.key_for(other).encode() not in target.head_json
        assert target.authorization == f"Bearer {SECRET.key_for(iid)}"


def test_the_secret_wins_over_the_fleet_key_which_is_the_fallback_and_none_sends_nothing():
    assert upstream_key("inst-a", SECRET, "fleet-key") == SECRET.key_for("inst-a")
    assert upstream_key("inst-a", None, "fleet-key") == "fleet-key"
    assert upstream_key("inst-a", None, None) is None
    assert auth_line("fleet-key") in TargetCache(None, "fleet-key").get("inst-a", URL, PATH).head_json
    keyless = TargetCache(None, None).get("inst-a", URL, PATH)
    assert b"authorization" not in keyless.head_json and keyless.authorization is None
    both = TargetCache(SECRET, "fleet-key").get("inst-a", URL, PATH)
    assert b"fleet-key" not in both.head_json and auth_line(SECRET.key_for("inst-a")) in both.head_json


def test_the_key_is_derived_once_per_target_not_per_request(monkeypatch):
    calls = []
    real = targets_mod.upstream_key

    def counting(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(targets_mod, "upstream_key", counting)
    cache = TargetCache(SECRET, None)
    first = cache.get("inst-a", URL, PATH)
    for _ in range(100):
        assert cache.get("inst-a", URL, PATH) is first
    cache.get("inst-b", URL, PATH)
    assert calls == ["inst-a", "inst-b"]


def test_a_recycled_address_serving_another_instance_gets_that_instance_key():
    cache = TargetCache(SECRET, None)
    old, new = cache.get("inst-old", URL, PATH), cache.get("inst-new", URL, PATH)
    assert old is not new and auth_line(SECRET.key_for("inst-new")) in new.head_json


def test_a_bad_url_is_logged_without_any_key():
    with structlog.testing.capture_logs() as logs:
        assert TargetCache(SECRET, "fleet-key").get("inst-a", "ftp://nope", PATH) is None
    assert logs and SECRET.key_for("inst-a") not in repr(logs) and "fleet-key" not in repr(logs)


def test_settings_read_the_secret_and_never_show_it():
    raw = generate_secret()
    settings = ProxySettings.from_env({SECRET_ENV: raw, "INVENTIV_PROXY_UPSTREAM_API_KEY": "fleet-key"})
    assert settings.engine_key_secret == EngineKeySecret.parse(raw)
    assert settings.upstream_api_key == "fleet-key"
    assert raw not in repr(settings) and settings.engine_key_secret.key_for("x") not in repr(settings)
    assert ProxySettings.from_env({}).engine_key_secret is None


def test_settings_refuse_a_weak_secret_at_start():
    with pytest.raises(SystemExit, match=f"inventiv: {SECRET_ENV} must encode at least 32"):
        ProxySettings.from_env({SECRET_ENV: "abcd" * 8})  # 16 bytes of hex
