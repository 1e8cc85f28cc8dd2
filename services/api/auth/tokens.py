"""One-time tokens (invitations, password resets): random, shown once, stored as SHA-256.

A password-reset token carries the id of the account it resets (``<user id hex>.<secret>``):
the reset endpoint loads that one account's events and looks for the digest there, so no
table maps tokens to people. The id is not a secret; the 256-bit secret part is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

_RESET_TOKEN = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_\-]{43})$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{43}$")


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters, 256 bits


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(token: str) -> bool:
    return isinstance(token, str) and bool(_TOKEN.match(token))


def new_reset_token(user_id: str) -> str:
    return f"{uuid.UUID(user_id).hex}.{new_secret()}"


def reset_token_user(token: str) -> str | None:
    """The account a reset token names, or ``None`` for anything that is not one."""
    match = _RESET_TOKEN.match(token or "")
    return str(uuid.UUID(match.group(1))) if match else None
