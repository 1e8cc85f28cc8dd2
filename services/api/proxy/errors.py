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

    __slots__ = ("status", "body")

    def __init__(self, status: int, message: str, type_: str, code: str | None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, code, param)


def invalid_api_key() -> ProxyError:
    return ProxyError(401, "Invalid or missing API key. Pass it as 'Authorization: Bearer <key>'.",
                      "invalid_request_error", "invalid_api_key")


def missing_scope(scope: str) -> ProxyError:
    return ProxyError(403, f"This credential lacks the '{scope}' scope.", "permission_error", "insufficient_scope")


def invalid_json(detail: str = "") -> ProxyError:
    msg = "We could not parse the JSON body of your request."
    if detail:
        msg += f" ({detail})"
    return ProxyError(400, msg, "invalid_request_error", "invalid_json")


def missing_model() -> ProxyError:
    return ProxyError(400, "You must provide a model parameter.", "invalid_request_error", "missing_model", "model")


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
