"""`codex email ...` as an operator sees it: output, exit codes, emails in the outbox or at Resend."""

from __future__ import annotations

import json
from pathlib import Path

from tests.factories import make_owner


def test_templates_lists_keys_variables_and_source(cli) -> None:
    result = cli("email", "templates")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["key", "variables", "source"]
    receipt = next(line for line in lines if line.startswith("purchase-receipt\t"))
    assert "customerName, contentTitle, amount, purchaseDate, accessUrl\tfile" in receipt
    data = json.loads(cli("email", "templates", "--json").stdout)
    assert [t["key"] for t in data] == [
        "email-verification",
        "password-reset",
        "purchase-receipt",
        "refund-confirmation",
    ]
    assert all(t["overridden"] is False for t in data)


def test_preview_fills_sample_values_and_takes_data(cli) -> None:
    result = cli(
        "email", "preview", "purchase-receipt", "--data", "contentTitle=Wheel Throwing", "-d", "amount=12 eur"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Template: purchase-receipt (file template)" in out
    assert "Subject:  Your receipt for Wheel Throwing" in out
    assert "Amount: €12.00" in out and "Hi Jane Doe," in out and "Purchase date: November 26, 2026" in out
    assert "--html" in out


def test_preview_text_and_html_only(cli) -> None:
    text = cli("email", "preview", "password-reset", "--text", "-d", "userName=Sam")
    assert (
        text.exit_code == 0
        and text.stdout.startswith("Password reset request")
        and "Subject" not in text.stdout
    )
    html = cli("email", "preview", "password-reset", "--html", "-d", "userName=<b>Sam</b>")
    assert html.exit_code == 0 and html.stdout.startswith("<!DOCTYPE html>")
    assert "&lt;b&gt;Sam&lt;/b&gt;" in html.stdout
    both = cli("email", "preview", "password-reset", "--text", "--html")
    assert both.exit_code == 2


def test_preview_json(cli) -> None:
    data = json.loads(cli("email", "preview", "refund-confirmation", "--json").stdout)
    assert data["subject"] == "Your refund for Intro to Pottery" and data["overridden"] is False
    assert "5–10 business days" in data["text"] and data["data"]["refundAmount"] == "$9.99"


def test_preview_refuses_unknown_template_variable_and_bad_data(cli) -> None:
    unknown = cli("email", "preview", "welcome")
    assert unknown.exit_code == 2 and "known templates: email-verification" in unknown.stderr
    typo = cli("email", "preview", "password-reset", "-d", "username=Sam")
    assert typo.exit_code == 2 and "no variable 'username'" in typo.stderr and "userName" in typo.stderr
    malformed = cli("email", "preview", "password-reset", "-d", "userName")
    assert malformed.exit_code == 2 and "NAME=VALUE" in malformed.output


def test_send_test_writes_to_the_outbox(cli, outbox) -> None:
    result = cli(
        "email", "send-test", "email-verification", "--to", "jane@example.com", "-d", "userName=Jane"
    )
    assert result.exit_code == 0, result.output
    assert "Sent email-verification to j***@example.com via outbox folder" in result.stdout
    assert "jane@example.com" not in result.stdout
    [message] = outbox.messages()
    assert message.to == "jane@example.com" and message.subject == "Verify your email address"
    assert "Welcome, Jane!" in message.text and str(message.path) in result.stdout


def test_send_test_through_resend(cli, resend_settings, resend_server) -> None:
    result = cli.with_settings(
        resend_api_key=resend_settings.resend_api_key, resend_api_url=resend_server.url
    )("email", "send-test", "purchase-receipt", "--to", "jane@example.com", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["via"].startswith("Resend at ") and data["recipient"] == "j***@example.com"
    [body] = resend_server.emails
    assert data["message_id"] == resend_server.requests[0].email_id
    assert body["to"] == ["jane@example.com"] and body["subject"] == "Your receipt for Intro to Pottery"


def test_send_test_failure_exits_1_with_the_provider_message(cli, resend_settings, resend_server) -> None:
    resend_server.fail_next(2, status=503, message="Service unavailable")
    result = cli.with_settings(
        resend_api_key=resend_settings.resend_api_key, resend_api_url=resend_server.url
    )("email", "send-test", "password-reset", "--to", "jane@example.com")
    assert result.exit_code == 1
    assert "not sent after 2 attempts" in result.stderr and "Service unavailable" in result.stderr
    assert resend_settings.resend_api_key not in result.output


def test_send_test_refuses_a_bad_address(cli, outbox) -> None:
    result = cli("email", "send-test", "password-reset", "--to", "jane.example.com")
    assert result.exit_code == 2 and "not a valid email address" in result.stderr
    assert outbox.messages() == []


def test_set_override_then_preview_then_reset(cli, session, tmp_path: Path) -> None:
    make_owner(session, email="ops@codex.test")
    session.commit()
    subject = tmp_path / "subject.txt"
    subject.write_text("Refund for {{ contentTitle }} processed")
    anonymous = cli("email", "set-override", "refund-confirmation", "--subject-file", str(subject))
    assert anonymous.exit_code == 2 and "--by" in anonymous.stderr

    ops = cli.with_settings(codex_operator_email="ops@codex.test")
    saved = ops("email", "set-override", "refund-confirmation", "--subject-file", str(subject))
    assert saved.exit_code == 0, saved.output
    preview = cli("email", "preview", "refund-confirmation")
    assert (
        "(database override)" in preview.stdout
        and "Subject:  Refund for Intro to Pottery processed" in preview.stdout
    )
    assert "\toverride (" in cli("email", "templates").stdout

    dry = ops("email", "reset-override", "refund-confirmation", "--dry-run")
    assert dry.exit_code == 0 and "dry run" in dry.stdout
    assert ops("email", "reset-override", "refund-confirmation").exit_code == 2  # no --yes off a terminal
    assert ops("email", "reset-override", "refund-confirmation", "--yes").exit_code == 0
    assert "(file template)" in cli("email", "preview", "refund-confirmation").stdout
    again = ops("email", "reset-override", "refund-confirmation", "--yes")
    assert again.exit_code == 3 and "has no override" in again.stderr


def test_set_override_with_a_syntax_error_names_the_line(cli, tmp_path: Path) -> None:
    html = tmp_path / "body.html"
    html.write_text(
        '{% extends "_layout.html" %}\n{% block content %}\n<p>{{ userName </p>\n{% endblock %}\n'
    )
    result = cli(
        "email", "set-override", "password-reset", "--html-file", str(html), "--by", "ops@codex.test"
    )
    assert result.exit_code == 2
    assert "HTML body has a template syntax error on line 3" in result.stderr
