"""API keys in memory: authenticate by a dict lookup, follow creations and revocations live.

- ``start(nc, pool)`` loads the keys from the read model (``rm.api_keys``) together with the
  projector's checkpoint, in one snapshot, then follows ``api_key`` events on the EVENTS
  stream from ``checkpoint + 1`` (``services.api.proxy.jsfollow``): nothing between the
  load and the live feed is missed, and events published while this process was cut off
  from NATS are applied once it is back. Without a read model (no pool, no table, no
  checkpoint) it replays every key event from the start of the stream instead.
- ``authenticate(raw_key)`` is one SHA-256 and one dict lookup: no database on the hot path.
  Expired keys are refused at lookup time.
- A revocation is applied the moment its event is delivered (milliseconds); revoked key ids
  are remembered so a replayed creation can never bring one back.
- Per-key limits (``requests_per_minute``, ``max_concurrent_requests``) are taken from the
  creation event or the read-model row when they carry fields of those names (the contract has
  none today: every key then gets the proxy's defaults, ``INVENTIV_PROXY_KEY_RPM`` /
  ``INVENTIV_PROXY_KEY_CONCURRENCY``).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import msgspec
import structlog

from contracts.events import ApiKeyCreated, ApiKeyRevoked, MemberRemoved, UserDeleted

from .keys import hash_api_key, looks_like_api_key
from .read_model_snapshot import read_model_snapshot

log = structlog.get_logger(__name__)

# Key events, and the identity events that end a key's owner's right to use it: removing a member
# (or deleting the user) kills their keys here at once, even if the separate key revocations that
# follow were never appended (a crash between the two writes).
KEY_EVENT_SUBJECTS = [
    "evt.*.api_key.*.created",
    "evt.*.api_key.*.revoked",
    "evt.*.membership.*.removed",
    "evt.*.user.*.deleted",
]
# Names of the optional per-key limit fields, on ``ApiKeyCreated`` and as ``rm.api_keys`` columns.
LIMIT_FIELDS = ("requests_per_minute", "max_concurrent_requests")


def _limit(value) -> int | None:
    """A usable limit (int >= 0) or None (use the default)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


class ApiKeyPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    """Who a request acts as. Sessions (people) may be represented with ``key_id=None``."""

    key_id: str | None
    org_id: str
    user_id: str | None
    scopes: frozenset[str]
    expires_at: datetime | None = None
    # The key's own limits; None = the proxy's defaults, 0 = unlimited.
    requests_per_minute: int | None = None
    max_concurrent_requests: int | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class KeyCache:
    def __init__(self) -> None:
        # key_hash -> (principal, expiry as epoch seconds or None)
        self._by_hash: dict[str, tuple[ApiKeyPrincipal, float | None]] = {}
        self._hash_by_id: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._follower = None
        self.loaded_from_seq = 0

    # --- hot path ------------------------------------------------------------------------

    def authenticate(self, raw_key: str) -> ApiKeyPrincipal | None:
        if not looks_like_api_key(raw_key):
            return None
        entry = self._by_hash.get(hash_api_key(raw_key))
        if entry is None:
            return None
        principal, expires = entry
        if expires is not None and time.time() >= expires:
            return None
        return principal

    def __len__(self) -> int:
        return len(self._by_hash)

    # --- writers ---------------------------------------------------------------------------

    def add(self, *, key_id: str, key_hash: str, org_id: str, user_id: str | None, scopes, expires_at: datetime | None,
            requests_per_minute: int | None = None, max_concurrent_requests: int | None = None) -> None:
        key_id, org_id = str(key_id), str(org_id)
        if key_id in self._revoked:
            return
        principal = ApiKeyPrincipal(
            key_id=key_id,
            org_id=org_id,
            user_id=None if user_id is None else str(user_id),
            scopes=frozenset(scopes or ()),
            expires_at=expires_at,
            requests_per_minute=_limit(requests_per_minute),
            max_concurrent_requests=_limit(max_concurrent_requests),
        )
        old = self._hash_by_id.get(key_id)
        if old is not None and old != key_hash:
            self._by_hash.pop(old, None)
        self._hash_by_id[key_id] = key_hash
        self._by_hash[key_hash] = (principal, None if expires_at is None else expires_at.timestamp())

    def add_from_event(self, event: ApiKeyCreated) -> None:
        """Apply a creation now (the process that minted the key need not wait for the event)."""
        self.add(
            key_id=event.key_id,
            key_hash=event.key_hash,
            org_id=event.org_id,
            user_id=event.user_id,
            scopes=event.scopes,
            expires_at=event.expires_at,
            requests_per_minute=getattr(event, LIMIT_FIELDS[0], None),
            max_concurrent_requests=getattr(event, LIMIT_FIELDS[1], None),
        )

    def revoke(self, key_id: str) -> None:
        key_id = str(key_id)
        self._revoked.add(key_id)
        key_hash = self._hash_by_id.pop(key_id, None)
        if key_hash is not None:
            self._by_hash.pop(key_hash, None)

    def revoke_owner(self, user_id: str, org_id: str | None = None) -> int:
        """Revoke every cached key of ``user_id`` (in ``org_id`` only, when given); returns how many."""
        doomed = [p.key_id for p, _ in self._by_hash.values()
                  if p.user_id == str(user_id) and (org_id is None or p.org_id == str(org_id))]
        for key_id in doomed:
            self.revoke(key_id)
        return len(doomed)

    def apply(self, seq: int, event: Any) -> None:
        if isinstance(event, ApiKeyCreated):
            self.add_from_event(event)
        elif isinstance(event, ApiKeyRevoked):
            self.revoke(event.key_id)
        elif isinstance(event, MemberRemoved):
            self.revoke_owner(event.user_id, event.organization_id)
        elif isinstance(event, UserDeleted):
            self.revoke_owner(event.user_id)

    # --- lifecycle -------------------------------------------------------------------------

    async def load(self, pool) -> int:
        """Load keys from ``rm.api_keys``; returns the checkpoint they reflect (0 = replay everything)."""
        # SELECT *: the limit columns are read when the read model has them, and nothing breaks when it does not.
        # A key whose owner is no longer a member of its organisation (or no longer exists) is dead
        # even when its own revocation was never recorded.
        checkpoint, rows = await read_model_snapshot(pool, """
            SELECT k.*, (u.id IS NOT NULL AND u.deleted_at IS NULL
                         AND m.user_id IS NOT NULL AND m.removed_at IS NULL) AS owner_is_member
            FROM rm.api_keys k
            LEFT JOIN rm.users u ON u.id = k.user_id
            LEFT JOIN rm.memberships m ON m.organization_id = k.org_id AND m.user_id = k.user_id""",
                                                     what="api_keys")
        for row in rows:
            if row["revoked_at"] is not None or not row["owner_is_member"]:
                self.revoke(str(row["id"]))
            else:
                self.add(
                    key_id=str(row["id"]),
                    key_hash=row["key_hash"],
                    org_id=str(row["org_id"]),
                    user_id=row["user_id"],
                    scopes=row["scopes"],
                    expires_at=row["expires_at"],
                    requests_per_minute=row.get(LIMIT_FIELDS[0]),
                    max_concurrent_requests=row.get(LIMIT_FIELDS[1]),
                )
        return int(checkpoint)

    async def start(self, nc, pool) -> None:
        from .proxy.jsfollow import EventFollower

        checkpoint = await self.load(pool)
        self.loaded_from_seq = checkpoint
        self._follower = EventFollower(nc, name="keycache", filter_subjects=KEY_EVENT_SUBJECTS, handler=self.apply)
        await self._follower.start(checkpoint + 1)
        log.info("keycache.started", keys=len(self._by_hash), checkpoint=checkpoint, last_seq=self._follower.last_seq)

    async def stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            await follower.stop()
