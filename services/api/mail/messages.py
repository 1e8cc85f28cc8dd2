"""The mails identity sends: password reset and invitation (plain text, no tracking)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from . import MailMessage


def password_reset(*, to: str, public_url: str, token: str, expires_at: datetime) -> MailMessage:
    link = f"{public_url.rstrip('/')}/reset-password?token={quote(token)}"
    text = (
        "Someone asked to reset the password of your Inventiv account.\n\n"
        f"To choose a new password, open this link before {expires_at:%Y-%m-%d %H:%M} UTC:\n\n{link}\n\n"
        "The link works once. If you did not ask for it, ignore this message: your password is unchanged.\n"
    )
    return MailMessage(to=to, subject="Reset your Inventiv password", text=text, kind="password_reset")


def invitation(*, to: str, public_url: str, token: str, organization: str, role: str,
               expires_at: datetime) -> MailMessage:
    link = f"{public_url.rstrip('/')}/invitations/{quote(token)}"
    text = (
        f"You are invited to join {organization} on Inventiv as {role}.\n\n"
        f"Sign in with this e-mail address and accept before {expires_at:%Y-%m-%d %H:%M} UTC:\n\n{link}\n"
    )
    return MailMessage(to=to, subject=f"Invitation to {organization} on Inventiv", text=text, kind="invitation")
