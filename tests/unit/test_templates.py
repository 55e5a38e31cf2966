"""Rendering the file templates: variables, escaping, money and dates, missing data, unknown keys."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.core.errors import ValidationError
from services.core.money import Money
from services.email.templates import CATALOG, EmailRenderer, format_date

FULL_DATA = {
    "email-verification": {"userName": "Jane Doe", "verificationUrl": "https://codex.test/verify?t=abc"},
    "password-reset": {"userName": "Jane Doe", "resetUrl": "https://codex.test/reset?t=abc"},
    "purchase-receipt": {
        "customerName": "Jane Doe",
        "contentTitle": "Intro to Pottery",
        "amount": Money(999, "usd"),
        "purchaseDate": datetime(2026, 11, 26, 15, 30, tzinfo=UTC),
        "accessUrl": "https://codex.test/library/intro",
    },
    "refund-confirmation": {
        "customerName": "Jane Doe",
        "contentTitle": "Intro to Pottery",
        "refundAmount": Money(1200, "eur"),
        "refundDate": date(2026, 11, 26),
    },
}


@pytest.fixture
def renderer() -> EmailRenderer:
    return EmailRenderer(app_url="https://codex.test", product_name="Codex")


def test_every_catalog_template_has_full_test_data() -> None:
    assert set(FULL_DATA) == set(CATALOG)
    for key, spec in CATALOG.items():
        assert set(FULL_DATA[key]) == set(spec.variable_names)


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_each_template_renders_every_variable_in_subject_or_bodies(renderer, key) -> None:
    email = renderer.render(key, FULL_DATA[key])
    assert email.subject and "\n" not in email.subject
    for name, value in FULL_DATA[key].items():
        shown = format_date(value) if isinstance(value, date) else str(value)
        assert shown in email.text, f"{name} missing from the text body"
        assert shown in email.html, f"{name} missing from the HTML body"
    assert email.html.lstrip().startswith("<!DOCTYPE html>") and "https://codex.test" in email.html
    assert "<" not in email.text  # the text part is readable in a plain mail client


def test_receipt_shows_money_and_date_formatted_once(renderer) -> None:
    email = renderer.render("purchase-receipt", FULL_DATA["purchase-receipt"])
    assert "Amount: $9.99" in email.text and "Purchase date: November 26, 2026" in email.text
    assert email.subject == "Your receipt for Intro to Pottery"


def test_refund_mentions_business_days_access_and_currency(renderer) -> None:
    email = renderer.render("refund-confirmation", FULL_DATA["refund-confirmation"])
    for body in (email.text, email.html):
        assert (
            "€12.00" in body and "5–10 business days" in body and "access to this content has ended" in body
        )


def test_password_reset_says_the_link_expires_in_one_hour(renderer) -> None:
    email = renderer.render("password-reset", FULL_DATA["password-reset"])
    assert "expires in 1 hour" in email.text and "expires in 1 hour" in email.html


def test_script_in_a_title_is_escaped_in_html(renderer) -> None:
    data = {**FULL_DATA["purchase-receipt"], "contentTitle": "<script>alert('x')</script>"}
    email = renderer.render("purchase-receipt", data)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in email.html
    # Subject and text are not HTML: they keep the title as the creator typed it.
    assert "<script>alert('x')</script>" in email.text and "<script>" in email.subject


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_missing_data_renders_as_empty_text(renderer, key) -> None:
    email = renderer.render(key, {})
    nones = renderer.render(key, dict.fromkeys(FULL_DATA[key]))
    for rendered in (email, nones):
        for part in (rendered.subject, rendered.text, rendered.html):
            assert "None" not in part and "undefined" not in part.lower() and "{{" not in part
    assert email.text == nones.text and email.html == nones.html


def test_greeting_without_a_name_reads_naturally(renderer) -> None:
    email = renderer.render("purchase-receipt", {"contentTitle": "Intro"})
    assert "Hi," in email.text and "Hi ," not in email.text


def test_dates_are_formatted_the_same_way_from_datetime_date_and_iso_text(renderer) -> None:
    texts = [
        renderer.render("refund-confirmation", {"refundDate": value}).text
        for value in (datetime(2026, 11, 26, 23, 59, tzinfo=UTC), date(2026, 11, 26), "2026-11-26")
    ]
    assert all("Refund date: November 26, 2026" in t for t in texts)


def test_unknown_template_is_refused_naming_the_known_keys(renderer) -> None:
    with pytest.raises(ValidationError) as err:
        renderer.render("welcome", {})
    assert "welcome" in str(err.value)
    for key in CATALOG:
        assert key in str(err.value)
