"""API-key lookup does the same work whatever the presented key shares with a real one.

The presented key is hashed whole (SHA-256) and the digest looked up in a dict: no character
of the raw key is ever compared with a stored key, so the time taken cannot reveal how long a
matching prefix is. ``benchmarks/identity/bench_key_lookup.py`` measures it.
"""

from __future__ import annotations

import services.api.keycache as keycache
from services.api.keycache import KeyCache
from services.api.keys import KEY_PREFIX, generate_api_key, hash_api_key


def test_lookup_hashes_the_whole_key_once_and_stores_only_digests(monkeypatch):
    cache = KeyCache()
    real = generate_api_key()
    cache.add(key_id="k", key_hash=hash_api_key(real), org_id="o", user_id="u", scopes=["inference"], expires_at=None)
    assert real not in repr(cache.__dict__)  # only digests are kept
    calls: list[str] = []

    def spy(raw: str) -> str:
        calls.append(raw)
        return hash_api_key(raw)

    monkeypatch.setattr(keycache, "hash_api_key", spy)
    body = real[len(KEY_PREFIX):]
    for shared in (0, 1, 8, 32, 63):
        guess = KEY_PREFIX + body[:shared] + ("0" if body[shared] != "0" else "1") + body[shared + 1:]
        calls.clear()
        assert cache.authenticate(guess) is None
        assert calls == [guess]
    calls.clear()
    assert cache.authenticate(real) is not None and calls == [real]
    # Malformed keys are refused on their shape alone, before any hashing.
    calls.clear()
    assert cache.authenticate(real[:-1]) is None and calls == []
