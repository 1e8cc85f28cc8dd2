"""A fake Scaleway API on 127.0.0.1: a real HTTP server the real SDK talks to over TCP.

It serves exactly the endpoints ``ScalewayCompute`` calls (Instance servers, actions, user data,
server types and availability, IPs; Block volumes), over the in-memory ``FakeScaleway``.

For tests:

- ``api.url`` to point the SDK at; ``api.fake`` the state (``inventory()``, ``publish_host_keys``,
  ``refuse_terminate``, ``timings``);
- ``api.fail_next(operation, fault, times=1)``: the next calls of an operation (names in
  ``ROUTES``) answer with ``fault``: ``Fault.internal()`` (JSON 500), ``Fault.html(503)``,
  ``Fault.rate_limited(retry_after)`` (bare 429), ``Fault.not_found()``, ``Fault.conflict()``,
  ``Fault.slow(seconds)`` (the normal answer, late), ``Fault.internal(after_effect=True)`` (do
  the operation, then answer 500: an outcome the client cannot see);
- ``api.calls``: every request as a ``Call`` (operation, method, path, query, status, time);
  ``api.count(operation)``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from . import scaleway_json as js
from .scaleway_state import ApiError, FakeScaleway, not_found

INSTANCE = r"^/instance/v1/zones/(?P<zone>[a-z0-9-]+)"
BLOCK = r"^/block/v1/zones/(?P<zone>[a-z0-9-]+)"
SERVER = INSTANCE + r"/servers/(?P<id>[^/]+)"

# (method, path pattern) -> operation name
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern + "$"), name) for method, pattern, name in [
        ("POST", INSTANCE + "/servers", "create_server"),
        ("GET", INSTANCE + "/servers", "list_servers"),
        ("GET", SERVER, "get_server"),
        ("DELETE", SERVER, "delete_server"),
        ("POST", SERVER + "/action", "server_action"),
        ("GET", SERVER + "/user_data", "list_user_data"),
        ("GET", SERVER + "/user_data/(?P<key>[^/]+)", "get_user_data"),
        ("PATCH", SERVER + "/user_data/(?P<key>[^/]+)", "set_user_data"),
        ("DELETE", SERVER + "/user_data/(?P<key>[^/]+)", "delete_user_data"),
        ("GET", INSTANCE + "/products/servers", "list_server_types"),
        ("GET", INSTANCE + "/products/servers/availability", "server_types_availability"),
        ("POST", INSTANCE + "/ips", "create_ip"),
        ("GET", INSTANCE + "/ips", "list_ips"),
        ("GET", INSTANCE + "/ips/(?P<id>[^/]+)", "get_ip"),
        ("PATCH", INSTANCE + "/ips/(?P<id>[^/]+)", "update_ip"),
        ("DELETE", INSTANCE + "/ips/(?P<id>[^/]+)", "delete_ip"),
        ("GET", BLOCK + "/volumes", "list_volumes"),
        ("GET", BLOCK + "/volumes/(?P<id>[^/]+)", "get_volume"),
        ("PATCH", BLOCK + "/volumes/(?P<id>[^/]+)", "update_volume"),
        ("DELETE", BLOCK + "/volumes/(?P<id>[^/]+)", "delete_volume"),
    ]
]


@dataclass(frozen=True)
class Fault:
    status: int | None = 500  # None: answer normally (after ``delay_s``)
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    after_effect: bool = False

    @classmethod
    def internal(cls, *, after_effect: bool = False) -> "Fault":
        return cls(500, b'{"message": "internal error", "type": "internal"}', after_effect=after_effect)

    @classmethod
    def html(cls, status: int = 503) -> "Fault":
        return cls(status, b"<html><body>upstream connect error or disconnect/reset before headers</body></html>",
                   "text/html")

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> "Fault":
        headers = (("x-envoy-ratelimited", "true"),)
        if retry_after is not None:
            headers += (("Retry-After", f"{retry_after:g}"),)
        return cls(429, b"", "text/plain", headers)

    @classmethod
    def not_found(cls, resource: str = "instance_server") -> "Fault":
        return cls(404, json.dumps({"type": "not_found", "message": "resource is not found",
                                    "resource": resource, "resource_id": "injected"}).encode())

    @classmethod
    def conflict(cls) -> "Fault":
        return cls(409, b'{"type": "conflict", "message": "resource is in a conflicting state"}')

    @classmethod
    def slow(cls, delay_s: float) -> "Fault":
        return cls(None, delay_s=delay_s)


@dataclass(frozen=True)
class Call:
    operation: str
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    at: float = field(default_factory=time.monotonic)


class FakeScalewayApi:
    def __init__(self, fake: FakeScaleway):
        self.fake = fake
        self.calls: list[Call] = []
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-scaleway", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeScalewayApi":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, operation: str, fault: Fault, times: int = 1) -> None:
        if operation not in {name for _, _, name in ROUTES}:
            raise ValueError(f"unknown operation {operation!r}")
        with self._lock:
            self._faults.setdefault(operation, []).extend([fault] * times)

    def count(self, operation: str) -> int:
        return sum(1 for call in self.calls if call.operation == operation)

    def calls_of(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.operation == operation]

    # --- serving ------------------------------------------------------------------------------

    def _take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            queued = self._faults.get(operation)
            return queued.pop(0) if queued else None

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[str, int, bytes, str, dict[str, str]]:
        split = urlsplit(raw_path)
        query = parse_qs(split.query, keep_blank_values=True)
        for route_method, pattern, operation in ROUTES:
            match = pattern.match(split.path)
            if match and route_method == method:
                break
        else:
            operation, match = "unknown", None
        fault = self._take_fault(operation) if match else None
        if fault is not None and not fault.after_effect:
            if fault.delay_s:
                self._stopping.wait(fault.delay_s)
            if fault.status is not None:
                return operation, fault.status, fault.body, fault.content_type, dict(fault.headers)
        if headers.get("x-auth-token") != self.fake.secret_key:
            status, payload, extra = 401, {"type": "denied_authentication", "method": "api_key",
                                           "reason": "not_found", "message": "authentication is denied"}, {}
        elif match is None:
            status, payload, extra = 404, {"type": "not_found", "message": f"no route {method} {split.path}"}, {}
        else:
            try:
                with self.fake.lock:
                    self.fake.advance()
                    status, payload, extra = getattr(_Handlers, operation)(self.fake, match.groupdict(), query,
                                                                           body)
            except ApiError as exc:
                status, payload, extra = exc.status, exc.body, exc.headers
        if fault is not None and fault.after_effect:  # done, but the client hears late or hears an error
            if fault.delay_s:
                self._stopping.wait(fault.delay_s)
            if fault.status is not None:
                return operation, fault.status, fault.body, fault.content_type, dict(fault.headers)
        if isinstance(payload, (bytes, type(None))):
            return operation, status, payload or b"", "text/plain", extra
        return operation, status, json.dumps(payload).encode(), "application/json", extra


def _json(body: bytes) -> dict[str, Any]:
    return json.loads(body or b"{}") or {}


class _Handlers:
    """One static method per operation: (fake, path params, query, raw body) -> (status, payload, headers).
    A ``bytes`` payload goes out as text/plain, ``None`` as an empty body."""

    @staticmethod
    def create_server(fake, p, q, body):
        return 201, {"server": js.render_server(fake, fake.create_server(p["zone"], _json(body)))}, {}

    @staticmethod
    def list_servers(fake, p, q, body):
        found = js.select_servers(fake, p["zone"], q)
        items = [js.render_server(fake, s) for s in js.page(found, q, "per_page")]
        return 200, {"servers": items}, {"X-Total-Count": str(len(found))}

    @staticmethod
    def get_server(fake, p, q, body):
        return 200, {"server": js.render_server(fake, fake.server(p["zone"], p["id"]))}, {}

    @staticmethod
    def delete_server(fake, p, q, body):
        fake.delete_server(p["zone"], p["id"])
        return 204, None, {}

    @staticmethod
    def server_action(fake, p, q, body):
        action = _json(body).get("action") or "poweron"
        fake.action(p["zone"], p["id"], action)
        return 202, {"task": {"id": f"task-{p['id'][:8]}", "description": f"server_{action}", "status": "pending",
                              "progress": 0, "started_at": js.iso(), "terminated_at": None,
                              "href_from": f"/servers/{p['id']}/action", "href_result": f"/servers/{p['id']}",
                              "zone": p["zone"]}}, {}

    @staticmethod
    def list_user_data(fake, p, q, body):
        return 200, {"user_data": sorted(fake.server(p["zone"], p["id"]).user_data)}, {}

    @staticmethod
    def get_user_data(fake, p, q, body):
        server = fake.server(p["zone"], p["id"])
        if p["key"] not in server.user_data:
            return 404, "", {}  # the real API answers a JSON empty string
        return 200, server.user_data[p["key"]], {}

    @staticmethod
    def set_user_data(fake, p, q, body):
        fake.server(p["zone"], p["id"]).user_data[p["key"]] = body
        return 204, None, {}

    @staticmethod
    def delete_user_data(fake, p, q, body):
        fake.server(p["zone"], p["id"]).user_data.pop(p["key"], None)
        return 204, None, {}

    @staticmethod
    def list_server_types(fake, p, q, body):
        names = js.page(sorted(fake.server_types), q, "per_page")
        return 200, {"servers": {n: fake.server_types[n] for n in names}}, {"X-Total-Count": str(len(fake.server_types))}

    @staticmethod
    def server_types_availability(fake, p, q, body):
        names = js.page(sorted(fake.availability), q, "per_page")
        return 200, {"servers": {n: {"availability": fake.availability[n]} for n in names},
                     "total_count": len(fake.availability)}, {}

    @staticmethod
    def create_ip(fake, p, q, body):
        return 201, {"ip": js.render_ip(fake, fake.create_ip(p["zone"], _json(body)))}, {}

    @staticmethod
    def list_ips(fake, p, q, body):
        found = js.select_ips(fake, p["zone"], q)
        return 200, {"ips": [js.render_ip(fake, ip) for ip in js.page(found, q, "per_page")]}, \
            {"X-Total-Count": str(len(found))}

    @staticmethod
    def get_ip(fake, p, q, body):
        return 200, {"ip": js.render_ip(fake, fake.ip(p["zone"], p["id"]))}, {}

    @staticmethod
    def update_ip(fake, p, q, body):
        ip, changes = fake.ip(p["zone"], p["id"]), _json(body)
        if "tags" in changes:
            ip.tags = list(changes["tags"] or [])
        if changes.get("server"):
            fake.server(p["zone"], changes["server"])
            ip.server_id = changes["server"]
        return 200, {"ip": js.render_ip(fake, ip)}, {}

    @staticmethod
    def delete_ip(fake, p, q, body):
        fake.delete_ip(p["zone"], p["id"])
        return 204, None, {}

    @staticmethod
    def list_volumes(fake, p, q, body):
        found = js.select_volumes(fake, p["zone"], q)
        return 200, {"volumes": [js.render_volume(v) for v in js.page(found, q, "page_size")],
                     "total_count": len(found)}, {}

    @staticmethod
    def get_volume(fake, p, q, body):
        return 200, js.render_volume(fake.volume(p["zone"], p["id"])), {}

    @staticmethod
    def update_volume(fake, p, q, body):
        volume, changes = fake.volume(p["zone"], p["id"]), _json(body)
        if "tags" in changes:
            volume.tags = list(changes["tags"] or [])
        if changes.get("name"):
            volume.name = changes["name"]
        if changes.get("size"):
            if int(changes["size"]) < volume.size:
                raise ApiError(400, {"type": "invalid_arguments", "message": "a volume can only grow"})
            volume.size = int(changes["size"])
        return 200, js.render_volume(volume), {}

    @staticmethod
    def delete_volume(fake, p, q, body):
        fake.delete_volume(p["zone"], p["id"])
        return 204, None, {}


def _handler_for(api: FakeScalewayApi) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real gateway

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            operation, status, payload, content_type, headers = api.respond(self.command, self.path, self.headers, body)
            split = urlsplit(self.path)
            # Logged before answering: a test that asserts right after the SDK returns sees the call.
            api.calls.append(Call(operation, self.command, split.path, parse_qs(split.query), status))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the call log is the record
            pass

    return Handler


__all__ = ["Call", "Fault", "FakeScalewayApi", "ROUTES", "not_found"]
