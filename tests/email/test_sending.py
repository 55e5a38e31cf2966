"""NotificationService.send_email through the outbox folder and through the real `resend` SDK."""

from __future__ import annotations

import email
import logging
from dataclasses import replace
from email import policy
from pathlib import Path

import pytest

from services.adapters.email_senders import build_sender
from services.core.errors import ValidationError
from services.core.money import Money
from services.email.notifications import NotificationService, build_notification_service
from services.settings import Settings
from tests.fixtures.email import RESEND_TEST_KEY, Outbox

RECEIPT = {
    "customerName": "Jane Doe",
    "contentTitle": "Intro to Pottery",
    "amount": Money(999),
    "purchaseDate": "2026-11-26",
    "accessUrl": "https://codex.test/library",
}


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    """No database needed: these tests send file templates only."""
    return Settings(
        codex_home=tmp_path / "home", email_from_name="Codex Team", email_from_address="hi@codex.test"
    )


def _service(settings: Settings) -> NotificationService:
    # No pause between the two attempts: the retry itself is what these tests look at.
    return NotificationService(build_sender(settings), settings, container=None, retry_delay=0)


# --- outbox ---


def test_outbox_file_is_a_valid_rfc5322_message_with_text_and_html(local_settings) -> None:
    result = build_notification_service(local_settings).send_email(
        "purchase-receipt", "jane@example.com", RECEIPT, reply_to="support@codex.test"
    )
    assert result.success and result.attempts == 1 and result.error is None
    path = Path(result.message_id)
    assert path.parent == local_settings.codex_home / "outbox" and path.suffix == ".eml"

    raw = path.read_bytes()
    assert b"\r\n" in raw and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    message = email.message_from_bytes(raw, policy=policy.strict)
    assert not message.defects
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["From"] == "Codex Team <hi@codex.test>"
    assert message["To"] == "jane@example.com"
    assert message["Subject"] == "Your receipt for Intro to Pottery"
    assert message["Reply-To"] == "support@codex.test"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@codex.test>")
    assert "Amount: $9.99" in message.get_body(("plain",)).get_content()
    assert "<strong>Intro to Pottery</strong>" in message.get_body(("html",)).get_content()


def test_outbox_fixture_lists_messages_in_send_order(local_settings) -> None:
    service = build_notification_service(local_settings)
    service.send_email("email-verification", "a@example.com", {"userName": "A"})
    service.send_email("password-reset", "b@example.com", {"userName": "B"}, reply_to="help@codex.test")
    first, second = Outbox(local_settings).messages()
    assert (first.to, first.subject, first.reply_to) == ("a@example.com", "Verify your email address", None)
    assert (second.to, second.reply_to) == ("b@example.com", "help@codex.test")
    assert "Hi B," in second.text and "Reset password" in second.html


def test_unwritable_outbox_fails_twice_without_raising(local_settings) -> None:
    local_settings.codex_home.mkdir(parents=True)
    (local_settings.codex_home / "outbox").write_text("a file where the folder should be")
    result = _service(local_settings).send_email("password-reset", "jane@example.com", {})
    assert not result.success and result.attempts == 2 and result.message_id is None
    assert "outbox folder" in result.error


def test_bad_recipient_is_refused_before_anything_is_sent(local_settings) -> None:
    service = build_notification_service(local_settings)
    for bad in ("", "jane", "jane@", "jane@example", "a b@example.com", "x@example.com\nBcc: y@example.com"):
        with pytest.raises(ValidationError):
            service.send_email("password-reset", bad, {})
    with pytest.raises(ValidationError, match="reply-to"):
        service.send_email("password-reset", "jane@example.com", {}, reply_to="not an address")
    with pytest.raises(ValidationError, match="known templates"):
        service.send_email("welcome", "jane@example.com", {})
    assert Outbox(local_settings).messages() == []


def test_logs_mask_the_recipient(local_settings, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="codex.email"):
        build_notification_service(local_settings).send_email("password-reset", "jane@example.com", {})
    assert "j***@example.com" in caplog.text and "jane@example.com" not in caplog.text


