"""Errors as RFC 9457 problem+json (OpenAI's error shape under ``/v1/*``), never with a stack trace.

Handlers raise :class:`Problem` (or Litestar's HTTP exceptions); every other exception becomes a
generic 500 whose body carries only the request id to quote to an operator.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://inventiv.dev/problems/"

# msgspec's messages name the field in backticks; Litestar keeps only the message and a key.
_FIELD_IN_MESSAGE = re.compile(r"(?:unknown|missing required) field `([^`]+)`")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


class Problem(HTTPException):
    """An error the client can act on. ``errors`` lists ``{field, message}`` pairs."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        type_: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.type_ = type_
        self.errors = errors or []


def field_error(field: str, message: str, *, status_code: int = 422, type_: str = "validation") -> Problem:
    return Problem(status_code, f"{field}: {message}", type_=type_, errors=[{"field": field, "message": message}])


class ReadModelUnavailable(Exception):
    """The read-model tables are missing (projector not started yet, or mid-swap)."""


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _validation_errors(exc: ValidationException) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    extra = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        field = str(item.get("key", "") or "")
        named = _FIELD_IN_MESSAGE.search(message)
        at = _AT_PATH.search(message)
        if named:
            prefix = at.group(1) if at and at.group(1) else ""
            field = f"{prefix}.{named.group(1)}" if prefix else named.group(1)
        elif at and at.group(1):
            field = at.group(1)
        if field == "data" or not field:
            field = "body"
        # Litestar reports an empty body as a KeyError message "'data'".
        if message == "'data'":
            message = "a JSON body is required"
        message = _AT_PATH.sub("", message)
        if "matching regex" in message:
            message = "contains characters that are not allowed here"
        source = item.get("source", "")
        out.append({"field": field, "message": message, "source": str(getattr(source, "value", source) or "")})
    return out


def _openai_error(status: int, message: str, code: str | None) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status in (401, 403):
        kind = "authentication_error" if status == 401 else "permission_error"
    return Response(
        content={"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
        media_type="application/json",
    )


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if request.url.path.startswith("/v1/"):
        return _openai_error(status, detail, type_)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_ if type_ else "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    if errors:
        body["errors"] = errors
    return Response(content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, Problem):
        return problem_response(request, status, exc.detail, type_=exc.type_, errors=exc.errors, headers=headers)
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(request, 422, detail, type_="validation", errors=errors, headers=headers)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else _title(status)
    type_ = None
    if status == 400 and ("JSON" in detail or "truncated" in detail.lower()):
        type_, detail = "malformed-body", f"body: {detail}"
    elif status == 413:
        type_, detail = "body-too-large", "the request body is larger than this endpoint accepts"
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="inventiv"')
    return problem_response(request, status, detail, type_=type_, headers=headers)


def handle_read_model_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("api.read_model_unavailable", error=str(exc), path=request.url.path)
    return problem_response(request, 503, "the read model is being built; retry shortly",
                            type_="read-model-unavailable", headers={"Retry-After": "2"})


def handle_internal_error(request: Request, exc: Exception) -> Response:
    log.error("api.unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
    return problem_response(request, 500, "internal error; quote the request id to an operator", type_="internal")


EXCEPTION_HANDLERS = {
    HTTPException: handle_http_exception,
    ReadModelUnavailable: handle_read_model_unavailable,
    asyncpg.UndefinedTableError: handle_read_model_unavailable,
    Exception: handle_internal_error,
}
