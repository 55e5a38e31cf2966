"""The email outbox: queued with the change, drained once (two drainers at once too), retried, parked
dead, retried by hand; Resend gets the message's idempotency key; the .eml outbox names files by id."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.bootstrap import Container
from services.core import models as m
from services.core.money import Money
from services.email.outbox import drain_outbox, queue_email
from tests.fixtures.email import RESEND_TEST_KEY

pytestmark = pytest.mark.commits


def _queue(container: Container, count: int = 1, prefix: str = "k") -> list[str]:
    ids = []
    with container.uow() as uow:
        for i in range(count):
            ids.append(
                str(
                    queue_email(
                        uow.session,
                        "purchase-receipt",
                        f"buyer{i}@example.com",
                        {
                            "customerName": f"Buyer {i}",
                            "contentTitle": "Deep Work",
                            "amount": Money(1999, "usd"),
                            "purchaseDate": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
                            "accessUrl": "http://localhost:5173/content/x",
                        },
                        idempotency_key=f"{prefix}-{i}",
                    )
                )
            )
        uow.commit()
    return ids


def _rows(container: Container) -> list[m.EmailOutbox]:
    with container.uow() as uow:
        rows = list(uow.session.scalars(select(m.EmailOutbox).order_by(m.EmailOutbox.created_at)))
        uow.session.expunge_all()
        return rows


@pytest.fixture
def resend_container(resend_settings):  # type: ignore[no-untyped-def]
    c = Container(resend_settings)
    yield c
    c.close()


def test_queued_email_is_sent_once_with_its_idempotency_key(resend_container, resend_server) -> None:
    [message_id] = _queue(resend_container)
    again = _queue(resend_container)  # the same cause queued twice: one row
    assert again == [message_id] and len(_rows(resend_container)) == 1

    first = drain_outbox(resend_container)
    second = drain_outbox(resend_container)

    assert (first.sent, second.sent) == (1, 0)
    [request] = resend_server.requests
    assert request.headers["idempotency-key"] == "k-0"
    assert request.json["to"] == ["buyer0@example.com"] and "$19.99" in request.json["text"]
    assert "November 26, 2026" in request.json["text"]
    [row] = _rows(resend_container)
    assert row.status == m.OutboxStatus.sent and row.provider_message_id == request.email_id


def test_resend_standin_answers_a_repeated_key_like_resend(resend_container, resend_server) -> None:
    import requests

    headers = {"Authorization": f"Bearer {RESEND_TEST_KEY}", "Idempotency-Key": "same"}
    body = {"from": "a@example.com", "to": ["b@example.com"], "subject": "s", "text": "t"}
    first = requests.post(resend_server.url + "/emails", json=body, headers=headers, timeout=10)
    again = requests.post(resend_server.url + "/emails", json=body, headers=headers, timeout=10)
    other = requests.post(
        resend_server.url + "/emails", json={**body, "text": "u"}, headers=headers, timeout=10
    )
    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 409 and other.json()["name"] == "invalid_idempotent_request"
    assert len(resend_server.emails) == 1


def test_a_crash_between_resend_accepting_and_our_mark_sends_no_second_email(
    resend_container, resend_server
) -> None:
    [message_id] = _queue(resend_container)
    drain_outbox(resend_container)
    # As if the drainer died before its commit: the row is pending again, Resend has the email.
    with resend_container.uow() as uow:
        uow.session.get_one(m.EmailOutbox, message_id).status = m.OutboxStatus.pending
        uow.commit()

    report = drain_outbox(resend_container)

    assert report.sent == 1 and len(resend_server.requests) == 2
    assert len(resend_server.emails) == 1  # the second request was answered with the first email's id
    [row] = _rows(resend_container)
    assert row.provider_message_id == resend_server.requests[0].email_id


def test_two_drainers_at_once_send_every_message_once(resend_settings, resend_server) -> None:
    setup = Container(resend_settings)
    _queue(setup, 40)
    drainers = [Container(resend_settings) for _ in range(2)]
    start = threading.Barrier(2)
    reports = []

    def run(c: Container) -> None:
        start.wait()
        reports.append(drain_outbox(c, batch_size=3))

    threads = [threading.Thread(target=run, args=(c,)) for c in drainers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    keys = [r.headers["idempotency-key"] for r in resend_server.requests]
    assert len(keys) == 40 and len(set(keys)) == 40  # no message was even requested twice
    assert sum(r.sent for r in reports) == 40
    assert all(row.status == m.OutboxStatus.sent for row in _rows(setup))
    for c in [setup, *drainers]:
        c.close()


def test_failures_retry_with_backoff_then_the_message_is_parked_dead(resend_container, resend_server) -> None:
    [message_id] = _queue(resend_container)
    resend_server.fail_next(10, status=500)

    first = drain_outbox(resend_container)  # 30 s backoff: one attempt, then it waits
    assert first.retried == 1 and drain_outbox(resend_container).deliveries == []
    [row] = _rows(resend_container)
    assert row.attempts == 1 and row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=20)
    assert "Internal server error" in (row.last_error or "")

    with resend_container.uow() as uow:  # the 30 s have passed
        uow.session.get_one(m.EmailOutbox, message_id).next_attempt_at = datetime.now(UTC)
        uow.commit()
    rest = drain_outbox(resend_container, retry_base=timedelta(0), max_attempts=5)

    assert [d.status for d in rest.deliveries] == ["retry", "retry", "retry", "dead"]
    [row] = _rows(resend_container)
    assert row.status == m.OutboxStatus.dead and row.attempts == 5 and str(row.id) == message_id
    assert len(resend_server.requests) == 5 and resend_server.emails == []


def test_email_drain_exits_4_on_dead_mail_and_retry_recovers_it(cli, resend_settings, resend_server) -> None:
    with_resend = cli.with_settings(
        resend_api_key=resend_settings.resend_api_key, resend_api_url=resend_settings.resend_api_url
    )
    c = Container(resend_settings)
    [message_id] = _queue(c)
    resend_server.fail_next(1, status=500)

    drained = with_resend("email", "drain", "--max-attempts", "1")

    assert drained.exit_code == 4
    assert "dead" in drained.stderr and "codex email retry --all-dead" in drained.stderr
    listed = with_resend("email", "queue", "--status", "dead", "--json")
    [item] = json.loads(listed.stdout)
    assert item["id"] == message_id and item["recipient"] == "b***@example.com"
    assert item["attempts"] == 1 and "Internal server error" in item["last_error"]

    retried = with_resend("email", "retry", message_id)

    assert retried.exit_code == 0, retried.output
    assert f"sent  {message_id}" in retried.stdout
    assert len(resend_server.emails) == 1
    assert with_resend("email", "drain").exit_code == 0
    assert json.loads(with_resend("email", "queue", "--json").stdout)[0]["status"] == "sent"
    c.close()


def test_retry_refuses_a_sent_message_and_an_unknown_id(cli, resend_settings, resend_server) -> None:
    with_resend = cli.with_settings(
        resend_api_key=resend_settings.resend_api_key, resend_api_url=resend_settings.resend_api_url
    )
    c = Container(resend_settings)
    [message_id] = _queue(c)
    drain_outbox(c)
    sent = with_resend("email", "retry", message_id)
    assert sent.exit_code != 0 and "already sent" in sent.stderr
    unknown = with_resend("email", "retry", "6f1c2a3e-0000-4000-8000-000000000000")
    assert unknown.exit_code == 3 and "No queued email" in unknown.stderr
    assert with_resend("email", "retry").exit_code == 2
    assert with_resend("email", "queue", "--status", "lost").exit_code == 2
    c.close()


def test_eml_outbox_names_files_by_message_id_and_writes_once(settings, outbox) -> None:
    c = Container(settings)
    [message_id] = _queue(c)
    drain_outbox(c)
    with c.uow() as uow:  # sent again, as after a crash before the mark
        uow.session.get_one(m.EmailOutbox, message_id).status = m.OutboxStatus.pending
        uow.commit()
    drain_outbox(c)

    [path] = outbox.paths()
    assert path.name == f"{message_id}.eml"
    assert outbox.messages()[0].message_id.startswith(f"<{message_id}@")
    with c.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(m.EmailOutbox)) == 1
    c.close()
