"""The listener over real HTTP: routing, signatures, limits, duplicates, busy and database-down answers."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import replace

import psycopg
import pytest
import requests
from sqlalchemy import select

from services.core.models import StripeEvent, StripeEventStatus
from tests.standins.stripe_server import sign_payload
from tests.webhook.conftest import WEBHOOK_SECRET, make_event

IGNORED = "customer.created"


def stored(container, event_id: str) -> StripeEvent | None:
    with container.uow() as uow:
        row = uow.session.scalars(select(StripeEvent).where(StripeEvent.id == event_id)).first()
        if row is not None:
            uow.session.expunge(row)
        return row


def count_events(container) -> int:
    with container.uow() as uow:
        return len(uow.session.scalars(select(StripeEvent.id)).all())


def test_health_answers_ok_when_the_database_is_up(webhook) -> None:
    response = webhook.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "codex-webhooks"}


def test_health_answers_503_with_a_reason_when_the_database_is_unreachable(
    start_listener, webhook_settings, pg
) -> None:
    broken = replace(webhook_settings, database_url=pg.sqlalchemy_url("no_such_database"))
    response = start_listener(broken).client.get("/health")
    assert response.status_code == 503
    assert response.json()["reason"] == "database unreachable"
    assert "no_such_database" not in response.text


def test_unknown_path_is_404_and_wrong_method_is_405(webhook) -> None:
    assert requests.get(webhook.url + "/nope", timeout=10).status_code == 404
    assert requests.post(webhook.url + "/webhooks/stripe/other", data=b"{}", timeout=10).status_code == 404
    get_hook = requests.get(webhook.url + "/webhooks/stripe/payment", timeout=10)
    assert get_hook.status_code == 405 and get_hook.headers["Allow"] == "POST"
    assert requests.post(webhook.url + "/health", data=b"x", timeout=10).status_code == 405
    assert requests.put(webhook.url + "/webhooks/stripe/payment", data=b"{}", timeout=10).status_code == 405
    assert requests.delete(webhook.url + "/health", timeout=10).status_code == 405


def test_missing_signature_is_400_and_nothing_is_stored(webhook, listener) -> None:
    body = json.dumps(make_event(IGNORED, {"id": "cus_1"})).encode()
    response = requests.post(webhook.url + "/webhooks/stripe/payment", data=body, timeout=10)
    assert response.status_code == 400 and "Missing Stripe-Signature" in response.json()["error"]
    assert count_events(listener.container) == 0


def test_signature_made_with_another_secret_is_400(webhook, listener) -> None:
    body = json.dumps(make_event(IGNORED, {"id": "cus_1"})).encode()
    header = sign_payload(body, "whsec_someone_else")
    response = requests.post(
        webhook.url + "/webhooks/stripe/payment", data=body, headers={"Stripe-Signature": header}, timeout=10
    )
    assert response.status_code == 400 and "No signature matches" in response.json()["error"]
    assert count_events(listener.container) == 0


def test_tampered_body_is_400(webhook) -> None:
    body = json.dumps(make_event(IGNORED, {"id": "cus_1"})).encode()
    header = sign_payload(body, WEBHOOK_SECRET)
    response = requests.post(
        webhook.url + "/webhooks/stripe/payment",
        data=body.replace(b"cus_1", b"cus_2"),
        headers={"Stripe-Signature": header},
        timeout=10,
    )
    assert response.status_code == 400


def test_signature_older_than_five_minutes_is_400(webhook, listener) -> None:
    event = make_event(IGNORED, {"id": "cus_1"})
    response = webhook.post(event, timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 400 and "tolerance" in response.json()["error"]
    assert stored(listener.container, event["id"]) is None


def test_a_second_valid_v1_signature_is_accepted(webhook) -> None:
    body = json.dumps(make_event(IGNORED, {"id": "cus_1"})).encode()
    good = sign_payload(body, WEBHOOK_SECRET)
    ts, v1 = good.split(",")
    header = f"{ts},v1={'0' * 64},{v1},v0=ignored"
    response = requests.post(
        webhook.url + "/webhooks/stripe/payment", data=body, headers={"Stripe-Signature": header}, timeout=10
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"id": "evt_1", "type": "x"}).encode(),
        json.dumps({"type": "x"}).encode(),
    ],
)
def test_signed_but_malformed_body_is_400(webhook, listener, body) -> None:
    response = webhook.post(body)
    assert response.status_code == 400
    assert count_events(listener.container) == 0


def test_body_over_one_mebibyte_is_413_before_it_is_read(webhook, listener) -> None:
    event = make_event(IGNORED, {"id": "cus_1", "padding": "x" * (1024 * 1024)})
    response = webhook.post(event)
    assert response.status_code == 413
    assert count_events(listener.container) == 0
    assert webhook.get("/health").status_code == 200


def test_request_without_content_length_is_refused(webhook) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"id": "evt_1"}'

    response = requests.post(webhook.url + "/webhooks/stripe/payment", data=chunks(), timeout=10)
    assert response.status_code == 411


def test_unhandled_type_is_stored_as_ignored_and_answered_200(webhook, listener) -> None:
    event = make_event(IGNORED, {"id": "cus_1"})
    response = webhook.post(event)
    assert response.status_code == 200 and response.json() == {"received": True, "outcome": "ignored"}
    row = stored(listener.container, event["id"])
    assert row.status == StripeEventStatus.ignored and row.attempts == 1 and row.processed_at is not None
    assert row.payload == event


def test_duplicate_delivery_answers_200_and_changes_nothing(webhook, listener) -> None:
    event = make_event(IGNORED, {"id": "cus_1"})
    assert webhook.post(event).json()["outcome"] == "ignored"
    again = webhook.post(event)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert stored(listener.container, event["id"]).attempts == 1


def test_keep_alive_connection_serves_several_requests(webhook) -> None:
    with requests.Session() as http:
        for _ in range(3):
            event = make_event(IGNORED, {"id": "cus_1"})
            body = json.dumps(event).encode()
            response = http.post(
                webhook.url + "/webhooks/stripe/payment",
                data=body,
                headers={"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)},
                timeout=10,
            )
            assert response.status_code == 200
        assert http.get(webhook.url + "/health", timeout=10).status_code == 200


def test_one_access_log_line_per_request_without_secrets(webhook, caplog) -> None:
    caplog.set_level(logging.INFO, logger="codex.webhooks.access")
    event = make_event(IGNORED, {"id": "cus_1"})
    webhook.post(event)
    webhook.post(b"garbage")
    webhook.get("/health")
    for _ in range(250):  # the line is written just after the answer goes out
        lines = [r.getMessage() for r in caplog.records if r.name == "codex.webhooks.access"]
        if len(lines) >= 3:
            break
        time.sleep(0.02)
    assert len(lines) == 3
    assert event["id"] in lines[0] and IGNORED in lines[0] and " 200 " in lines[0] and "ms" in lines[0]
    assert " 400 " in lines[1] and "malformed" in lines[1]
    assert "/health" in lines[2]
    assert not any(WEBHOOK_SECRET in line or "v1=" in line for line in lines)


class HeldEvent:
    """An uncommitted stripe_events row: a delivery of that event waits on it (a request in flight)."""

    def __init__(self, pg, db_name: str, event_id: str) -> None:
        self.pg, self.db_name = pg, db_name
        self.conn = psycopg.connect(pg.url(db_name))
        self.conn.execute(
            "INSERT INTO stripe_events (id, type, payload) VALUES (%s, 'customer.created', '{}')", (event_id,)
        )

    def wait_until_blocked(self) -> None:
        with psycopg.connect(self.pg.url(self.db_name), autocommit=True) as watcher:
            for _ in range(500):
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (self.db_name,),
                ).fetchone()[0]
                if waiting:
                    return
                time.sleep(0.02)
        raise AssertionError("the delivery never started waiting")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def post_in_background(client, event) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(client.post(event)))
    thread.start()
    return thread, result


def test_requests_beyond_the_concurrency_cap_get_503(start_listener, pg, db_name) -> None:
    listener = start_listener(max_concurrent_requests=1, busy_wait=0)
    slow = make_event(IGNORED, {"id": "cus_slow"})
    held = HeldEvent(pg, db_name, slow["id"])
    thread, result = post_in_background(listener.client, slow)
    try:
        held.wait_until_blocked()
        busy = listener.client.post(make_event(IGNORED, {"id": "cus_2"}))
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    finally:
        held.release()
        thread.join()
    assert result[0].status_code == 200 and result[0].json()["outcome"] == "ignored"


def _allow_connections(pg, db_name: str, allow: bool) -> None:
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db_name,)
            )


def test_database_down_answers_503_and_the_retried_delivery_succeeds(listener, webhook, pg, db_name) -> None:
    event = make_event(IGNORED, {"id": "cus_1"})
    assert webhook.get("/health").status_code == 200  # the pool now holds a connection that will die
    _allow_connections(pg, db_name, False)
    try:
        down = webhook.post(event)
        assert down.status_code == 503 and "database unavailable" in down.json()["error"]
        health = webhook.get("/health")
        assert health.status_code == 503 and health.json()["reason"] == "database unreachable"
    finally:
        _allow_connections(pg, db_name, True)
    retried = webhook.post(event)
    assert retried.status_code == 200 and retried.json()["outcome"] == "ignored"
    assert stored(listener.container, event["id"]).attempts == 1


def test_stop_refuses_new_connections_and_finishes_the_request_in_flight(start_listener, pg, db_name) -> None:
    listener = start_listener()
    slow = make_event(IGNORED, {"id": "cus_slow"})
    held = HeldEvent(pg, db_name, slow["id"])
    thread, result = post_in_background(listener.client, slow)
    stopped: list[bool] = []
    try:
        held.wait_until_blocked()
        stopper = threading.Thread(target=lambda: stopped.append(listener.server.stop()))
        stopper.start()
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", listener.server.port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the listener still accepts connections while stopping")
    finally:
        held.release()
    thread.join()
    stopper.join()
    assert result[0].status_code == 200 and result[0].headers["Connection"] == "close"
    assert stopped == [True]
    listener.thread.join()
    listener.stopped = True
    listener.container.close()


def test_connections_beyond_the_cap_get_503(start_listener) -> None:
    listener = start_listener(max_connections=1)
    idle = socket.create_connection(("127.0.0.1", listener.server.port), timeout=10)
    try:
        for _ in range(200):  # until the idle connection has been accepted
            if listener.server._connections:
                break
            time.sleep(0.01)
        refused = requests.get(listener.client.url + "/health", timeout=10)
        assert refused.status_code == 503 and refused.json()["error"] == "too many connections"
    finally:
        idle.close()


def test_a_client_that_stops_sending_is_disconnected(start_listener) -> None:
    slow_listener = start_listener(connection_timeout=0.3)
    with socket.create_connection(("127.0.0.1", slow_listener.server.port), timeout=10) as slow:
        slow.sendall(b"POST /webhooks/stripe/payment HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert slow.recv(1024) == b""  # closed by the listener, not answered
    assert slow_listener.client.get("/health").status_code == 200
