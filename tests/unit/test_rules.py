"""Pure rules with no I/O: durations, money, masking, paging cursors, refund eligibility, reconcile
decisions and the exit-code map. This tier runs in well under a second."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from codex_cli.app import exit_code_for
from services.core import errors
from services.core.durations import parse_duration
from services.core.masking import mask_email, mask_secret, mask_url, url_target
from services.core.models import ContentPurchase, PurchaseStatus
from services.core.money import Money, format_money
from services.core.paging import decode_cursor, encode_cursor
from services.payments.reconcile import session_outcome
from services.payments.refunds import REFUND_WINDOW, _check_eligible

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), ("15m", timedelta(minutes=15)), (" 24h ", timedelta(hours=24))]
    + [("7d", timedelta(days=7)), ("2w", timedelta(weeks=2))],
)
def test_durations_parse_number_and_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "1.5h", "-1d", "7 days", "7y"])
def test_malformed_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(errors.ValidationError, match="like 30s, 15m, 24h or 7d"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [(999, "usd", "$9.99"), (1200, "eur", "€12.00"), (123456, "usd", "$1,234.56"), (500, "jpy", "¥500")]
    + [(-250, "usd", "-$2.50"), (1000, "chf", "10.00 CHF"), (0, "usd", "$0.00")]
    # Stripe takes HUF, ISK and TWD with two decimals (not zero-decimal), KRW whole, KWD in thousandths
    + [(17500, "huf", "175.00 HUF"), (50000, "isk", "500.00 ISK"), (1500, "twd", "15.00 TWD")]
    + [(1000, "krw", "1,000 KRW"), (1500, "kwd", "1.500 KWD")],
)
def test_money_is_formatted_from_integer_cents(cents: int, currency: str, text: str) -> None:
    assert format_money(cents, currency) == text
    assert str(Money(cents, currency)) == text


def test_emails_are_masked_to_first_letter_and_domain() -> None:
    assert mask_email("jane@example.com") == "j***@example.com"
    assert mask_email("no-at-sign") == "***"
    assert mask_email(None) == ""


def test_secrets_show_only_a_recognisable_prefix_and_the_last_four() -> None:
    assert mask_secret("sk_test_51Abcdefghijklmnop4242") == "****…4242"
    assert mask_secret("re_123456789") == "****"
    assert mask_secret("short") == "****"
    assert "Abcdef" not in mask_secret("whsec_Abcdefghijklmnopqr")


def test_database_passwords_are_masked_and_the_target_named() -> None:
    url = "postgresql://app:s3cret@ep-cool.neon.tech:5432/codex?sslmode=require"
    assert "s3cret" not in mask_url(url)
    assert mask_url(url).startswith("postgresql://app:***@ep-cool.neon.tech")
    assert url_target(url) == "ep-cool.neon.tech:5432/codex"
    assert url_target("postgresql://postgres:@/postgres?host=/tmp/pg") == "/tmp/pg/postgres"


def test_paging_cursors_round_trip_and_garbage_is_a_validation_error() -> None:
    row = uuid.uuid4()
    assert decode_cursor(encode_cursor(NOW, row)) == (NOW, row)
    with pytest.raises(errors.ValidationError):
        decode_cursor("not-a-cursor")


def _purchase(**changes: object) -> ContentPurchase:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "status": PurchaseStatus.completed,
        "price_paid_cents": 999,
        "currency": "usd",
        "stripe_payment_intent_id": "pi_123",
        "purchased_at": NOW - timedelta(days=3),
        "refunded_at": None,
    }
    fields.update(changes)
    return ContentPurchase(**fields)


def test_a_recent_completed_purchase_is_eligible_for_refund() -> None:
    purchase = _purchase()
    assert _check_eligible(purchase, purchase.id, False, NOW) is purchase


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": PurchaseStatus.pending}, "not completed"),
        ({"refunded_at": NOW - timedelta(days=1)}, "already refunded"),
        ({"purchased_at": NOW - REFUND_WINDOW - timedelta(minutes=1)}, "Refund window expired"),
        ({"stripe_payment_intent_id": None}, "no Stripe payment intent"),
    ],
)
def test_ineligible_purchases_are_refused_with_the_reason(changes: dict[str, object], message: str) -> None:
    purchase = _purchase(**changes)
    with pytest.raises(errors.Conflict, match=message):
        _check_eligible(purchase, purchase.id, False, NOW)


def test_the_window_override_allows_an_old_purchase_and_a_missing_one_is_not_found() -> None:
    old = _purchase(purchased_at=NOW - timedelta(days=90))
    assert _check_eligible(old, old.id, True, NOW) is old
    with pytest.raises(errors.NotFound):
        _check_eligible(None, uuid.uuid4(), False, NOW)


@pytest.mark.parametrize(
    ("stripe_session", "outcome"),
    [
        ({"status": "complete", "payment_status": "paid"}, "completed"),
        ({"status": "complete", "payment_status": "no_payment_required"}, "completed"),
        ({"status": "expired", "payment_status": "unpaid"}, "failed"),
        ({"status": "open", "payment_status": "unpaid"}, None),
        ({"status": "complete", "payment_status": "unpaid"}, None),
    ],
)
def test_reconcile_decides_from_the_checkout_session(
    stripe_session: dict[str, str], outcome: str | None
) -> None:
    assert session_outcome(stripe_session) == outcome


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ValidationError("x"), 2),
        (errors.NotFound("x"), 3),
        (errors.NeedsAttention("x"), 4),
        (errors.Conflict("x"), 1),
        (errors.ExternalServiceError("x"), 1),
        (errors.DatabaseUnavailable("x"), 1),
    ],
)
def test_each_error_class_maps_to_its_documented_exit_code(error: errors.CodexError, code: int) -> None:
    assert exit_code_for(error) == code
