"""Stand-ins in front of (or instead of) the S3 server, for upload tests.

- `CountingProxy`: forwards every request to moto and records what the client sent (method, query,
  body size), so a test can count exactly which parts an upload sent. It can hold UploadPart requests
  after the first N parts, or any request `hold_when` matches, until released: a test then knows the
  process it signals is mid-upload. Released with `forward=False`, a held request never reaches moto
  (its client, killed meanwhile, is gone). Like S3 and R2 (moto checks none), it checks the
  `x-amz-checksum-crc32` / `-sha256` header of every request against the body it received and
  answers 400 BadDigest on a mismatch; `corrupt_part = N` flips one byte of part N once on the way,
  as a bad link would.
- `StallingServer`: accepts PUTs and then stops reading (the socket's buffers fill and the client's
  send blocks), as a stuck server or a dead uplink does; other requests get 204 at once.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length", "host"}
_CHECKSUMS = {
    "crc32": lambda body: base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
    "sha256": lambda body: base64.b64encode(hashlib.sha256(body).digest()).decode(),
}
_BAD_DIGEST = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code>'
    b"<Message>The CRC32 or SHA256 you specified did not match the calculated checksum.</Message></Error>"
)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body_bytes: int
    checksum: str | None = None  # the algorithm of the x-amz-checksum-* header the request carried

    @property
    def part_number(self) -> int | None:
        if self.method == "PUT" and "partNumber" in self.query:
            return int(self.query["partNumber"][0])
        return None


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.seen: list[Seen] = []
        self.hold_after: int | None = None  # hold UploadParts once this many have been forwarded
        self.hold_when: Callable[[Seen], bool] | None = None  # hold the requests this matches
        self._forward_held = True
        self.holding = threading.Event()  # set while a part is held
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._parts_done = 0
        self.corrupt_part: int | None = None  # flip one byte of this part number, once
        self.refused = 0  # requests answered BadDigest
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                algorithm = next((a for a in _CHECKSUMS if self.headers.get(f"x-amz-checksum-{a}")), None)
                seen = Seen(
                    self.command, url.path, parse_qs(url.query, keep_blank_values=True), len(body), algorithm
                )
                if body and seen.part_number is not None and seen.part_number == proxy.corrupt_part:
                    proxy.corrupt_part = None
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                if algorithm and _CHECKSUMS[algorithm](body) != self.headers[f"x-amz-checksum-{algorithm}"]:
                    with proxy._lock:
                        proxy.refused += 1
                    self.send_response(400)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_BAD_DIGEST)))
                    self.end_headers()
                    self.wfile.write(_BAD_DIGEST)
                    return
                hold = proxy.hold_when is not None and proxy.hold_when(seen)
                if seen.part_number is not None and proxy.hold_after is not None:
                    with proxy._lock:
                        hold = hold or proxy._parts_done >= proxy.hold_after
                if hold:
                    proxy.holding.set()
                    proxy._release.wait(60)
                    if not proxy._forward_held:
                        self.close_connection = True
                        return
                with proxy._lock:
                    proxy.seen.append(seen)
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if seen.part_number is not None and response.status == 200:
                    with proxy._lock:
                        proxy._parts_done += 1
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                # HEAD has no body but tells the object's length
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def release(self, forward: bool = True) -> None:
        """Stop holding; what was held goes on to moto, or (forward=False) is dropped unanswered."""
        self.hold_after = None
        self.hold_when = None
        self._forward_held = forward
        self._release.set()

    def reset(self) -> None:
        with self._lock:
            self.seen = []

    def parts_sent(self) -> list[int]:
        with self._lock:
            return sorted(s.part_number for s in self.seen if s.part_number is not None)

    def checksums(self) -> dict[int, str | None]:
        """The checksum algorithm each forwarded part carried, by part number."""
        with self._lock:
            return {s.part_number: s.checksum for s in self.seen if s.part_number is not None}

    def paths(self, method: str) -> list[str]:
        """The paths of the forwarded requests with this method, in order."""
        with self._lock:
            return [s.path for s in self.seen if s.method == method]

    def count(self, method: str, query_key: str) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.method == method and query_key in s.query)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


class StallingServer:
    """PUT: read the request line and headers, then never read again nor answer. Else: 204."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.puts = 0
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the client's send blocks soon
        conn.settimeout(5)
        try:
            while not self._stop.is_set():
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(1)
                    if not chunk:
                        return
                    head += chunk
                if head.startswith(b"PUT "):
                    self.puts += 1
                    self._held.append(conn)
                    return  # stop reading; the socket stays open
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            conn.close()

    def __enter__(self) -> StallingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._held:
            conn.close()
