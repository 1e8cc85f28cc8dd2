"""API key format and hashing: ``sk-inv-`` + 64 hex characters, stored as SHA-256, shown once."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-inv-"
VISIBLE_PREFIX_LEN = len(KEY_PREFIX) + 8


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_hex(32)


def hash_api_key(raw_key: str) -> str:
    # A fast hash is right here: the key has 256 bits of entropy, so there is nothing to brute-force,
    # and the proxy looks keys up on every request.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def visible_prefix(raw_key: str) -> str:
    return raw_key[:VISIBLE_PREFIX_LEN]


def looks_like_api_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) == len(KEY_PREFIX) + 64
