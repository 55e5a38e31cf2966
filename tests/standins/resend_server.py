"""A stateful stand-in for Resend's `POST /emails`: records every request and can be told to fail.

Like Resend it honours the `Idempotency-Key` header: the same key with the same body answers the
first email's id and sends nothing new; the same key with another body is a 409
`invalid_idempotent_request`.

The real `resend` SDK talks to it over HTTP on 127.0.0.1 (an ephemeral port) through RESEND_API_URL.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class CapturedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int  # what the stand-in answered
    email_id: str | None = None
    replayed: bool = False  # answered from an earlier request with the same Idempotency-Key


@dataclass
class _Failure:
    status: int
    message: str
    name: str


@dataclass
class ResendStandIn:
    """Start with `start()`, stop with `stop()`; `url` is the value for RESEND_API_URL."""

    requests: list[CapturedRequest] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _keys: dict[str, tuple[Any, str | None]] = field(default_factory=dict)  # key -> (first body, its id)
    _hold: str = ""  # "" | "before" (the request waits, nothing accepted) | "after" (accepted, answer waits)
    _released: threading.Event = field(default_factory=threading.Event)
    held: int = 0  # requests waiting right now
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- control ---

    def fail_next(
        self, count: int = 1, status: int = 500, message: str = "Internal server error", name: str = ""
    ) -> None:
        """Answer the next `count` requests with `status` and Resend's error body."""
        default_name = {
            400: "validation_error",
            401: "missing_api_key",
            403: "invalid_api_key",
            422: "validation_error",
            429: "rate_limit_exceeded",
        }.get(status, "internal_server_error")
        with self._lock:
            self._failures.extend(_Failure(status, message, name or default_name) for _ in range(count))

    def hold(self, when: str) -> None:
        """Make every next request wait until `release()`: `before` accepting it (the email is not
        sent) or `after` (sent, but the client has no answer): a client killed meanwhile never knows."""
        assert when in ("before", "after")
        self._released.clear()
        self._hold = when

    def release(self) -> None:
        self._hold = ""
        self._released.set()

    def _wait_if_held(self, when: str) -> None:
        if self._hold != when:
            return
        with self._lock:
            self.held += 1
        self._released.wait(60)
        with self._lock:
            self.held -= 1

    @property
    def emails(self) -> list[Any]:
        """The JSON bodies of the emails the stand-in accepted (2xx), in order."""
        return [r.json for r in self.requests if r.status < 300 and r.path == "/emails" and not r.replayed]

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._keys.clear()

    # --- lifecycle ---

    def start(self) -> ResendStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                standin._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                standin._reply(self, 404, {"statusCode": 404, "name": "not_found", "message": "Not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="resend-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- request handling ---

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            captured = CapturedRequest("POST", handler.path, headers, body, failure.status)
            payload = {"statusCode": failure.status, "name": failure.name, "message": failure.message}
        elif handler.path != "/emails":
            captured = CapturedRequest("POST", handler.path, headers, body, 404)
            payload = {"statusCode": 404, "name": "not_found", "message": "Not found"}
        elif not headers.get("authorization", "").startswith("Bearer re_"):
            captured = CapturedRequest("POST", handler.path, headers, body, 401)
            payload = {"statusCode": 401, "name": "missing_api_key", "message": "Missing API key"}
        else:
            self._wait_if_held("before")
            captured, payload = self._accept(handler.path, headers, body)
            if captured.status == 200 and not captured.replayed:
                with self._lock:
                    self.requests.append(captured)
                self._wait_if_held("after")
                self._reply(handler, captured.status, payload)
                return
        with self._lock:
            self.requests.append(captured)
        self._reply(handler, captured.status, payload)

    def _accept(self, path: str, headers: dict[str, str], body: Any) -> tuple[CapturedRequest, Any]:
        key = headers.get("idempotency-key")
        with self._lock:
            seen = self._keys.get(key) if key else None
            if key and seen is None:
                email_id = str(uuid.uuid4())
                self._keys[key] = (body, email_id)
                return CapturedRequest("POST", path, headers, body, 200, email_id), {"id": email_id}
        if seen is None:
            email_id = str(uuid.uuid4())
            return CapturedRequest("POST", path, headers, body, 200, email_id), {"id": email_id}
        first_body, first_id = seen
        if first_body != body:
            error = {
                "statusCode": 409,
                "name": "invalid_idempotent_request",
                "message": "Same idempotency key used with a different request payload.",
            }
            return CapturedRequest("POST", path, headers, body, 409), error
        return CapturedRequest("POST", path, headers, body, 200, first_id, replayed=True), {"id": first_id}

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(OSError):  # the client may be gone (killed while we held its answer)
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
