"""The embedded Stripe webhook endpoint: a small threaded HTTP server over services.payments.webhooks.

Bounded on purpose: a body limit checked before reading, per-connection socket timeouts, a cap on
connections and on requests in progress (503 beyond it), and a graceful stop that finishes the
requests in flight. One access-log line per request; never a header value or a body.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from services.payments import webhooks

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger("codex.webhooks.server")
access_log = logging.getLogger("codex.webhooks.access")

SERVICE = "codex-webhooks"
WEBHOOK_PATH = "/webhooks/stripe/payment"
HEALTH_PATH = "/health"
ROUTES = {HEALTH_PATH: "GET", WEBHOOK_PATH: "POST"}
MAX_BODY_BYTES = 1024 * 1024


class WebhookServer(ThreadingHTTPServer):
    """Threaded HTTP server for Stripe's payment webhooks; `stop()` drains in-flight requests."""

    daemon_threads = True  # we join handler threads ourselves, with a deadline, in stop()
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        container: Container,
        *,
        secret: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        connection_timeout: float = 10.0,
        max_concurrent_requests: int = 64,
        max_connections: int = 256,
        busy_wait: float = 0.5,
        drain_timeout: float = 30.0,
    ) -> None:
        self.container = container
        self.secret = container.settings.stripe_webhook_secret_payment if secret is None else secret
        self.max_body_bytes = max_body_bytes
        self.connection_timeout = connection_timeout
        self.max_connections = max_connections
        self.busy_wait = busy_wait
        self.drain_timeout = drain_timeout
        self.requests = threading.BoundedSemaphore(max_concurrent_requests)
        self.stopping = False
        self._lock = threading.Lock()
        self._connections: dict[WebhookRequestHandler, bool] = {}  # handler -> busy
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, WebhookRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.server_address[0]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{self.port}"

    # --- connections ---

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._conn_threads) >= self.max_connections
        if full:
            _refuse(request, "too many connections")
            access_log.info('%s "- -" 503 - - busy 0.0ms', client_address[0])
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True, name="webhook-conn"
        )
        with self._lock:
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one broken connection must not stop the server
            log.exception("connection from %s failed", client_address[0])
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._conn_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection from %s failed", client_address[0])

    def track(self, handler: WebhookRequestHandler, busy: bool) -> bool:
        """Record whether a connection is handling a request; False when a new request must not start."""
        with self._lock:
            if self.stopping and (busy or handler not in self._connections):
                return False
            self._connections[handler] = busy
            return True

    @property
    def requests_in_flight(self) -> int:
        """Requests started and not finished (their after-answer work, like the receipt, included)."""
        with self._lock:
            return sum(1 for busy in self._connections.values() if busy)

    def untrack(self, handler: WebhookRequestHandler) -> None:
        with self._lock:
            self._connections.pop(handler, None)

    # --- stopping ---

    def stop(self) -> bool:
        """Stop accepting, close idle keep-alive connections, wait for requests in flight.

        Returns True when every in-flight request finished within `drain_timeout`.
        """
        self.shutdown()  # serve_forever returns; no new connection is accepted after this
        self.socket.close()
        with self._lock:
            self.stopping = True
            idle = [h for h, busy in self._connections.items() if not busy]
            threads = list(self._conn_threads)
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + self.drain_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in threads)
        if not drained:
            log.warning("stopped with requests still running after %.0fs", self.drain_timeout)
        return drained


