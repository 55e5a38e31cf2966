"""`codex refund`: who may refund what, and the message for every refusal. Nothing is written on refusal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.core import models as m
from tests.factories import make_user
from tests.refund.conftest import OPERATOR, REASON


def _audit_rows(session) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(
        select(func.count()).select_from(m.AuditLog).where(m.AuditLog.action == "purchase.refund")
    )


def _assert_untouched(world, purchase) -> None:  # type: ignore[no-untyped-def]
    row = world.reload(purchase)
    assert row.refunded_at is None and row.stripe_refund_id is None and row.refund_reason is None
    assert world.standin.refunds() == []
    assert _audit_rows(world.session) == 0


def test_purchase_id_must_be_a_uuid(refund_cli, world) -> None:
    result = refund_cli("refund", "purchase-123", "--reason", REASON, "--yes")
    assert result.exit_code == 2
    assert "'purchase-123' is not a purchase id" in result.stderr


def test_reason_shorter_than_ten_characters_is_refused(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    result = refund_cli("refund", str(purchase.id), "--reason", "  too short ", "--yes")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: Refund reason must be at least 10 characters."
    _assert_untouched(world, purchase)


def test_unknown_purchase_is_not_found(refund_cli, world) -> None:
    missing = uuid.uuid4()
    result = refund_cli("refund", str(missing), "--reason", REASON, "--yes")
    assert result.exit_code == 3
    assert f"Purchase not found: {missing}" in result.stderr


def test_operator_must_be_named(stripe_cli, world) -> None:
    purchase = world.paid_purchase()
    result = stripe_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: Say who you are: set CODEX_OPERATOR_EMAIL or give the email of a platform owner (--by)."
    )
    _assert_untouched(world, purchase)


def test_customer_cannot_refund_even_their_own_purchase(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--by", world.customer.email, "--yes")
    assert result.exit_code == 1
    # The operator typed the address: it is echoed as typed.
    assert f"Operator {world.customer.email} is not a platform_owner user" in result.stderr
    _assert_untouched(world, purchase)


def test_unknown_operator_is_refused(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--by", "nobody@codex.test", "--yes")
    assert result.exit_code == 1 and "is not a platform_owner user" in result.stderr
    _assert_untouched(world, purchase)


def test_pending_purchase_is_not_completed(refund_cli, world) -> None:
    purchase = world.purchase(status=m.PurchaseStatus.pending)
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 1
    assert "Purchase not completed (its status is pending)" in result.stderr
    _assert_untouched(world, purchase)


def test_failed_purchase_is_not_completed(refund_cli, world) -> None:
    purchase = world.purchase(status=m.PurchaseStatus.failed)
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 1 and "Purchase not completed" in result.stderr


def test_refunding_twice_says_already_refunded(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    assert refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes").exit_code == 0
    again = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert again.exit_code == 1
    assert "Purchase already refunded" in again.stderr
    assert len(world.standin.refunds()) == 1


def test_refund_outside_window_is_refused(refund_cli, world) -> None:
    purchase = world.paid_purchase(days_ago=31)
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 1
    assert "Refund window expired (30 days): purchased 31 days ago" in result.stderr
    assert "override the window to refund anyway (--override-window)." in result.stderr
    _assert_untouched(world, purchase)


def test_refund_on_day_29_is_inside_the_window(refund_cli, world) -> None:
    purchase = world.paid_purchase(days_ago=29.9)
    assert refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes").exit_code == 0


def test_override_window_refunds_and_is_recorded_in_the_audit_log(refund_cli, world) -> None:
    purchase = world.paid_purchase(days_ago=45)
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes", "--override-window")
    assert result.exit_code == 0, result.output
    assert world.reload(purchase).refunded_at is not None
    world.session.expire_all()
    audit = world.session.scalars(select(m.AuditLog).where(m.AuditLog.action == "purchase.refund")).one()
    assert audit.details["override_window"] is True and audit.details["outside_window"] is True
    assert audit.details["days_since_purchase"] == 45


def test_paid_purchase_without_payment_intent_is_refused(refund_cli, world) -> None:
    purchase = world.purchase(price_paid_cents=500, stripe_payment_intent_id=None)
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 1 and "has no Stripe payment intent" in result.stderr
    _assert_untouched(world, purchase)


def test_without_yes_off_a_terminal_nothing_happens(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, input="y\n")
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    _assert_untouched(world, purchase)


def test_dry_run_changes_nothing_and_says_what_would_happen(refund_cli, world) -> None:
    purchase = world.paid_purchase(days_ago=3)
    world.standin.clear_log()
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run: would refund" in result.stdout
    assert (
        "$19.99" in result.stdout
        and "Intro to Pottery" in result.stdout
        and "j***@example.com" in result.stdout
    )
    assert "Nothing was changed." in result.stdout
    assert world.standin.requests == []
    _assert_untouched(world, purchase)


def test_dry_run_of_an_ineligible_purchase_fails_like_the_real_run(refund_cli, world) -> None:
    purchase = world.paid_purchase(days_ago=40)
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--dry-run", "--json")
    assert result.exit_code == 1 and "Refund window expired (30 days)" in result.stderr


def test_by_option_names_another_platform_owner(refund_cli, world) -> None:
    other = make_user(world.session, email="second.owner@codex.test", role=m.UserRole.platform_owner)
    world.session.commit()
    purchase = world.paid_purchase()
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--by", other.email, "--yes")
    assert result.exit_code == 0, result.output
    assert world.reload(purchase).refunded_by == other.id
    assert other.email != OPERATOR


def test_window_is_measured_from_purchased_at(refund_cli, world) -> None:
    # Created long ago (pending), completed yesterday: the window starts at the purchase, not the row.
    purchase = world.paid_purchase(days_ago=1)
    world.session.execute(
        m.ContentPurchase.__table__.update()
        .where(m.ContentPurchase.id == purchase.id)
        .values(created_at=datetime.now(UTC) - timedelta(days=90))
    )
    world.session.commit()
    assert refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes").exit_code == 0
