"""NATS connection and JetStream helpers shared by every service. No domain code."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, NotFoundError

from .nats_auth import NatsAuth, connect_options, nats_auth_from_env

log = structlog.get_logger(__name__)

NATS_CONFIG_DIR = Path(__file__).resolve().parents[2] / "nats"


async def connect(url: str, *, name: str, auth: NatsAuth | None = None, connect_timeout_s: float = 5.0) -> NATS:
    """Connect with reconnects forever: a NATS restart must not take a service down.

    ``auth``: credentials and TLS (``nats_auth.py``); by default from ``NATS_CREDS`` / ``NATS_NKEY`` /
    ``NATS_CA`` / ``NATS_CERT`` / ``NATS_KEY``, so every service authenticates the same way.
    """
    if auth is None:
        auth = nats_auth_from_env()

    client: list[NATS] = []

    async def on_disconnect() -> None:
        # A drain or close also disconnects; only an unexpected loss deserves a warning.
        closing = bool(client) and (client[0].is_closed or client[0].is_draining)
        (log.debug if closing else log.warning)("nats.disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats.reconnected", client=name)

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", client=name, error=str(exc))

    nc = await nats.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        connect_timeout=connect_timeout_s,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
        **connect_options(auth),
    )
    client.append(nc)
    return nc


def load_config_files(kind: str, config_dir: Path = NATS_CONFIG_DIR) -> list[dict[str, Any]]:
    """Stream (``kind="streams"``) or consumer (``"consumers"``) definitions in the server's JSON shape."""
    return [json.loads(p.read_text()) for p in sorted((config_dir / kind).glob("*.json"))]


# Streams whose content may be dropped to change what cannot be updated in place (storage type).
DISPOSABLE_STREAMS = frozenset({"HEARTBEATS"})


async def apply_nats_config(js: JetStreamContext, config_dir: Path = NATS_CONFIG_DIR) -> list[str]:
    """Create or update every stream and durable consumer from ``nats/``. Idempotent."""
    applied: list[str] = []
    for raw in load_config_files("streams", config_dir):
        cfg = api.StreamConfig.from_response(dict(raw))
        try:
            info = await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
            applied.append(f"stream {cfg.name}: created")
            continue
        if info.config.storage != cfg.storage and cfg.name in DISPOSABLE_STREAMS:
            # The storage type cannot be updated in place; telemetry may simply start afresh.
            await js.delete_stream(cfg.name)
            await js.add_stream(cfg)
            applied.append(f"stream {cfg.name}: recreated ({info.config.storage} -> {cfg.storage})")
            continue
        await js.update_stream(cfg)
        applied.append(f"stream {cfg.name}: updated")
    for raw in load_config_files("consumers", config_dir):
        raw = dict(raw)
        stream = raw.pop("stream_name")
        cfg = api.ConsumerConfig.from_response(dict(raw["config"]))
        # add_consumer on an existing durable updates it when the change is allowed.
        await js.add_consumer(stream, cfg)
        applied.append(f"consumer {stream}/{cfg.durable_name}: applied")
    return applied


class StoredMessage:
    """A message read back from a stream, with its sequence and server timestamp."""

    __slots__ = ("subject", "seq", "data", "headers", "time")

    def __init__(self, subject: str, seq: int, data: bytes, headers: dict[str, str] | None, time: str | None):
        self.subject = subject
        self.seq = seq
        self.data = data
        self.headers = headers or {}
        self.time = time


async def read_subject(
    js: JetStreamContext, stream: str, subject_filter: str, *, from_seq: int = 1
) -> list[StoredMessage]:
    """Every message matching ``subject_filter`` from ``from_seq`` on, in stream order.

    Uses direct gets (``next_by_subj``): no consumer is created, so loading one aggregate is
    a handful of round trips and leaves nothing behind on the server.
    """
    out: list[StoredMessage] = []
    seq = max(1, from_seq)
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject_filter, next=True, direct=True)
        except NotFoundError:
            return out
        headers = dict(raw.headers or {})
        out.append(
            StoredMessage(raw.subject, raw.seq, raw.data or b"", headers, headers.get("Nats-Time-Stamp"))
        )
        seq = raw.seq + 1


async def last_message(js: JetStreamContext, stream: str, subject: str) -> StoredMessage | None:
    try:
        raw = await js.get_msg(stream, subject=subject, direct=True)
    except NotFoundError:
        return None
    headers = dict(raw.headers or {})
    return StoredMessage(raw.subject, raw.seq, raw.data or b"", headers, headers.get("Nats-Time-Stamp"))


async def stream_last_seq(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return info.state.last_seq


def is_wrong_last_sequence(exc: BaseException) -> bool:
    return isinstance(exc, (APIError, BadRequestError)) and getattr(exc, "err_code", None) == 10071


async def wait_connected(nc: NATS, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not nc.is_connected:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("NATS not connected")
        await asyncio.sleep(0.05)
