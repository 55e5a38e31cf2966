"""The embedded Stripe webhook endpoint: uvicorn (httptools parser) serving a small ASGI app.

HTTP parsing, keep-alive and graceful shutdown are uvicorn's; this module adds what a public endpoint
needs on top, in `_Protocol` (per connection, in the event loop) and `WebhookApp` (per request):
- slow clients are cheap and bounded in time: an idle timeout between reads (`connection_timeout`,
  closed without an answer), a total deadline for the request head (`header_timeout`, 408) and one for
  the body (`body_timeout`, 408), a head size limit (431), and a connection cap far above what slow
  clients reach within those deadlines (`max_connections`, 503 beyond it);
- strict requests: conflicting or invalid Content-Length is 400 (the parser refuses it), the body
  limit is checked before the body is read (413, also for `Expect: 100-continue`), JSON nested deeper
  than any Stripe event is 400 before it is parsed, and an unexpected error still gets an answer;
- the database work (services.payments.webhooks) runs in a bounded thread pool, and at most
  `max_concurrent_requests` requests hold a slot at once (503 after `busy_wait`); a slot is taken only
  once the whole body is in, so slow bodies cannot hold slots;
- one access-log line per request, control characters escaped; never a header value or a body.

`run_listener` serves until SIGINT/SIGTERM and then drains: stop accepting, close idle connections,
finish the requests in flight, then stop the background tasks (`BackgroundTask`) started with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

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
MAX_HEAD_BYTES = 64 * 1024
# Stripe events nest about ten levels (event > data > object > charges > data > [] > ...); 64 is far above.
MAX_JSON_DEPTH = 64
# Each connection costs a file descriptor and a few KiB; a slow client holds one for at most
# header_timeout + body_timeout seconds, so reaching this cap takes thousands of new connections a second.
MAX_CONNECTIONS = 10_000
# Threads running database work; the engine's pool (5 + 10 overflow) bounds useful parallelism anyway.
MAX_DB_THREADS = 8
# How much lower the supervisor's background tasks (the outbox drainer) run than the workers,
# where SCHED_IDLE is not available.
BACKGROUND_NICE = 5


@contextlib.contextmanager
def _background_priority() -> Iterator[None]:
    """Threads started inside run at the lowest CPU priority; the calling thread's is restored."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            before = os.sched_getscheduler(0), os.sched_getparam(0)
            os.sched_setscheduler(0, idle, os.sched_param(0))
        except OSError:
            idle = None
        else:
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(0, before[0], before[1])
            return
    niced = False
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + BACKGROUND_NICE)
        niced = True
    try:
        yield
    finally:
        if niced:  # lowering it back needs privileges; stays lower otherwise (as before)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) - BACKGROUND_NICE)


T = TypeVar("T")


class BackgroundTask(Protocol):
    """Work that lives as long as the listener (e.g. an outbox drainer thread).

    `start()` is called once the listener accepts requests; `stop(timeout)` after it has drained, and
    must return within about `timeout` seconds. One instance per listener, whatever `--workers` is:
    with several workers it runs in the supervising process.
    """

    def start(self) -> object: ...

    def stop(self, timeout: float) -> object: ...


# --- access log ---

_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPES[ord('"')] = '\\"'


def escape(text: str, limit: int = 200) -> str:
    """Control characters (and the quote and backslash) as escapes, so one request stays one log line."""
    return text[:limit].translate(_ESCAPES)


class _Request:
    """What the access log says about one request."""

    __slots__ = (
        "client",
        "method",
        "path",
        "status",
        "event_id",
        "event_type",
        "outcome",
        "started",
        "answered",
    )

    def __init__(self, client: str, method: str, path: str) -> None:
        self.client, self.method, self.path = client, method, path
        self.status = 0
        self.event_id = self.event_type = self.outcome = "-"
        self.started = time.perf_counter()
        self.answered = 0.0

    def log(self) -> None:
        # Time to the answer (what Stripe waits for); work after it, like the receipt email, is not counted.
        elapsed = ((self.answered or time.perf_counter()) - self.started) * 1000
        access_log.info(
            '%s "%s %s" %s %s %s %s %.1fms',
            self.client,
            escape(self.method or "-", 20),
            escape(self.path or "-"),
            self.status or "-",
            escape(self.event_id),
            escape(self.event_type),
            self.outcome,
            elapsed,
        )


