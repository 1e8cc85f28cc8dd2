"""SMTP adapter: ``smtplib`` (standard library) in a worker thread, with a timeout, STARTTLS optional."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from . import MailError, MailMessage


def to_email(message: MailMessage, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail.set_content(message.text)
    return mail


class SmtpMailer:
    def __init__(self, *, host: str, port: int = 587, sender: str, username: str | None = None,
                 password: str | None = None, starttls: bool = True, timeout_s: float = 10.0) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s

    def _send_blocking(self, message: MailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
            smtp.ehlo()
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(to_email(message, self._sender))

    async def send(self, message: MailMessage) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._send_blocking, message), self._timeout_s * 2)
        except (OSError, smtplib.SMTPException, asyncio.TimeoutError) as exc:
            # The exception text names the server's reply, never the message body (it may hold a token).
            raise MailError(f"SMTP delivery to {self._host}:{self._port} failed: {type(exc).__name__}") from None
