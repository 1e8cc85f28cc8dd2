"""OpenAI-shaped error bodies: ``{"error": {"message", "type", "param", "code"}}``.

Messages never echo credentials, upstream addresses or internal ids.
"""

from __future__ import annotations

import msgspec

_encoder = msgspec.json.Encoder()


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return _encoder.encode({"error": {"message": message, "type": type_, "param": param, "code": code}})


def sse_error_event(message: str, code: str) -> bytes:
    """The event that ends a stream that failed after its first byte (the openai client raises on it)."""
    return b"data: " + error_body(message, "server_error", code) + b"\n\n"


class ProxyError(Exception):
    """An error answered to the client as-is."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, message: str, type_: str, code: str | None, param: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, code, param)
        self.headers = headers  # extra response headers (Retry-After)


def invalid_api_key() -> ProxyError:
    return ProxyError(401, "Invalid or missing API key. Pass it as 'Authorization: Bearer <key>'.",
                      "invalid_request_error", "invalid_api_key")


def cross_origin() -> ProxyError:
    return ProxyError(403, "The session cookie is not accepted on a request from another origin; send an API key "
                           "in the Authorization header.", "permission_error", "cross_origin_request")


def missing_scope(scope: str) -> ProxyError:
    return ProxyError(403, f"This credential lacks the '{scope}' scope.", "permission_error", "insufficient_scope")


def invalid_json(detail: str = "") -> ProxyError:
    msg = "We could not parse the JSON body of your request."
    if detail:
        msg += f" ({detail})"
    return ProxyError(400, msg, "invalid_request_error", "invalid_json")


def missing_model() -> ProxyError:
    return ProxyError(400, "You must provide a model parameter.", "invalid_request_error", "missing_model", "model")


def invalid_value(message: str, param: str | None) -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", "invalid_value", param)


def non_finite_number() -> ProxyError:
    return ProxyError(400, "Numbers in the request body must be finite: NaN, Infinity and values beyond "
                      "the range of a double (such as 1e999) are not accepted.", "invalid_request_error",
                      "non_finite_number")


def invalid_header(name: bytes) -> ProxyError:
    shown = name[:64].decode("latin-1")
    return ProxyError(400, f"The value of the header '{shown}' contains a control character (CR, LF or NUL).",
                      "invalid_request_error", "invalid_header")


def rate_limited(limit: int, retry_after_s: int) -> ProxyError:
    return ProxyError(429, f"Rate limit reached for this API key: {limit} requests per minute. "
                      f"Retry in {retry_after_s} s.", "requests", "rate_limit_exceeded",
                      headers=[(b"retry-after", str(retry_after_s).encode())])


def too_many_concurrent(limit: int, retry_after_s: int) -> ProxyError:
    return ProxyError(429, f"Too many concurrent requests for this API key: at most {limit} at a time.",
                      "requests", "concurrency_limit_exceeded",
                      headers=[(b"retry-after", str(retry_after_s).encode())])


def model_not_found(model: str) -> ProxyError:
    shown = model if len(model) <= 200 else model[:200] + "…"
    return ProxyError(404, f"The model '{shown}' does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found", "model")


def no_ready_worker(model: str) -> ProxyError:
    shown = model if len(model) <= 200 else model[:200] + "…"
    return ProxyError(503, f"No ready worker is serving '{shown}' right now; retry shortly.",
                      "server_error", "no_ready_worker", "model")


def too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"Request body is larger than {limit} bytes.", "invalid_request_error", "request_too_large")


def not_found() -> ProxyError:
    return ProxyError(404, "Unknown endpoint.", "invalid_request_error", "unknown_url")


def method_not_allowed() -> ProxyError:
    return ProxyError(405, "Method not allowed.", "invalid_request_error", "method_not_allowed")


def upstream_failed() -> ProxyError:
    return ProxyError(502, "The model worker failed to answer; please retry.", "server_error", "upstream_error")


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "The model worker did not answer in time.", "server_error", "upstream_timeout")


def internal_error() -> ProxyError:
    return ProxyError(500, "Internal error in the proxy.", "server_error", "internal_error")
