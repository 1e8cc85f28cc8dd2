"""The official SDK, made safe to call from worker threads (scaleway.md §0.2, §6).

What the SDK 2.12 does not do, and this module adds:

- **Timeouts and keep-alive.** The SDK calls the module-level ``requests.request`` with no
  timeout and a new connection every time. ``scaleway_core.api.requests`` is replaced, once, by
  a shim that routes the requests of *our* API objects to a shared ``requests.Session`` with
  ``(connect, read)`` timeouts; any other user of the SDK in the process is left untouched.
- **Errors with their status.** ``_throw_on_error`` calls ``res.json()``: a bare 429 or an HTML
  503 surfaces as a ``JSONDecodeError`` with the status lost. Our subclasses raise
  ``ScalewayException`` for every answer >= 400, JSON or not.
- **Classified errors, bounded retries.** ``ScalewayClient.call`` turns every failure into the
  port's vocabulary and retries idempotent requests on 5xx, timeouts and short 429s (full
  jitter, ``Retry-After`` honoured). A create is never retried blindly: its caller looks up by
  tag first.
- **No request bodies in logs.** At DEBUG the SDK logs bodies (cloud-init included); its logger
  is held at INFO or above.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, TypeVar

import requests
import scaleway_core.api as sdk_api
import structlog
from requests.adapters import HTTPAdapter
from scaleway.block.v1 import BlockV1API
from scaleway.instance.v1.custom_api import InstanceUtilsV1API
from scaleway_core.api import ScalewayException, ValidationError
from scaleway_core.client import Client

from ...ports import NotFound, RateLimited, Transient
from .errors import classify_exception
from .settings import ScalewayConfigError, ScalewaySettings

log = structlog.get_logger(__name__)

T = TypeVar("T")


# --- transport ----------------------------------------------------------------------------


class _Transport:
    def __init__(self, session: requests.Session, timeout: tuple[float, float]):
        self.session = session
        self.timeout = timeout


_current = threading.local()


class _RequestsShim:
    """Stands in for the ``requests`` module inside ``scaleway_core.api``."""

    def __init__(self, real: Any):
        self._real = real

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        transport: _Transport | None = getattr(_current, "transport", None)
        if transport is None:  # an SDK object that is not ours: behave exactly as before
            return self._real.request(method, url, **kwargs)
        kwargs.setdefault("timeout", transport.timeout)
        return transport.session.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_install_lock = threading.Lock()


def _install_shim() -> None:
    with _install_lock:
        if not isinstance(sdk_api.requests, _RequestsShim):
            sdk_api.requests = _RequestsShim(sdk_api.requests)  # type: ignore[assignment]


class _Fixed:
    """Mixin for SDK API classes: our transport, and errors that keep their status."""

    _transport: _Transport

    def _request(self, *args: Any, **kwargs: Any) -> requests.Response:
        previous = getattr(_current, "transport", None)
        _current.transport = self._transport
        try:
            return super()._request(*args, **kwargs)  # type: ignore[misc]
        finally:
            _current.transport = previous

    def _throw_on_error(self, res: requests.Response) -> None:
        if res.status_code is None or res.status_code < 400:
            return
        try:
            data = res.json()
        except ValueError:
            raise ScalewayException(res) from None
        if isinstance(data, dict) and data.get("message") == "Validation Error" and isinstance(data.get("fields"), dict):
            raise ValidationError(res, data["fields"])
        raise ScalewayException(res)


class InstanceAPI(_Fixed, InstanceUtilsV1API):
    pass


class BlockAPI(_Fixed, BlockV1API):
    pass


# --- retry policy (pure) ------------------------------------------------------------------


def retry_delay_s(error: Exception, attempt: int, base_s: float, rng: random.Random, cap_s: float = 8.0) -> float:
    """How long to wait before attempt ``attempt + 1``: ``Retry-After`` when the API gave one,
    else full jitter on an exponential curve (``attempt`` counts from 1)."""
    if isinstance(error, RateLimited) and error.retry_after_s is not None:
        return error.retry_after_s
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** (attempt - 1))))


# --- the client ---------------------------------------------------------------------------


class ScalewayClient:
    def __init__(self, settings: ScalewaySettings, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None):
        _install_shim()
        _quiet_sdk_logger()
        self.settings = settings
        self.sdk_client = Client(
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            default_project_id=settings.project_id,
            default_zone=settings.default_zone,
            api_url=settings.api_url,
        )
        try:
            self.sdk_client.validate()  # malformed keys, ids, zone or URL: fail at start-up
        except ValueError as exc:
            # The SDK quotes the offending value: a mistyped secret would land in the logs.
            raise ScalewayConfigError(f"Scaleway settings rejected: {_redact(str(exc), settings)}") from None
        self.session = requests.Session()
        pool = HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self.session.mount("https://", pool)
        self.session.mount("http://", pool)
        transport = _Transport(self.session, (settings.connect_timeout_s, settings.read_timeout_s))
        self.instance = InstanceAPI(self.sdk_client)
        self.instance._transport = transport
        self.block = BlockAPI(self.sdk_client)
        self.block._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()

    def call(self, operation: str, fn: Callable[..., T], *args: Any, retry: bool = True, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with every failure classified; retried when ``retry`` (idempotent
        requests only) on Transient errors, within ``max_attempts`` and ``max_inline_wait_s``."""
        attempts = self.settings.max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified right below
                error = classify_exception(exc)
                if not isinstance(error, Transient) or attempt == attempts:
                    # A 404 is an everyday answer (confirming a deletion), not news.
                    emit = log.debug if isinstance(error, NotFound) else log.info
                    emit("scaleway.call_failed", operation=operation, error_kind=error.kind, error=str(error),
                         attempt=attempt)
                    raise error from exc
                delay = retry_delay_s(error, attempt, self.settings.retry_base_s, self._rng)
                if delay > self.settings.max_inline_wait_s:
                    raise error from exc  # too long to hold a thread: the handler reschedules
                log.info("scaleway.call_retry", operation=operation, error_kind=error.kind, delay_s=round(delay, 3),
                         attempt=attempt)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.session.close()


def _quiet_sdk_logger() -> None:
    sdk_logger = logging.getLogger("scaleway")
    if sdk_logger.getEffectiveLevel() < logging.INFO:
        # At DEBUG the SDK prints request bodies, cloud-init included (reliability.md §4.5).
        sdk_logger.setLevel(logging.INFO)


def _redact(message: str, settings: ScalewaySettings) -> str:
    for secret in (settings.secret_key, settings.access_key):
        if secret:
            message = message.replace(secret, "***")
    return message
