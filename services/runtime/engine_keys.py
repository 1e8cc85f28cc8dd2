"""Per-worker engine API keys: derived from one control-plane secret, never stored anywhere.

Each worker's inference engine (vLLM ``VLLM_API_KEY``, or the fake engine) requires its own key::

    engine_key = urlsafe_b64(HMAC-SHA256(secret, b"inventiv-engine-key:" + instance_id))

The orchestrator (installer, engine probe) and the API (proxy) share ``INVENTIV_ENGINE_KEY_SECRET``
and derive the same key for an instance whenever they need it, so no key is ever written to an
event, a table or a log. A worker only ever learns its own key: a compromised worker cannot call
another worker's engine (a fleet-wide key would let it).

The secret is the encoding of at least 32 random bytes: hex (``openssl rand -hex 32``) or base64 /
base64url (``python3 -c 'import secrets; print(secrets.token_urlsafe(32))'``). Anything else is
refused at start with a message that never contains the value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from .settings import STACK_ENV_FILE, data_dir_from_env

SECRET_ENV = "INVENTIV_ENGINE_KEY_SECRET"
SECRET_FILE = "engine-key-secret"
"""Where ``inventiv up`` keeps the secret it generated, in its data dir (services/stack/engine_key_secret.py)."""
MIN_SECRET_BYTES = 32
# 32 random bytes hold ~30 distinct values on average; fewer than 16 means a pattern, not randomness.
_MIN_DISTINCT_BYTES = 16
_DOMAIN = b"inventiv-engine-key:"
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_B64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_HOW = ("generate one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` "
        "or `openssl rand -hex 32`")


class InvalidEngineKeySecret(ValueError):
    """The secret is not the encoding of enough random bytes. The message never holds the value."""


def derive_engine_key(secret: bytes, instance_id: str) -> str:
    """The engine API key of one instance (pure): 44 printable URL-safe base64 characters."""
    digest = hmac.new(secret, _DOMAIN + instance_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def decode_secret(raw: str) -> bytes:
    """The secret's bytes from its hex or base64(url) text; InvalidEngineKeySecret when too weak or unreadable."""
    text = raw.strip()
    if _HEX.match(text):
        value = bytes.fromhex(text)
    elif _B64.match(text):
        unpadded = text.rstrip("=").replace("+", "-").replace("/", "_")
        try:
            value = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
        except (binascii.Error, ValueError):
            raise InvalidEngineKeySecret(f"{SECRET_ENV} is not valid base64; {_HOW}") from None
    else:
        raise InvalidEngineKeySecret(f"{SECRET_ENV} must be hex or base64 text; {_HOW}")
    if len(value) < MIN_SECRET_BYTES:
        raise InvalidEngineKeySecret(
            f"{SECRET_ENV} must encode at least {MIN_SECRET_BYTES} random bytes (it encodes {len(value)}); {_HOW}")
    if len(set(value)) < _MIN_DISTINCT_BYTES:
        raise InvalidEngineKeySecret(f"{SECRET_ENV} does not look random (too few distinct bytes); {_HOW}")
    return value


def generate_secret() -> str:
    """A fresh secret in the accepted form (32 random bytes, base64url)."""
    while True:
        candidate = secrets.token_urlsafe(MIN_SECRET_BYTES)
        try:
            decode_secret(candidate)
        except InvalidEngineKeySecret:  # pragma: no cover - astronomically unlikely for random bytes
            continue
        return candidate


class EngineKeySecret:
    """The decoded secret, with a repr that never shows it (settings objects get printed and logged)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise InvalidEngineKeySecret(f"an engine key secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = bytes(secret)

    @classmethod
    def parse(cls, raw: str) -> "EngineKeySecret":
        return cls(decode_secret(raw))

    def key_for(self, instance_id: str) -> str:
        return derive_engine_key(self._secret, instance_id)

    def __repr__(self) -> str:
        return "EngineKeySecret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EngineKeySecret) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash((EngineKeySecret, hashlib.sha256(self._secret).digest()))


def engine_key_secret_from_env(environ: Mapping[str, str] | None = None) -> EngineKeySecret | None:
    """``INVENTIV_ENGINE_KEY_SECRET`` parsed, else the local stack's (see below), else None.

    A service started on its own against a running ``inventiv up`` (no ``NATS_URL`` given, the
    servers found through the data dir's ``stack.env``, as ``settings.server_url`` does) takes the
    secret that stack generated, so it derives the same engine keys as the stack's own services.
    A bad value stops the start with a clear line that never holds it.
    """
    env = os.environ if environ is None else environ
    raw = env.get(SECRET_ENV, "")
    where = ""
    if not raw.strip():
        path = _local_stack_secret_file(env)
        if path is None:
            return None
        raw, where = path.read_text(encoding="ascii", errors="replace"), f"{path}: "
    try:
        return EngineKeySecret.parse(raw)
    except InvalidEngineKeySecret as exc:
        raise SystemExit(f"inventiv: {where}{exc}") from None


def _local_stack_secret_file(env: Mapping[str, str]) -> Path | None:
    if env.get("NATS_URL"):
        return None  # servers given explicitly: not attached to a local stack
    data_dir = data_dir_from_env(env)
    path = data_dir / SECRET_FILE
    if not (data_dir / STACK_ENV_FILE).exists() or not path.exists():
        return None
    return path
