"""Identity settings (mail, one-time tokens, throttles), read from the environment once."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from services.runtime.settings import env_float, env_int


def _secret_from_env(name: str) -> str | None:
    """``NAME`` or the content of the file named by ``NAME_FILE`` (for container secrets)."""
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if not value and path:
        value = Path(path).read_text().strip()
    return value or None


class IdentitySettings(msgspec.Struct, frozen=True, kw_only=True):
    public_url: str = "http://127.0.0.1:8003"
    """Base URL of the web UI, used in links that mails carry."""
    outbox_dir: Path = Path(".inventiv/outbox")
    """Where mails go when no SMTP server is configured (one JSON file per message)."""
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_timeout_s: float = 10.0
    mail_from: str = "Inventiv <no-reply@inventiv.local>"
    password_reset_ttl_s: int = 3600
    resets_per_email: int = 5
    """Password-reset mails per address and ``reset_window_s`` (more are silently not sent)."""
    reset_window_s: int = 3600
    key_max_failures: int = 20
    """Failed API-key or invitation-token attempts per client address within ``key_window_s`` before 429."""
    key_window_s: int = 60
    read_your_writes_s: float = 5.0
    """How long a write waits for the read model to show it before answering (0: do not wait)."""

    @classmethod
    def from_env(cls, data_dir: Path) -> "IdentitySettings":
        return cls(
            public_url=os.environ.get("INVENTIV_PUBLIC_URL", "http://127.0.0.1:8003"),
            outbox_dir=Path(os.environ.get("INVENTIV_MAIL_OUTBOX_DIR") or data_dir / "outbox"),
            smtp_host=os.environ.get("INVENTIV_SMTP_HOST") or None,
            smtp_port=env_int("INVENTIV_SMTP_PORT", 587),
            smtp_username=os.environ.get("INVENTIV_SMTP_USERNAME") or None,
            smtp_password=_secret_from_env("INVENTIV_SMTP_PASSWORD"),
            smtp_starttls=os.environ.get("INVENTIV_SMTP_STARTTLS", "1").lower() in ("1", "true", "yes", "on"),
            smtp_timeout_s=env_float("INVENTIV_SMTP_TIMEOUT_S", 10.0),
            mail_from=os.environ.get("INVENTIV_MAIL_FROM", "Inventiv <no-reply@inventiv.local>"),
            password_reset_ttl_s=env_int("INVENTIV_PASSWORD_RESET_TTL_S", 3600),
            resets_per_email=env_int("INVENTIV_RESETS_PER_EMAIL", 5),
            reset_window_s=env_int("INVENTIV_RESET_WINDOW_S", 3600),
            key_max_failures=env_int("INVENTIV_KEY_MAX_FAILURES", 20),
            key_window_s=env_int("INVENTIV_KEY_WINDOW_S", 60),
            read_your_writes_s=env_float("INVENTIV_READ_YOUR_WRITES_S", 5.0),
        )