def _refuse(request: Any, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        request.settimeout(1.0)
        request.sendall(head + body)
    except OSError:
        pass


class WebhookRequestHandler(BaseHTTPRequestHandler):
    """Routes: GET /health, POST /webhooks/stripe/payment; everything else 404/405."""

    server: WebhookServer
    protocol_version = "HTTP/1.1"
    server_version = SERVICE
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.connection_timeout  # type: ignore[misc]  # per connection, by design
        super().setup()

    def handle(self) -> None:
        self.close_connection = True
        if not self.server.track(self, busy=False):
            return  # accepted just as the listener began to stop
        try:
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        finally:
            self.server.untrack(self)

    def handle_one_request(self) -> None:
        self._started = self._answered = 0.0
        self._status = 0
        self._event_id = "-"
        self._event_type = "-"
        self._outcome = "-"
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:  # idle timeout, reset, or closed by stop()
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        self._started = time.perf_counter()
        if not self.server.track(self, busy=True):
            self.close_connection = True  # stopping: this request never started; the client retries
            return
        try:
            self._handle_request()
        except TimeoutError:
            self._outcome = "timeout"
            self.close_connection = True
        except OSError:
            self._outcome = "disconnected"
            self.close_connection = True
        finally:
            self.server.track(self, busy=False)
            self._log_access()

    def _handle_request(self) -> None:
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        if not self.parse_request():
            if self._outcome == "-":
                self._outcome = "bad-request"
            return
        path = self.path.split("?", 1)[0]
        allowed = ROUTES.get(path)
        if allowed is None:
            self._finish_without_body(HTTPStatus.NOT_FOUND, {"error": "not found"}, "not-found")
        elif self.command != allowed:
            self._finish_without_body(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"method not allowed; use {allowed}"},
                "method-not-allowed",
                {"Allow": allowed},
            )
        elif not self.server.requests.acquire(timeout=self.server.busy_wait):
            self._finish_without_body(
                HTTPStatus.SERVICE_UNAVAILABLE, {"error": "busy; retry later"}, "busy", {"Retry-After": "1"}
            )
        else:
            try:
                self._health() if path == HEALTH_PATH else self._webhook()
            finally:
                self.server.requests.release()
        if self.server.stopping:
            self.close_connection = True

    # --- routes ---

    def _health(self) -> None:
        reason = webhooks.check_database(self.server.container)
        if reason is None:
            self._outcome = "healthy"
            self._send_json(HTTPStatus.OK, {"status": "ok", "service": SERVICE})
        else:
            self._outcome = "unhealthy"
            self._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"status": "unavailable", "service": SERVICE, "reason": reason},
            )

    def _webhook(self) -> None:
        length = self._content_length()
        if length is None:
            return
        if length > self.server.max_body_bytes:
            self._outcome = "too-large"
            self._send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body over {self.server.max_body_bytes} bytes"},
                close=True,
            )
            self._discard_body()
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            self._outcome = "truncated"
            return
        try:
            webhooks.verify_signature(body, self.headers.get("Stripe-Signature"), self.server.secret)
            event = webhooks.parse_event(body)
        except (webhooks.InvalidSignature, webhooks.MalformedEvent) as exc:
            self._outcome = "bad-signature" if isinstance(exc, webhooks.InvalidSignature) else "malformed"
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._event_id, self._event_type = event["id"], event["type"]
        try:
            outcome = webhooks.process_event(self.server.container, body, event, defer_receipt=True)
        except webhooks.WebhookHandlingFailed as exc:
            self._outcome = "failed"
            log.error("%s", exc)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "handler failed; retry later"})
            return
        except Exception as exc:  # noqa: BLE001 - anything else: Stripe must retry
            if webhooks._is_db_unavailable(exc):
                self._outcome = "db-unavailable"
                log.error("event %s: database unavailable", self._event_id)
                self._send_json(
                    HTTPStatus.SERVICE_UNAVAILABLE, {"error": "database unavailable; retry later"}
                )
            else:
                self._outcome = "error"
                log.error("event %s: unexpected %s", self._event_id, type(exc).__name__)
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; retry later"})
            return
        self._outcome = outcome.outcome
        if outcome.outcome == "processed":
            self._outcome += ":" + outcome.action.split(" ", 1)[0].rstrip(";")
        try:
            self._send_json(HTTPStatus.OK, {"received": True, "outcome": outcome.outcome})
        finally:
            # The purchase is committed and Stripe has its answer; the receipt cannot change either.
            if webhooks.send_deferred_receipt(self.server.container, outcome).email == "failed":
                self._outcome += "+email-failed"

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it.
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            self._outcome = "too-large"
            self._send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body over {self.server.max_body_bytes} bytes"},
                close=True,
            )
            return False
        return super().handle_expect_100()

    # --- helpers ---

    def _content_length(self) -> int | None:
        if self.headers.get("Transfer-Encoding"):
            self._outcome = "no-length"
            self._send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length"}, close=True)
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            self._outcome = "no-length"
            self._send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length"}, close=True)
            return None
        if not raw.strip().isdigit():
            self._outcome = "malformed"
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"}, close=True)
            return None
        return int(raw)

    def _discard_body(self, limit_seconds: float = 1.0) -> None:
        """Lingering close: let the client finish sending so it can read our answer, for a moment."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + limit_seconds
            self.connection.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    if not self.connection.recv(65536):
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass

    def _finish_without_body(
        self,
        status: HTTPStatus,
        payload: dict[str, Any],
        outcome: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer without reading the body; if one was sent, close the connection afterwards."""
        self._outcome = outcome
        has_body = self.headers.get("Content-Length", "0").strip() not in ("", "0") or bool(
            self.headers.get("Transfer-Encoding")
        )
        self._send_json(status, payload, close=has_body, headers=headers)

    def _send_json(
        self,
        status: HTTPStatus,
        payload: dict[str, Any],
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close or self.server.stopping:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self._answered = time.perf_counter()

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = int(code)
        super().send_response(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Replaced by `_log_access`, which adds the event and the outcome."""

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.client_address[0], *args)

    def _log_access(self) -> None:
        # Time to the answer (what Stripe waits for); work after it, like the receipt email, is not counted.
        end = self._answered or time.perf_counter()
        elapsed = (end - self._started) * 1000 if self._started else 0.0
        method = getattr(self, "command", "") or "-"
        path = (getattr(self, "path", "") or "-").split("?", 1)[0][:200]
        access_log.info(
            '%s "%s %s" %s %s %s %s %.1fms',
            self.client_address[0],
            method,
            path,
            self._status or "-",
            self._event_id,
            self._event_type,
            self._outcome,
            elapsed,
        )


OVERRIDE_CACHE_SECONDS = 60.0


def run_listener(
    container: Container,
    host: str = "127.0.0.1",
    port: int = 8787,
    on_ready: Callable[[WebhookServer], None] | None = None,
    workers: int = 1,
    **options: Any,
) -> bool:
    """Serve until SIGINT/SIGTERM, then stop accepting and finish the requests in flight.

    With `workers` > 1, that many forked processes accept on the one listening socket (Python runs
    one thread at a time per process; the work per event is mostly Python). Refuses to start without
    STRIPE_WEBHOOK_SECRET_PAYMENT. Returns True when every request in flight finished.
    """
    from services.core.errors import ConfigurationError, ValidationError

    if not container.settings.stripe_webhook_secret_payment:
        raise ConfigurationError(
            "STRIPE_WEBHOOK_SECRET_PAYMENT is not set: the listener refuses to accept unverifiable webhooks "
            "(set it to the endpoint's signing secret, whsec_...)."
        )
    if workers < 1:
        raise ValidationError("--workers must be at least 1.")
    # A long-running process: read email template overrides once a minute, not once per receipt.
    container.notifications.cache_overrides(OVERRIDE_CACHE_SECONDS)
    try:
        server = WebhookServer((host, port), container, **options)
    except OSError as exc:
        raise ConfigurationError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    if workers == 1:
        return _serve_until_signal(server, on_ready)
    return _serve_with_workers(server, workers, on_ready)


def _serve_until_signal(server: WebhookServer, on_ready: Callable[[WebhookServer], None] | None) -> bool:
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="webhook-accept"
    )
    # --- outbox drainer hook (#17): sends the receipts queued with each purchase; one per process ---
    from services.email.outbox import OutboxDrainer

    drainer = OutboxDrainer(server.container).start()
    # --- end of the outbox drainer hook (its stop() is below, after the server's) ---
    serving.start()
    try:
        if on_ready is not None:
            on_ready(server)
        while not stop.wait(0.5):
            if not serving.is_alive():
                break
    finally:
        drained = server.stop()
        serving.join()
        drainer.stop()  # outbox drainer hook (#17): finish the batch in hand
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return drained


def _serve_with_workers(
    server: WebhookServer, workers: int, on_ready: Callable[[WebhookServer], None] | None
) -> bool:
    """Pre-fork: the parent binds, forks the workers, closes its copy of the socket and supervises.

    SIGINT/SIGTERM go on to every worker, which drains like a single listener. A worker that dies
    on its own stops the others (the process manager restarts the whole listener).
    """
    import os

    # Several processes accept on one socket: the ones that lose a connection must not block.
    server.socket.setblocking(False)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[int] = []
    clean = True
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    if "engine" in server.container.__dict__:
                        server.container.engine.dispose(close=False)  # never share the parent's sockets
                    code = 0 if _serve_until_signal(server, None) else 1
                except BaseException:  # noqa: BLE001 - report, then leave with a failure code
                    log.exception("webhook worker %s failed", os.getpid())
                finally:
                    logging.shutdown()
                    os._exit(code)
            children.append(pid)
        server.socket.close()
        if on_ready is not None:
            on_ready(server)
        alive = set(children)
        while alive and not stop.is_set():
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                alive.discard(pid)
                log.error("webhook worker %s exited on its own (status %s); stopping", pid, status)
                clean = False
                break
            stop.wait(0.2)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(pid, 0)
                clean = clean and os.waitstatus_to_exitcode(status) == 0
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return clean