def _log_refusal(client: str, status: int, outcome: str) -> None:
    access_log.info('%s "- -" %s - - %s 0.0ms', client, status, outcome)


# --- strict JSON ---

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays/objects nest deeper than `limit` (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for ch in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if ch in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


# --- the ASGI app ---


class _Answered(Exception):
    """The request has been answered (or the client left); stop handling it."""


class WebhookApp:
    """ASGI app: GET /health and POST /webhooks/stripe/payment; everything else 404/405."""

    def __init__(
        self,
        container: Container,
        *,
        secret: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout: float = 10.0,
        max_concurrent_requests: int = 64,
        busy_wait: float = 0.5,
        db_threads: int | None = None,
    ) -> None:
        self.container = container
        self.secret = container.settings.stripe_webhook_secret_payment if secret is None else secret
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.max_concurrent_requests = max_concurrent_requests
        self.busy_wait = busy_wait
        self.db_threads = db_threads or min(max_concurrent_requests, MAX_DB_THREADS)
        self.stopping = False
        self.in_flight = 0  # requests started and not finished (after-answer work included)
        self.abandoned = 0  # requests cancelled before they finished (drain deadline passed)
        self.db_running = 0  # database calls still running in the pool
        self._count_lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._pool: ThreadPoolExecutor | None = None

    # The pool and the semaphore belong to the serving process and its loop: made on first use,
    # so a listener can be built before it forks its workers.
    def _get_slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent_requests)
        return self._slots

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.db_threads, thread_name_prefix="webhook-db")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._slots = None

    async def _in_pool(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def run() -> T:
            with self._count_lock:
                self.db_running += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._count_lock:
                    self.db_running -= 1

        return await asyncio.get_running_loop().run_in_executor(self._get_pool(), run)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websockets
        client = scope.get("client")
        req = _Request(client[0] if client else "-", scope.get("method", ""), scope.get("path", ""))
        self.in_flight += 1
        try:
            await self._route(scope, receive, send, req)
        except _Answered:
            pass
        except asyncio.CancelledError:
            self.abandoned += 1
            req.outcome = "abandoned"
            raise
        except Exception:  # noqa: BLE001 - whatever happens, the sender gets an answer
            log.exception("request %s %s failed", escape(req.method, 20), escape(req.path))
            if not req.status:
                req.outcome = "error"
                with contextlib.suppress(Exception):
                    await self._send_json(
                        send,
                        req,
                        HTTPStatus.INTERNAL_SERVER_ERROR,
                        {"error": "internal error; retry later"},
                        True,
                    )
        finally:
            self.in_flight -= 1
            req.log()

    async def _route(self, scope: dict, receive: Callable, send: Callable, req: _Request) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        allowed = ROUTES.get(req.path)
        if allowed is None:
            await self._refuse(send, req, headers, HTTPStatus.NOT_FOUND, {"error": "not found"}, "not-found")
        elif req.method != allowed:
            await self._refuse(
                send,
                req,
                headers,
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"method not allowed; use {allowed}"},
                "method-not-allowed",
                [(b"allow", allowed.encode())],
            )
        elif req.path == HEALTH_PATH:
            async with self._slot(send, req, headers):
                await self._health(send, req)
        else:
            body = await self._read_body(receive, send, req, headers)
            event = await self._verify(send, req, body, headers)
            async with self._slot(send, req, headers):
                await self._webhook(send, req, body, event)

    @contextlib.asynccontextmanager
    async def _slot(self, send: Callable, req: _Request, headers: list[tuple[bytes, bytes]]) -> Any:
        slots = self._get_slots()
        acquired = False
        if not slots.locked():
            await slots.acquire()  # free: no timer, so a busy loop cannot turn a free slot into a 503
            acquired = True
        elif self.busy_wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slots.acquire(), self.busy_wait)
                acquired = True
        if not acquired:
            await self._refuse(
                send,
                req,
                headers,
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"error": "busy; retry later"},
                "busy",
                [(b"retry-after", b"1")],
            )
            raise _Answered
        try:
            yield
        finally:
            slots.release()

    # --- routes ---

    async def _health(self, send: Callable, req: _Request) -> None:
        reason = await self._in_pool(webhooks.check_database, self.container)
        if reason is None:
            req.outcome = "healthy"
            await self._send_json(send, req, HTTPStatus.OK, {"status": "ok", "service": SERVICE})
        else:
            req.outcome = "unhealthy"
            await self._send_json(
                send,
                req,
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"status": "unavailable", "service": SERVICE, "reason": reason},
            )

    async def _read_body(
        self, receive: Callable, send: Callable, req: _Request, headers: list[tuple[bytes, bytes]]
    ) -> bytes:
        """The body, after its length is checked; 411/400/413/408 otherwise (all closing the connection)."""
        lengths = [v for k, v in headers if k == b"content-length"]
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        if chunked or not lengths:
            await self._fail(send, req, HTTPStatus.LENGTH_REQUIRED, "send a Content-Length", "no-length")
        if len(lengths) > 1 or not lengths[0].strip().isdigit():
            await self._fail(send, req, HTTPStatus.BAD_REQUEST, "invalid Content-Length", "malformed")
        length = int(lengths[0])
        if length > self.max_body_bytes:
            # Before reading a byte: with `Expect: 100-continue` the client never sends the body.
            await self._fail(
                send,
                req,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body over {self.max_body_bytes} bytes",
                "too-large",
            )
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        req.outcome = "disconnected"
                        raise _Answered
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._fail(
                send,
                req,
                HTTPStatus.REQUEST_TIMEOUT,
                f"body not received within {self.body_timeout:g}s",
                "timeout",
            )
        return b"".join(chunks)

    async def _verify(
        self, send: Callable, req: _Request, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> dict[str, Any]:
        signature = next((v.decode("latin-1") for k, v in headers if k == b"stripe-signature"), None)
        try:
            webhooks.verify_signature(body, signature, self.secret)
            if json_too_deep(body):
                raise webhooks.MalformedEvent(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
            return webhooks.parse_event(body)
        except webhooks.InvalidSignature as exc:
            await self._fail(send, req, HTTPStatus.BAD_REQUEST, str(exc), "bad-signature", close=False)
        except (webhooks.MalformedEvent, ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, webhooks.MalformedEvent) else "Body is not a valid event."
            await self._fail(send, req, HTTPStatus.BAD_REQUEST, message, "malformed", close=False)

    async def _webhook(self, send: Callable, req: _Request, body: bytes, event: dict[str, Any]) -> None:
        req.event_id, req.event_type = str(event["id"]), str(event["type"])
        loop = asyncio.get_running_loop()
        applied: asyncio.Future[webhooks.WebhookOutcome] = loop.create_future()

        def settle(result: webhooks.WebhookOutcome | None, error: BaseException | None) -> None:
            if applied.done():
                return
            if error is not None:
                applied.set_exception(error)
            elif result is not None:
                applied.set_result(result)

        def apply_then_receipt() -> webhooks.WebhookOutcome | None:
            # One trip to the pool: the answer goes out (from the loop) as soon as the event is
            # committed, while this thread goes on with the receipt.
            try:
                outcome = webhooks.process_event(self.container, body, event, defer_receipt=True)
            except Exception as exc:  # noqa: BLE001 - answered by the loop below
                loop.call_soon_threadsafe(settle, None, exc)
                return None
            loop.call_soon_threadsafe(settle, outcome, None)
            return webhooks.send_deferred_receipt(self.container, outcome)

        work = self._in_pool(apply_then_receipt)
        task = asyncio.ensure_future(work)
        try:
            try:
                outcome = await asyncio.shield(applied)
            except webhooks.WebhookHandlingFailed as exc:
                log.error("%s", escape(str(exc), 500))
                await self._fail(
                    send, req, HTTPStatus.INTERNAL_SERVER_ERROR, "handler failed; retry later", "failed"
                )
            except Exception as exc:  # noqa: BLE001 - anything else: Stripe must retry
                if webhooks._is_db_unavailable(exc):
                    log.error("event %s: database unavailable", escape(req.event_id))
                    await self._fail(
                        send,
                        req,
                        HTTPStatus.SERVICE_UNAVAILABLE,
                        "database unavailable; retry later",
                        "db-unavailable",
                    )
                log.error("event %s: unexpected %s", escape(req.event_id), type(exc).__name__)
                await self._fail(
                    send, req, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; retry later", "error"
                )
            req.outcome = outcome.outcome
            if outcome.outcome == "processed":
                req.outcome += ":" + outcome.action.split(" ", 1)[0].rstrip(";")
            await self._send_json(send, req, HTTPStatus.OK, {"received": True, "outcome": outcome.outcome})
        finally:
            # The purchase is committed and Stripe has its answer; the receipt cannot change either.
            receipt = await task
            if receipt is not None and receipt.email == "failed":
                req.outcome += "+email-failed"

    # --- answers ---

    async def _fail(
        self, send: Callable, req: _Request, status: HTTPStatus, error: str, outcome: str, close: bool = True
    ) -> NoReturn:
        """Answer `{"error": ...}` and stop handling the request."""
        req.outcome = outcome
        await self._send_json(send, req, status, {"error": error}, close)
        raise _Answered

    async def _refuse(
        self,
        send: Callable,
        req: _Request,
        headers: list[tuple[bytes, bytes]],
        status: HTTPStatus,
        payload: dict[str, Any],
        outcome: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer without reading the body; if one was announced, close the connection afterwards."""
        req.outcome = outcome
        has_body = any(
            (k == b"content-length" and v.strip() not in (b"", b"0")) or k == b"transfer-encoding"
            for k, v in headers
        )
        await self._send_json(send, req, status, payload, has_body, extra)

    async def _send_json(
        self,
        send: Callable,
        req: _Request,
        status: HTTPStatus,
        payload: dict[str, Any],
        close: bool = False,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"server", SERVICE.encode()),
            *(extra or []),
        ]
        if close or self.stopping:
            headers.append((b"connection", b"close"))
        req.status = int(status)
        await send({"type": "http.response.start", "status": int(status), "headers": headers})
        await send({"type": "http.response.body", "body": body})
        req.answered = time.perf_counter()


# --- the connection: deadlines, limits ---


def _json_response(status: HTTPStatus, payload: dict[str, Any], extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"server: {SERVICE}\r\n{extra}connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


LINGER_SECONDS = 1.0


class _LingeringTransport:
    """`close()` as a lingering close: send our FIN, drop what the client still sends for a moment,
    then close. A client still sending (a body we refused, a trickled request) then reads our
    answer instead of a connection reset that would discard it."""

    def __init__(self, transport: asyncio.Transport, protocol: Any) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        transport = self._transport
        if transport.is_closing() or self._protocol._lingering:
            return
        self._protocol._lingering = True
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        self._protocol.loop.call_later(LINGER_SECONDS, transport.close)


def _protocol_class(listener: WebhookServer) -> type:
    """uvicorn's httptools protocol with the listener's connection cap, idle timeout and head deadline."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _Protocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._lingering = False
            self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]
            self._in_head = True  # reading a request head (or waiting for the next request)
            self._head_started: float | None = None
            self._head_bytes = 0
            self._last_data = self.loop.time()
            self._watchdog: asyncio.TimerHandle | None = None
            if len(self.connections) > listener.max_connections:
                self._answer_and_close(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"error": "too many connections"},
                    "busy",
                    "retry-after: 1\r\n",
                )
                return
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                return  # answered and closing: what still comes is dropped
            self._last_data = self.loop.time()
            if self._in_head:
                if self._head_started is None:
                    self._head_started = self._last_data
                end = data.find(b"\r\n\r\n")  # the head ends in this chunk (a split one: 3 bytes over)
                self._head_bytes += len(data) if end < 0 else end + 4
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._answer_and_close(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        {"error": "request head too large"},
                        "too-large",
                    )
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_started = None
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._in_head = True
            self._head_bytes = 0
            self._head_started = None
            self._last_data = self.loop.time()  # idle from now on, not since the request came in
            super().on_response_complete()

        def send_400_response(self, msg: str) -> None:
            # The parser refused the request (e.g. conflicting Content-Length): answer in our format.
            self._answer_and_close(HTTPStatus.BAD_REQUEST, {"error": "invalid HTTP request"}, "bad-request")

        def _answer_and_close(
            self, status: HTTPStatus, payload: dict[str, Any], outcome: str, extra: str = ""
        ) -> None:
            if not (self._lingering or self.transport.is_closing()):
                self.transport.write(_json_response(status, payload, extra))
                self.transport.close()
            _log_refusal(self.client[0] if self.client else "-", status.value, outcome)

        def _reading_body(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete and cycle.more_body

        def _watch(self) -> None:
            """Close connections that stopped sending; 408 for a head that takes too long in total."""
            self._watchdog = None
            if self._lingering or self.transport.is_closing():
                return
            now = self.loop.time()
            idle = listener.connection_timeout
            due = now + idle
            if self._in_head or self._reading_body():
                if now - self._last_data >= idle:
                    self.transport.close()  # no answer: the client is gone or pretends to be
                    return
                due = self._last_data + idle
            if self._in_head and self._head_started is not None:
                if now - self._head_started >= listener.header_timeout:
                    self._answer_and_close(
                        HTTPStatus.REQUEST_TIMEOUT,
                        {"error": f"request head not received within {listener.header_timeout:g}s"},
                        "timeout",
                    )
                    return
                due = min(due, self._head_started + listener.header_timeout)
            self._watchdog = self.loop.call_at(due + 0.01, self._watch)

    return _Protocol


# --- the server ---


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (up to the hard limit); the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


class WebhookServer:
    """The listening socket plus uvicorn serving `WebhookApp`; `serve_forever()` until `stop()`."""

    def __init__(
        self,
        address: tuple[str, int],
        container: Container,
        *,
        secret: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        connection_timeout: float = 10.0,
        header_timeout: float = 10.0,
        body_timeout: float = 10.0,
        max_concurrent_requests: int = 64,
        max_connections: int = MAX_CONNECTIONS,
        busy_wait: float = 0.5,
        drain_timeout: float = 30.0,
        backlog: int = 2048,
        reuse_port: bool = False,
    ) -> None:
        self.container = container
        self.connection_timeout = connection_timeout
        self.header_timeout = header_timeout
        self.drain_timeout = drain_timeout
        self.backlog = backlog
        files = raise_open_files_limit(max_connections + 1024)
        if files < max_connections + 256:
            log.warning("open-files limit %s: serving at most %s connections", files, max(files - 256, 16))
            max_connections = max(files - 256, 16)
        self.max_connections = max_connections
        self.app = WebhookApp(
            container,
            secret=secret,
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            max_concurrent_requests=max_concurrent_requests,
            busy_wait=busy_wait,
        )
        self.socket = socket.create_server(address, backlog=backlog, reuse_port=reuse_port)
        self._address = self.socket.getsockname()[:2]
        self._uvicorn: Any = None
        self._serving = threading.Event()
        self._finished = threading.Event()
        self._stop_requested = False
        self._drained = True

    @property
    def port(self) -> int:
        return int(self._address[1])

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    @property
    def stopping(self) -> bool:
        return self.app.stopping

    @property
    def requests_in_flight(self) -> int:
        """Requests started and not finished (their after-answer work, like the receipt, included)."""
        return self.app.in_flight

    @property
    def _connections(self) -> set:
        """The open connections (uvicorn's set), for tests that wait for one to be accepted."""
        return set(self._uvicorn.server_state.connections) if self._uvicorn is not None else set()

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serve in this thread (an event loop of its own) until `stop()`; `poll_interval` is unused."""
        import uvicorn

        config = uvicorn.Config(
            self.app,
            http=_protocol_class(self),
            loop="asyncio",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=max(1, int(self.connection_timeout)),
            timeout_graceful_shutdown=max(1, int(self.drain_timeout)),
            backlog=self.backlog,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)  # we log what matters ourselves
        server = uvicorn.Server(config)
        self._uvicorn = server
        if self._stop_requested:
            server.should_exit = True
        try:
            self._serving.set()
            asyncio.run(server.serve(sockets=[self.socket]))
        finally:
            self.app.close()
            self._finished.set()

    def stop(self) -> bool:
        """Stop accepting, close idle keep-alive connections, wait for requests in flight.

        Returns True when every in-flight request finished within `drain_timeout`.
        """
        self._stop_requested = True
        self.app.stopping = True
        if self._uvicorn is None or not self._serving.is_set():
            self.socket.close()
            return True
        self._uvicorn.should_exit = True
        self._finished.wait(self.drain_timeout + 10)
        deadline = time.monotonic() + 5
        while self.app.db_running and time.monotonic() < deadline:
            time.sleep(0.05)  # database calls of abandoned requests
        drained = self._finished.is_set() and self.app.abandoned == 0 and self.app.db_running == 0
        if not drained:
            log.warning("stopped with requests still running after %.0fs", self.drain_timeout)
        return drained


OVERRIDE_CACHE_SECONDS = 60.0


def run_listener(
    container: Container,
    host: str = "127.0.0.1",
    port: int = 8787,
    on_ready: Callable[[WebhookServer], None] | None = None,
    workers: int = 1,
    background: Sequence[BackgroundTask] = (),
    **options: Any,
) -> bool:
    """Serve until SIGINT/SIGTERM, then stop accepting and finish the requests in flight.

    With `workers` > 1, that many forked processes accept on the one listening socket (Python runs
    one thread at a time per process; the work per event is mostly Python). `background` tasks are
    started once the listener accepts and stopped after it drained (see BackgroundTask). Refuses to
    start without STRIPE_WEBHOOK_SECRET_PAYMENT. Returns True when every request in flight finished.
    """
    from services.core.errors import ConfigurationError, ValidationError

    if not container.settings.stripe_webhook_secret_payment:
        raise ConfigurationError(
            "STRIPE_WEBHOOK_SECRET_PAYMENT is not set: the listener refuses to accept unverifiable webhooks "
            "(set it to the endpoint's signing secret, whsec_...)."
        )
    if workers < 1:
        raise ValidationError("The number of workers must be at least 1.", field="workers")
    # A long-running process: read email template overrides once a minute, not once per receipt.
    container.notifications.cache_overrides(OVERRIDE_CACHE_SECONDS)
    try:
        server = WebhookServer((host, port), container, reuse_port=workers > 1, **options)
    except OSError as exc:
        raise ConfigurationError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None

    started: list[BackgroundTask] = []

    def ready(srv: WebhookServer) -> None:
        for task in background:
            task.start()
            started.append(task)
        if on_ready is not None:
            on_ready(srv)

    try:
        if workers == 1:
            return _serve_until_signal(server, ready)
        return _serve_with_workers(server, workers, ready)
    finally:
        for task in reversed(started):
            try:
                task.stop(server.drain_timeout)
            except Exception:  # noqa: BLE001 - the listener has stopped; report and go on
                log.exception("background task %s failed to stop", type(task).__name__)


def _serve_until_signal(server: WebhookServer, on_ready: Callable[[WebhookServer], None] | None) -> bool:
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="webhook-serve")
    serving.start()
    drained = False
    try:
        while not (server._uvicorn is not None and server._uvicorn.started) and serving.is_alive():
            time.sleep(0.01)
        if on_ready is not None and serving.is_alive():
            on_ready(server)
        while not stop.wait(0.5):
            if not serving.is_alive():
                break
    finally:
        drained = server.stop()
        serving.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return drained


def _serve_with_workers(
    server: WebhookServer, workers: int, on_ready: Callable[[WebhookServer], None] | None
) -> bool:
    """Pre-fork: the parent binds one listening socket per worker on the same port (SO_REUSEPORT, so
    the kernel spreads connections evenly; one shared socket would let the first worker to wake take
    them all), forks the workers, closes its copies and supervises.

    SIGINT/SIGTERM go on to every worker, which drains like a single listener. A worker that dies
    on its own stops the others (the process manager restarts the whole listener).
    """
    sockets = [server.socket]
    try:
        for _ in range(workers - 1):
            sockets.append(socket.create_server(server._address, backlog=server.backlog, reuse_port=True))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        from services.core.errors import ConfigurationError

        raise ConfigurationError(f"Cannot listen on {server.url} with {workers} workers: {exc}.") from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[int] = []
    clean = True
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    server.socket = sockets[index]
                    for other in sockets:
                        if other is not server.socket:
                            other.close()
                    if "engine" in server.container.__dict__:
                        server.container.engine.dispose(close=False)  # never share the parent's sockets
                    code = 0 if _serve_until_signal(server, None) else 1
                except BaseException:  # noqa: BLE001 - report, then leave with a failure code
                    log.exception("webhook worker %s failed", os.getpid())
                finally:
                    logging.shutdown()
                    os._exit(code)
            children.append(pid)
        for sock in sockets:
            sock.close()
        # The background tasks (the outbox drainer) start here, in the supervisor, at the lowest CPU
        # priority: in a burst Stripe's deliveries are answered first and the receipts, already
        # committed in the outbox, follow as soon as there is CPU to spare. Linux keeps a scheduling
        # policy per thread and a new thread inherits its creator's: the threads started by
        # `on_ready` run SCHED_IDLE (nice BACKGROUND_NICE where that policy is missing), and this
        # thread, which supervises the workers and handles signals, goes back to normal afterwards.
        with _background_priority():
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
