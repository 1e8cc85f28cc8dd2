"""Outgoing mail through one port: ``Mailer.send(MailMessage)``.

Two adapters: :class:`~services.api.mail.smtp.SmtpMailer` (a real SMTP server, standard
library ``smtplib`` in a worker thread) and :class:`~services.api.mail.outbox.OutboxMailer`
(one JSON file per message in a directory the tests and the dev stack read; ``inventiv up``
uses it unless SMTP is configured). ``build_mailer`` picks one from the settings.
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class MailMessage(msgspec.Struct, frozen=True, kw_only=True):
    to: str
    subject: str
    text: str
    # What the message is for (``password_reset``, ``invitation``): lets readers of the outbox filter.
    kind: str = "notice"


class MailError(Exception):
    """The message could not be handed over (connection refused, rejected recipient...)."""


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> None:
        """Hand the message over for delivery; raises ``MailError`` when that fails."""
        ...


def build_mailer(settings) -> Mailer:
    """SMTP when ``settings.smtp_host`` is set, else the outbox directory."""
    from .outbox import OutboxMailer
    from .smtp import SmtpMailer

    if settings.smtp_host:
        return SmtpMailer(host=settings.smtp_host, port=settings.smtp_port, sender=settings.mail_from,
                          username=settings.smtp_username, password=settings.smtp_password,
                          starttls=settings.smtp_starttls, timeout_s=settings.smtp_timeout_s)
    return OutboxMailer(settings.outbox_dir)


__all__ = ["MailError", "MailMessage", "Mailer", "build_mailer"]
