"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile by default).

Hashing and verifying cost tens of milliseconds of CPU on purpose, so the async helpers run
them in a worker thread instead of blocking the event loop.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
# Verified when the user does not exist, so "unknown email" and "wrong password" take as long.
_DUMMY_HASH = _hasher.hash("inventiv-timing-equaliser")

MAX_PASSWORD_LEN = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)
