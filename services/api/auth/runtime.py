"""What identity holds per API process: settings, the mailer, throttles, background mail sends.

Built by ``identity_lifespan`` (mounted beside the main lifespan in ``app.py``) and kept on
``app.state.identity``. Mail is sent in background tasks so a response never waits on (or,
for a password reset, reveals anything through the timing of) an SMTP server.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Coroutine

import structlog
from litestar import Litestar, Request

from services.runtime.settings import RuntimeSettings

from ..mail import MailError, Mailer, MailMessage, build_mailer
from .ratelimit import LoginLimiter
from .settings import IdentitySettings

log = structlog.get_logger(__name__)


@dataclass
class IdentityRuntime:
    settings: IdentitySettings
    mailer: Mailer
    key_limiter: LoginLimiter
    """Failed API keys and invitation tokens, per client address."""
    reset_limiter: LoginLimiter
    """Password-reset mails, per e-mail address."""
    tasks: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the response, tracked so shutdown waits for it."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send_later(self, message: MailMessage) -> None:
        self.spawn(self._send(message))

    async def _send(self, message: MailMessage) -> None:
        try:
            await self.mailer.send(message)
            log.info("mail.sent", kind=message.kind)
        except MailError as exc:
            log.warning("mail.failed", kind=message.kind, error=str(exc))

    async def drain(self, timeout_s: float = 10.0) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout_s)


def build_runtime(settings: IdentitySettings, mailer: Mailer | None = None) -> IdentityRuntime:
    return IdentityRuntime(
        settings=settings,
        mailer=mailer or build_mailer(settings),
        key_limiter=LoginLimiter(settings.key_max_failures, settings.key_window_s),
        reset_limiter=LoginLimiter(settings.resets_per_email, settings.reset_window_s),
    )


def identity_lifespan(runtime_settings: RuntimeSettings, settings: IdentitySettings | None = None,
                      mailer: Mailer | None = None):
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = build_runtime(settings or IdentitySettings.from_env(runtime_settings.data_dir), mailer)
        app.state.identity = runtime
        try:
            yield
        finally:
            await runtime.drain()

    return lifespan


def identity(request: Request) -> IdentityRuntime:
    return request.app.state.identity
