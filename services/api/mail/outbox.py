"""Outbox adapter: each message is a JSON file in a directory (dev stack, tests).

Files are written under a temporary name and renamed, so a reader never sees half a message.
Names sort by time. ``read_outbox`` is the reader the tests and ``inventiv`` tooling use.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import msgspec

from . import MailError, MailMessage

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MailMessage)


class OutboxMailer:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def _write(self, message: MailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.directory / f".{name}.tmp"
        # The message may carry a one-time token: readable by this user only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_encoder.encode(message))
        final = self.directory / name
        os.replace(tmp, final)
        return final

    async def send(self, message: MailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise MailError(f"cannot write to the outbox {self.directory}: {type(exc).__name__}") from None


def read_outbox(directory: Path | str) -> list[MailMessage]:
    """Every message in the outbox, oldest first."""
    path = Path(directory)
    if not path.is_dir():
        return []
    return [_decoder.decode(p.read_bytes()) for p in sorted(path.glob("[0-9]*.json"))]
