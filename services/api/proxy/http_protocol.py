"""uvicorn's httptools protocol, answering requests it cannot parse under ``/v1`` in OpenAI's error shape.

httptools refuses a request whose header values contain CR, LF or NUL (or that is otherwise
malformed) before any ASGI app runs, and uvicorn then answers a plain-text 400. For a request
whose target was already read and starts with ``/v1/`` this answers the same 400 as JSON
``{"error": {...}}``, so OpenAI clients can read it. Everything else is uvicorn's own answer.

    uvicorn.Config(app, http=OpenAIErrorHttpToolsProtocol, ...)
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import error_body

_BODY = error_body("Invalid HTTP request: malformed request line or header (header values must not contain "
                   "CR, LF or NUL).", "invalid_request_error", "invalid_request")


class OpenAIErrorHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        url = getattr(self, "url", b"") or b""
        if not url.startswith(b"/v1/"):
            super().send_400_response(msg)
            return
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(_BODY))
        self.transport.write(b"".join(head) + _BODY)
        self.transport.close()
