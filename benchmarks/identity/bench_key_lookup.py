"""API-key lookup time against how much of a real key the guess shares (a timing side channel check).

    .venv/bin/python benchmarks/identity/bench_key_lookup.py [--rounds 7] [--n 200000]

Prints, for guesses sharing 0, 8, 32 and 63 of the 64 secret characters with a stored key (and
the real key itself), the median ns per lookup over several rounds, interleaved so that machine
noise hits every variant alike. Side by side, the baseline that *does* leak: a naive
character-by-character comparison that stops at the first difference. The cache holds 10,000
keys, like a busy deployment.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from services.api.keycache import KeyCache
from services.api.keys import KEY_PREFIX, generate_api_key, hash_api_key


def _guess(real: str, shared: int) -> str:
    body = real[len(KEY_PREFIX):]
    return KEY_PREFIX + body[:shared] + ("0" if body[shared] != "0" else "1") + body[shared + 1:]


def naive_equal(a: str, b: str) -> bool:
    """What not to do: returns at the first differing character."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x != y:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    cache = KeyCache()
    keys = [generate_api_key() for _ in range(10_000)]
    for i, key in enumerate(keys):
        cache.add(key_id=str(i), key_hash=hash_api_key(key), org_id="o", user_id="u", scopes=["inference"],
                  expires_at=None)
    real = keys[0]
    variants = {f"shares {k:2d}/64": _guess(real, k) for k in (0, 8, 32, 63)}
    variants["the real key"] = real
    results: dict[str, list[float]] = {name: [] for name in variants}
    baseline: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, guess in variants.items():
            start = time.perf_counter_ns()
            for _ in range(args.n):
                cache.authenticate(guess)
            results[name].append((time.perf_counter_ns() - start) / args.n)
            start = time.perf_counter_ns()
            for _ in range(args.n):
                naive_equal(real, guess)
            baseline[name].append((time.perf_counter_ns() - start) / args.n)
    print(f"key lookup, {len(keys)} keys, {args.rounds} rounds x {args.n} lookups; python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'guess':16} {'KeyCache ns (median, min-max)':34} {'naive compare ns (leaks)':24}")
    for name in variants:
        r, b = results[name], baseline[name]
        print(f"{name:16} {statistics.median(r):8.1f} ({min(r):.1f}-{max(r):.1f}){'':12} {statistics.median(b):8.1f}")


if __name__ == "__main__":
    main()
