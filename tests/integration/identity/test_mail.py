"""The mail port's adapters: SMTP (standard-library smtplib against a real SMTP listener) and the outbox."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from email import message_from_bytes

import pytest

from services.api.mail import MailError, MailMessage
from services.api.mail import messages
from services.api.mail.outbox import OutboxMailer, read_outbox
from services.api.mail.smtp import SmtpMailer


class SmtpSink:
    """The few SMTP verbs smtplib uses, over a real socket; keeps what it received."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender, rcpts = "", []
        writer.write(b"220 sink ESMTP\r\n")
        while line := await reader.readline():
            verb = line.decode().strip().upper()
            if verb.startswith(("EHLO", "HELO")):
                writer.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif verb.startswith("MAIL FROM"):
                sender = line.decode().strip()[10:]
                writer.write(b"250 OK\r\n")
            elif verb.startswith("RCPT TO"):
                rcpts.append(line.decode().strip()[8:])
                writer.write(b"250 OK\r\n")
            elif verb == "DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                self.received.append((sender, rcpts, data[:-5]))
                writer.write(b"250 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"502 not here\r\n")
            await writer.drain()
        writer.close()


async def test_smtp_adapter_delivers_through_a_real_smtp_conversation():
    sink = SmtpSink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        mailer = SmtpMailer(host="127.0.0.1", port=port, sender="Inventiv <no-reply@inventiv.local>",
                            starttls=False, timeout_s=10)
        mail = messages.password_reset(to="ada@example.com", public_url="https://ui.example", token="tok.en",
                                       expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
        await mailer.send(mail)
    finally:
        server.close()
        await server.wait_closed()
    (sender, rcpts, data), = sink.received
    assert "no-reply@inventiv.local" in sender and rcpts == ["<ada@example.com>"]
    parsed = message_from_bytes(data)
    assert parsed["Subject"] == "Reset your Inventiv password"
    assert "https://ui.example/reset-password?token=tok.en" in parsed.get_payload(decode=True).decode()


async def test_smtp_failures_become_mail_errors_without_the_message():
    mailer = SmtpMailer(host="127.0.0.1", port=1, sender="x@inventiv.local", starttls=False, timeout_s=2)
    with pytest.raises(MailError) as exc:
        await mailer.send(MailMessage(to="a@example.com", subject="s", text="secret-token-in-body"))
    assert "secret-token-in-body" not in str(exc.value)


async def test_outbox_keeps_whole_messages_in_order(tmp_path):
    outbox = OutboxMailer(tmp_path / "outbox")
    for i in range(3):
        await outbox.send(MailMessage(to=f"p{i}@example.com", subject=f"s{i}", text="t", kind="invitation"))
    assert [m.to for m in read_outbox(tmp_path / "outbox")] == [f"p{i}@example.com" for i in range(3)]
    assert read_outbox(tmp_path / "missing") == []
    assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "outbox").iterdir())
