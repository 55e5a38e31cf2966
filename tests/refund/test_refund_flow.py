"""`codex refund` end to end: Stripe stand-in over HTTP, real PostgreSQL, outbox or Resend stand-in."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from sqlalchemy import select

from services.access.entitlements import has_access
from services.bootstrap import Container
from services.core import models as m
from services.core.errors import Conflict
from services.payments.refunds import RefundRequest, refund_idempotency_key, refund_purchase
from tests.factories import make_purchase
from tests.fixtures.email import RESEND_TEST_KEY
from tests.fixtures.stripe import STRIPE_SECRET_KEY
from tests.refund.conftest import OPERATOR, REASON


def test_refund_refunds_at_stripe_records_it_and_ends_access(refund_cli, world, outbox) -> None:
    purchase = world.paid_purchase(days_ago=2)
    assert has_access(world.session, world.customer.id, world.content.id)

    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")

    assert result.exit_code == 0, result.output
    [refund] = world.standin.refunds()
    assert refund["payment_intent"] == purchase.stripe_payment_intent_id
    assert refund["amount"] == 1999 and refund["reason"] == "requested_by_customer"
    assert refund["metadata"] == {
        "purchaseId": str(purchase.id),
        "requestedBy": str(world.owner.id),
        "internalReason": REASON,
    }
    [post] = [r for r in world.standin.requests if r.method == "POST" and r.path == "/v1/refunds"]
    assert post.idempotency_key == f"refund-{purchase.id}"

    row = world.reload(purchase)
    assert row.refunded_at is not None and row.refund_reason == REASON
    assert row.stripe_refund_id == refund["id"] and row.refunded_by == world.owner.id
    assert not has_access(world.session, world.customer.id, world.content.id)

    audit = world.session.scalars(select(m.AuditLog).where(m.AuditLog.action == "purchase.refund")).one()
    assert audit.actor == OPERATOR and audit.actor_id == world.owner.id
    assert audit.target_type == "content_purchase" and audit.target_id == str(purchase.id)
    assert audit.details["stripe_refund_id"] == refund["id"] and audit.details["override_window"] is False
    assert audit.details["reason"] == REASON and audit.details["amount_cents"] == 1999

    assert f"Refunded $19.99 to j***@example.com for 'Intro to Pottery' (Stripe refund {refund['id']})" in (
        result.stdout
    )
    assert "Refund confirmation emailed to j***@example.com." in result.stdout
    assert "jane.doe@example.com" not in result.output and STRIPE_SECRET_KEY not in result.output

    [email] = outbox.messages()
    assert email.to == "jane.doe@example.com"
    assert "Intro to Pottery" in email.subject
    assert (
        "$19.99" in email.text
        and "Jane Doe" in email.text
        and "access to this content has ended" in email.text
    )


def test_customer_may_buy_again_after_a_refund(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    assert refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes").exit_code == 0
    again = make_purchase(world.session, world.customer, world.content, status=m.PurchaseStatus.pending)
    world.session.commit()
    assert again.id != purchase.id and again.status == m.PurchaseStatus.pending


def test_json_output_names_purchase_refund_amount_and_email(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [refund] = world.standin.refunds()
    assert data["purchase_id"] == str(purchase.id) and data["refund_id"] == refund["id"]
    assert data["amount_cents"] == 1999 and data["currency"] == "usd" and data["amount"] == "$19.99"
    assert data["refunded"] is True and data["dry_run"] is False and data["free"] is False
    assert data["customer"] == "j***@example.com"
    assert data["email"]["sent"] is True and data["email"]["error"] is None


def test_dry_run_json_is_the_plan(refund_cli, world) -> None:
    purchase = world.paid_purchase(days_ago=5)
    data = json.loads(
        refund_cli("refund", str(purchase.id), "--reason", REASON, "--dry-run", "--json").stdout
    )
    assert data["dry_run"] is True and data["refunded"] is False and data["refund_id"] is None
    assert data["days_since_purchase"] == 5 and data["payment_intent"] == purchase.stripe_payment_intent_id
    assert data["email"] is None
    assert world.standin.refunds() == []


def test_free_purchase_is_revoked_without_stripe(cli, world, outbox) -> None:
    # No STRIPE_SECRET_KEY at all: a free purchase never needs Stripe.
    purchase = world.purchase(price_paid_cents=0)
    assert purchase.stripe_payment_intent_id is None
    world.standin.clear_log()

    result = cli("refund", str(purchase.id), "--reason", REASON, "--by", OPERATOR, "--yes", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["free"] is True and data["refund_id"] is None and data["amount"] == "$0.00"
    assert world.standin.requests == []
    row = world.reload(purchase)
    assert row.refunded_at is not None and row.stripe_refund_id is None and row.refunded_by == world.owner.id
    assert not has_access(world.session, world.customer.id, world.content.id)
    assert len(outbox.messages()) == 1


def test_paid_refund_without_stripe_configured_is_a_clear_error(cli, world) -> None:
    purchase = world.paid_purchase()
    result = cli("refund", str(purchase.id), "--reason", REASON, "--by", OPERATOR, "--yes")
    assert result.exit_code == 1 and "STRIPE_SECRET_KEY is not set" in result.stderr
    assert world.reload(purchase).refunded_at is None


def test_stripe_5xx_fails_cleanly_and_writes_nothing(refund_cli, world, outbox) -> None:
    purchase = world.paid_purchase()
    world.standin.fail_next(100, status=500, path="/v1/refunds")

    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")

    assert result.exit_code == 1
    # A 5xx may come after Stripe did the work: not "failed", but "not confirmed", and a rerun is safe.
    assert "Payment refund not confirmed:" in result.stderr and "again is safe" in result.stderr
    assert "An unknown error occurred on Stripe's side" in result.stderr
    assert "Traceback" not in result.output and STRIPE_SECRET_KEY not in result.output
    row = world.reload(purchase)
    assert row.refunded_at is None and row.stripe_refund_id is None
    assert world.session.scalars(select(m.AuditLog)).all() == []
    assert has_access(world.session, world.customer.id, world.content.id)
    assert outbox.messages() == []

    # Stripe recovers: the same command now refunds, exactly once.
    world.standin.clear_faults()
    assert refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes").exit_code == 0
    assert len(world.standin.refunds()) == 1


def test_stripe_refusal_is_reported_in_stripes_words(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    world.standin.dashboard_refund(purchase.stripe_payment_intent_id)  # refunded in the dashboard already
    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 1
    assert (
        "Payment refund failed: Charge ch_" in result.stderr and "has already been refunded" in result.stderr
    )
    assert "`codex reconcile` records it here" in result.stderr
    assert world.reload(purchase).refunded_at is None


def test_rerun_after_a_crash_between_stripe_and_commit_reuses_the_refund(
    refund_cli, world, stripe_settings
) -> None:
    purchase = world.paid_purchase()
    # What the crashed run did before dying: the Stripe refund, with the command's idempotency key and
    # parameters; the database was never written.
    crashed = Container(stripe_settings)
    try:
        first = crashed.stripe.create_refund(
            payment_intent=purchase.stripe_payment_intent_id,
            reason="requested_by_customer",
            metadata={
                "purchaseId": str(purchase.id),
                "requestedBy": str(world.owner.id),
                "internalReason": REASON,
            },
            idempotency_key=refund_idempotency_key(purchase.id),
        )
    finally:
        crashed.close()
    assert world.reload(purchase).refunded_at is None

    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["refund_id"] == first["id"]
    assert [r["id"] for r in world.standin.refunds()] == [first["id"]]
    assert world.reload(purchase).stripe_refund_id == first["id"]


def test_rerun_after_a_crash_with_another_reason_says_how_to_recover(
    refund_cli, world, stripe_settings
) -> None:
    purchase = world.paid_purchase()
    crashed = Container(stripe_settings)
    try:
        crashed.stripe.create_refund(
            payment_intent=purchase.stripe_payment_intent_id,
            reason="requested_by_customer",
            metadata={
                "purchaseId": str(purchase.id),
                "requestedBy": str(world.owner.id),
                "internalReason": REASON,
            },
            idempotency_key=refund_idempotency_key(purchase.id),
        )
    finally:
        crashed.close()
    result = refund_cli("refund", str(purchase.id), "--reason", "Some other wording entirely", "--yes")
    assert result.exit_code == 1
    assert "Payment refund failed: Keys for idempotent requests" in result.stderr
    assert "rerun with the first request's reason and operator to pick it up." in result.stderr
    assert len(world.standin.refunds()) == 1 and world.reload(purchase).refunded_at is None


@pytest.mark.pooled
def test_two_refunds_at_the_same_moment_refund_once(world, stripe_settings) -> None:
    purchase = world.paid_purchase()
    # Stripe answers slowly, so the first refund holds the row lock while the second one arrives.
    world.standin.slow(0.5, method="POST", path="/v1/refunds")
    settings = replace(stripe_settings, codex_operator_email=OPERATOR)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run() -> None:
        container = Container(settings)
        try:
            barrier.wait()
            outcomes.append(refund_purchase(container, RefundRequest(str(purchase.id), REASON)))
        except Conflict as exc:
            outcomes.append(exc)
        finally:
            container.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    refused = [o for o in outcomes if isinstance(o, Conflict)]
    done = [o for o in outcomes if not isinstance(o, Conflict)]
    assert len(done) == 1 and len(refused) == 1, outcomes
    assert "Purchase already refunded" in str(refused[0])
    assert world.standin.count("POST", "/v1/refunds") == 1
    [refund] = world.standin.refunds()
    assert done[0].refund_id == refund["id"] and world.reload(purchase).stripe_refund_id == refund["id"]


def test_failed_email_is_reported_and_the_refund_stands(refund_cli, world, resend_server) -> None:
    purchase = world.paid_purchase()
    resend_server.fail_next(2, status=500)  # the first try and the retry
    with_resend = refund_cli.with_settings(resend_api_key=RESEND_TEST_KEY, resend_api_url=resend_server.url)

    result = with_resend("refund", str(purchase.id), "--reason", REASON, "--yes", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["refunded"] is True and data["email"]["sent"] is False and data["email"]["attempts"] == 2
    assert "Internal server error" in data["email"]["error"]
    assert world.reload(purchase).refunded_at is not None
    assert RESEND_TEST_KEY not in result.output
    assert resend_server.emails == []


def test_failed_email_warning_in_text_output(refund_cli, world, resend_server) -> None:
    purchase = world.paid_purchase()
    resend_server.fail_next(2, status=500)
    with_resend = refund_cli.with_settings(resend_api_key=RESEND_TEST_KEY, resend_api_url=resend_server.url)
    result = with_resend("refund", str(purchase.id), "--reason", REASON, "--yes")
    assert result.exit_code == 0, result.output
    assert "Refunded $19.99" in result.stdout
    assert "Warning: the refund confirmation email to j***@example.com failed" in result.stderr
    assert "The refund itself is done." in result.stderr


def test_email_goes_through_resend_when_configured(refund_cli, world, resend_server) -> None:
    purchase = world.paid_purchase()
    with_resend = refund_cli.with_settings(resend_api_key=RESEND_TEST_KEY, resend_api_url=resend_server.url)
    assert with_resend("refund", str(purchase.id), "--reason", REASON, "--yes").exit_code == 0
    [email] = resend_server.emails
    assert email["to"] == ["jane.doe@example.com"] and "$19.99" in email["text"]
