"""Classify Scaleway answers into the port's error vocabulary (scaleway.md §6).

``classify_response(status, body, headers)`` is pure: the decision is made on the status, the
JSON ``type`` and message (not the status alone: a precondition arrives as 400 or 412, out of
stock as 412 or 503). ``classify_exception`` pulls those facts out of whatever the SDK or
``requests`` raised. Only a 404 becomes ``NotFound``: a 401, a 5xx or a timeout says nothing
about whether a resource exists.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import requests

from ...ports import ComputeError, Conflict, NotFound, Permanent, RateLimited, Transient


class OutOfStock(Permanent):
    """No capacity for this type in this zone now: retrying the same placement soon will not help
    (another zone or type might). ``kind`` stays "permanent" for the core."""


# Types the API uses when the resource's state forbids the operation now.
_STATE_TYPES = frozenset({"precondition_failed", "transient_state", "conflict", "locked", "resource_locked"})
_STATE_PHRASES = ("precondition failed", "still in use", "should be powered off", "should be running",
                  "should be stopped", "transient state", "is in use")
_STOCK_TYPES = frozenset({"out_of_stock"})


def classify_response(status: int, body: Any, headers: Mapping[str, str] | None = None,
                      *, now: datetime | None = None) -> ComputeError:
    """The port error for an HTTP error answer. ``body`` is the decoded JSON (or the raw text)."""
    headers = headers or {}
    kind, message = _describe(body)
    summary = f"scaleway {status}" + (f" {kind}" if kind else "") + (f": {message}" if message else "")
    if status == 404:
        return NotFound(summary)
    if status == 429:
        return RateLimited(summary, retry_after_s=retry_after_s(headers, body, now=now))
    if kind in _STOCK_TYPES:
        return OutOfStock(summary)
    if status >= 500 or status in (408, 425):
        return Transient(summary)  # whatever the body says: the gateway or the API failed, not our request
    if status in (409, 412, 423) or kind in _STATE_TYPES or _mentions_state(message):
        return Conflict(summary)
    return Permanent(summary)  # 400 invalid arguments, 401 bad key, 403 quota / permissions, ...


def classify_exception(exc: BaseException) -> ComputeError:
    """The port error for anything raised while talking to Scaleway."""
    if isinstance(exc, ComputeError):
        return exc
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return classify_response(status, _body_of(response), dict(getattr(response, "headers", {}) or {}))
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return Transient(f"scaleway unreachable: {type(exc).__name__}")
    if isinstance(exc, requests.RequestException):
        # Includes a 2xx whose body is not JSON (a proxy page): the outcome is unknown.
        return Transient(f"scaleway answered something unreadable: {type(exc).__name__}")
    if isinstance(exc, (TypeError, KeyError, ValueError)):
        # An answer the SDK could not unmarshal: unknown outcome, retry after a look.
        return Transient(f"scaleway answer not understood: {type(exc).__name__}: {exc}")
    return Transient(f"{type(exc).__name__}: {exc}")


def retry_after_s(headers: Mapping[str, str], body: Any = None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), else the JSON ``reset_seconds``."""
    raw = _header(headers, "retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
    if isinstance(body, dict):
        reset = body.get("reset_seconds")
        if isinstance(reset, (int, float)) and not isinstance(reset, bool) and reset >= 0:
            return float(reset)
    return None


# --- helpers ------------------------------------------------------------------------------


def _describe(body: Any) -> tuple[str, str]:
    if isinstance(body, dict):
        kind = str(body.get("type") or "")
        message = str(body.get("message") or body.get("help_message") or "")
        if body.get("precondition"):
            message = f"{message} ({body['precondition']})".strip()
        return kind, message[:300]
    if isinstance(body, str):
        return "", body.strip()[:200]
    return "", ""


def _mentions_state(message: str) -> bool:
    lowered = message.lower()
    return any(phrase in lowered for phrase in _STATE_PHRASES)


def _body_of(response: Any) -> Any:
    text = getattr(response, "text", "") or ""
    try:
        return json.loads(text) if text else ""
    except ValueError:
        return text


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