def test_outbox_describe_and_check(local_settings) -> None:
    service = build_notification_service(local_settings)
    outbox_dir = local_settings.codex_home / "outbox"
    assert service.describe() == f"outbox folder {outbox_dir}"
    assert "writable" in service.check() and outbox_dir.is_dir() and list(outbox_dir.iterdir()) == []


# --- Resend, through the real SDK and the capture server ---


def test_resend_receives_from_to_subject_html_text_and_reply_to(resend_server, local_settings) -> None:
    settings = replace(local_settings, resend_api_key=RESEND_TEST_KEY, resend_api_url=resend_server.url)
    result = build_notification_service(settings).send_email(
        "purchase-receipt", "jane@example.com", RECEIPT, reply_to="support@codex.test"
    )
    assert result.success and result.attempts == 1
    [request] = resend_server.requests
    assert request.path == "/emails" and request.email_id == result.message_id
    assert request.headers["authorization"] == f"Bearer {RESEND_TEST_KEY}"
    body = request.json
    assert body["from"] == "Codex Team <hi@codex.test>"
    assert body["to"] == ["jane@example.com"]
    assert body["subject"] == "Your receipt for Intro to Pottery"
    assert body["reply_to"] == "support@codex.test"
    assert "Amount: $9.99" in body["text"] and "Purchase date: November 26, 2026" in body["text"]
    assert "<strong>Intro to Pottery</strong>" in body["html"]
    assert Outbox(settings).messages() == []  # Resend configured: nothing in the outbox


def test_resend_without_reply_to_sends_no_reply_to_field(resend_settings, resend_server) -> None:
    assert (
        build_notification_service(resend_settings)
        .send_email("password-reset", "jane@example.com", {})
        .success
    )
    assert "reply_to" not in resend_server.emails[0]


def test_one_retry_then_success_with_the_same_idempotency_key(resend_settings, resend_server) -> None:
    resend_server.fail_next(1, status=500)
    result = _service(resend_settings).send_email("password-reset", "jane@example.com", {"userName": "Jane"})
    assert result.success and result.attempts == 2 and result.message_id == resend_server.requests[1].email_id
    first, second = resend_server.requests
    assert first.status == 500 and second.status == 200 and first.json == second.json
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert len(resend_server.emails) == 1


def test_two_failures_give_an_error_without_the_api_key(resend_settings, resend_server) -> None:
    resend_server.fail_next(2, status=422, message=f"Invalid `from` field (key {RESEND_TEST_KEY})")
    result = _service(resend_settings).send_email("password-reset", "jane@example.com", {})
    assert not result.success and result.attempts == 2 and result.message_id is None
    assert "422" in result.error and "Invalid `from` field" in result.error
    assert RESEND_TEST_KEY not in result.error
    assert len(resend_server.requests) == 2 and resend_server.emails == []


def test_unreachable_resend_is_a_failed_result_not_an_exception(resend_settings, resend_server) -> None:
    resend_server.stop()
    result = _service(resend_settings).send_email("password-reset", "jane@example.com", {})
    assert not result.success and result.attempts == 2
    assert result.error.startswith(f"Could not reach Resend at {resend_settings.resend_api_url}")


def test_a_caller_idempotency_key_reaches_resend(resend_settings, resend_server) -> None:
    service = build_notification_service(resend_settings)
    service.send_email("password-reset", "jane@example.com", {}, idempotency_key="refund-email-123")
    assert resend_server.requests[0].headers["idempotency-key"] == "refund-email-123"


def test_resend_describe_and_check_send_nothing(resend_settings, resend_server) -> None:
    service = build_notification_service(resend_settings)
    assert service.describe() == f"Resend at {resend_server.url} (from Codex <noreply@codex.local>)"
    note = service.check()
    assert "set" in note and RESEND_TEST_KEY not in note and resend_server.requests == []
