"""The listener as an attacker meets it: slow clients, ambiguous framing, deep JSON, hostile event ids."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from services.core.models import StripeEvent
from tests.standins.stripe_server import sign_payload
from tests.webhook.conftest import WEBHOOK_SECRET, make_event

IGNORED = "customer.created"
HEAD = b"POST /webhooks/stripe/payment HTTP/1.1\r\nHost: listener\r\n"


def count_events(container) -> int:
    with container.uow() as uow:
        return len(uow.session.scalars(select(StripeEvent.id)).all())


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a new connection and read until the listener closes it."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def signed_request(body: bytes, extra_headers: bytes = b"") -> bytes:
    signature = sign_payload(body, WEBHOOK_SECRET).encode()
    return (
        HEAD
        + b"Stripe-Signature: "
        + signature
        + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + extra_headers
        + b"\r\n"
        + body
    )


class SlowClients:
    """`count` connections that trickle a request: one header line (`head`) or one body byte (`body`)
    every `interval` seconds, as a slowloris attacker does."""

    def __init__(self, port: int, count: int, kind: str, interval: float = 0.5) -> None:
        self.kind, self.interval = kind, interval
        self.conns: list[socket.socket] = []
        first = HEAD if kind == "head" else HEAD + b"Content-Length: 100000\r\n\r\n{"
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(first)
            self.conns.append(conn)
        self.closed_by_listener = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        piece = b"X-Slow: 1\r\n" if self.kind == "head" else b" "
        while not self._stop.wait(self.interval):
            for conn in list(self.conns):
                try:
                    conn.sendall(piece)
                except OSError:
                    self.conns.remove(conn)
                    self.closed_by_listener += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.conns:
            conn.close()


def test_signed_events_are_served_while_hundreds_of_slow_clients_hold_connections(listener) -> None:
    port = listener.server.port
    attackers = [SlowClients(port, 300, "head"), SlowClients(port, 300, "body")]
    try:
        for _ in range(500):  # until every attacking connection has been accepted
            if len(listener.server._connections) >= 600:
                break
            time.sleep(0.01)
        assert len(listener.server._connections) >= 600

        events = [make_event(IGNORED, {"id": f"cus_{i}"}) for i in range(30)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda e: listener.client.post(e), events))

        assert [a.status_code for a in answers] == [200] * len(events)
        assert [a.json()["outcome"] for a in answers] == ["ignored"] * len(events)
        # The attack was still in place while they were served.
        assert sum(a.closed_by_listener for a in attackers) == 0
        assert len(listener.server._connections) >= 600
    finally:
        for attacker in attackers:
            attacker.close()
    assert count_events(listener.container) == len(events)


@pytest.mark.parametrize("kind", ["head", "body"])
def test_a_request_trickled_past_its_deadline_gets_408(start_listener, kind) -> None:
    listener = start_listener(header_timeout=0.5, body_timeout=0.5, connection_timeout=5)
    attacker = SlowClients(listener.server.port, 1, kind, interval=0.1)
    conn = attacker.conns[0]
    answer = b""
    try:
        while chunk := conn.recv(4096):
            answer += chunk
    finally:
        attacker.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert b"within 0.5s" in answer
    assert listener.client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "lengths",
    [
        b"Content-Length: 2\r\nContent-Length: 30\r\n",
        b"Content-Length: 2, 30\r\n",
        b"Content-Length: 2x\r\n",
        b"Content-Length: -2\r\n",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["two-headers", "list", "not-a-number", "negative", "with-transfer-encoding"],
)
def test_conflicting_or_invalid_content_length_is_400_and_the_connection_closed(listener, lengths) -> None:
    body = json.dumps(make_event(IGNORED, {"id": "cus_1"})).encode()
    signature = sign_payload(body, WEBHOOK_SECRET).encode()
    request = HEAD + b"Stripe-Signature: " + signature + b"\r\n" + lengths + b"\r\n" + body
    answer = exchange(listener.server.port, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1  # nothing after the body was taken as a second request
    assert count_events(listener.container) == 0


def test_an_oversized_head_is_431(listener) -> None:
    answer = exchange(listener.server.port, HEAD + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_signed_body_nested_100000_deep_is_400_and_the_listener_keeps_serving(listener, caplog) -> None:
    caplog.set_level(logging.INFO, logger="codex.webhooks")
    deep = b'{"id": "evt_deep", "type": "customer.created", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = exchange(listener.server.port, signed_request(deep, b"Content-Length: %d\r\n" % len(deep)))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"nested deeper than 64 levels" in answer
    assert count_events(listener.container) == 0
    assert not [r for r in caplog.records if r.exc_info]
    assert listener.client.post(make_event(IGNORED, {"id": "cus_1"})).status_code == 200


def test_brackets_inside_strings_do_not_count_as_nesting(webhook) -> None:
    event = make_event(IGNORED, {"id": "cus_1", "description": "[[[{{{" * 100})
    response = webhook.post(event)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"


def test_an_event_id_with_control_characters_is_answered_and_escaped_in_the_log(webhook, caplog) -> None:
    caplog.set_level(logging.INFO, logger="codex.webhooks.access")
    # PostgreSQL cannot store a NUL in text: the service stores the id with U+FFFD (#15) and answers.
    event = make_event(IGNORED, {"id": "cus_1"}, event_id="evt_\x00nul\nnext-line\x1b[31m")
    response = webhook.post(event)
    assert response.status_code == 200
    for _ in range(250):
        lines = [r.getMessage() for r in caplog.records if r.name == "codex.webhooks.access"]
        if lines:
            break
        time.sleep(0.02)
    assert len(lines) == 1
    assert "evt_\\x00nul\\x0anext-line\\x1b[31m" in lines[0] and " 200 " in lines[0]
    assert not any(ch in lines[0] for ch in "\x00\n\x1b")
    assert webhook.get("/health").status_code == 200


class RecordingTask:
    """A background task that records when the listener starts and stops it."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self, timeout: float) -> None:
        self.calls.append(("stop", timeout))


def test_background_tasks_start_with_the_listener_and_stop_after_it_drained(webhook_settings) -> None:
    from services.adapters.http_listener import run_listener
    from services.bootstrap import Container

    container = Container(webhook_settings)
    task = RecordingTask()
    seen: list[object] = []

    def ready(server) -> None:  # type: ignore[no-untyped-def]
        seen.append((list(task.calls), requests.get(server.url + "/health", timeout=10).status_code))
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    try:
        drained = run_listener(container, port=0, on_ready=ready, background=[task])
    finally:
        container.close()
    assert drained is True
    assert seen == [(["start"], 200)]
    assert task.calls == ["start", ("stop", 30.0)]


class PolicyTask:
    """A background task whose thread records the CPU scheduling policy it runs with."""

    def __init__(self) -> None:
        self.policies: list[int] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: self.policies.append(os.sched_getscheduler(0)))
        self._thread.start()

    def stop(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_with_workers_the_drainer_runs_at_idle_priority_and_the_supervisor_does_not(webhook_settings) -> None:
    """`ps -L -o cls` shows it too: the outbox drainer's thread is IDL, the supervisor's stays TS."""
    from services.adapters.http_listener import run_listener
    from services.bootstrap import Container

    container = Container(webhook_settings)
    task = PolicyTask()

    def ready(server) -> None:  # type: ignore[no-untyped-def]
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()

    try:
        assert run_listener(container, port=0, workers=2, on_ready=ready, background=[task]) is True
    finally:
        container.close()
    assert task.policies == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the supervising thread went back to normal
