"""Session affinity by rendezvous hashing (highest random weight). Pure.

Each (session, worker) pair gets a pseudo-random weight; a session's home is the worker with
the highest weight. Removing a worker only moves the sessions whose home it was (every other
session keeps its highest weight), adding one only takes the sessions for which it now weighs
most, and no state is kept: every API process computes the same home for a session from the
same set of workers. A session whose home is not routable right now goes to the
highest-weight worker among the routable ones -- the same one for every request of that
session, so the conversation stays together (and keeps one prefix cache warm) while its home
is away, and returns when it is back.

The weight is a 64-bit BLAKE2b of ``session \\0 instance_id``: CRC32 is linear, so its weights
for one session across workers are strongly correlated and would spread sessions unevenly.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Iterable, TypeVar

W = TypeVar("W")


def weight(session_key: str, instance_id: str) -> int:
    digest = blake2b(f"{session_key}\x00{instance_id}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranked(session_key: str, instance_ids: Iterable[str]) -> list[str]:
    """Instance ids, highest weight first (ties, which need a hash collision, by id)."""
    return sorted(instance_ids, key=lambda iid: (weight(session_key, iid), iid), reverse=True)


def home(session_key: str, instance_ids: Iterable[str]) -> str | None:
    best = None
    best_key = None
    for iid in instance_ids:
        k = (weight(session_key, iid), iid)
        if best_key is None or k > best_key:
            best, best_key = iid, k
    return best
