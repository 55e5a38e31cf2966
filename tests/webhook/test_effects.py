"""What a delivered event does to purchases: completion, failure, refunds, exactly once, even under races."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import psycopg
from sqlalchemy import select

from services.core.models import AuditLog, ContentPurchase, PurchaseStatus, StripeEvent, StripeEventStatus
from tests.factories import make_content, make_org, make_purchase, make_user
from tests.webhook.conftest import WEBHOOK_SECRET, make_event
from tests.webhook.test_http import _allow_connections


def pending_purchase(session, standin, price: int = 999, purchase_id: uuid.UUID | None = None, commit=True):  # type: ignore[no-untyped-def]
    """A pending purchase (committed unless `commit=False`) and its open Checkout Session on the stand-in."""
    customer = make_user(session, email=f"buyer-{uuid.uuid4().hex[:6]}@example.com")
    content = make_content(session, make_org(session), price_cents=price, title="Deep Work")
    purchase_id = purchase_id or uuid.uuid4()
    checkout = standin.create_session(
        amount_total=price,
        customer_email=customer.email,
        metadata={
            "purchaseId": str(purchase_id),
            "customerId": str(customer.id),
            "contentId": str(content.id),
            "organizationId": str(content.organization_id),
        },
    )
    if not commit:
        session.rollback()
        return purchase_id, checkout, None
    purchase = make_purchase(
        session,
        customer,
        content,
        status=PurchaseStatus.pending,
        id=purchase_id,
        stripe_checkout_session_id=checkout["id"],
    )
    session.commit()
    return purchase.id, checkout, customer.email


def purchase_row(container, purchase_id) -> ContentPurchase:  # type: ignore[no-untyped-def]
    with container.uow() as uow:
        row = uow.session.get(ContentPurchase, purchase_id)
        uow.session.expunge(row)
        return row


def event_row(container, event_id: str) -> StripeEvent:  # type: ignore[no-untyped-def]
    with container.uow() as uow:
        row = uow.session.get(StripeEvent, event_id)
        uow.session.expunge(row)
        return row


def paid_event(standin, checkout) -> dict:  # type: ignore[no-untyped-def]
    standin.mark_paid(checkout["id"], emit_event=False)
    return standin.event_for_session("checkout.session.completed", checkout["id"])


def test_paid_checkout_completes_the_purchase_and_emails_a_receipt(
    listener, webhook, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, email = pending_purchase(session, stripe_standin)
    event = paid_event(stripe_standin, checkout)

    response = webhook.post(event)

    assert response.status_code == 200 and response.json() == {"received": True, "outcome": "processed"}
    row = purchase_row(listener.container, purchase_id)
    assert row.status == PurchaseStatus.completed and row.purchased_at is not None
    assert row.stripe_payment_intent_id == stripe_standin.session(checkout["id"])["payment_intent"]
    stored = event_row(listener.container, event["id"])
    assert stored.status == StripeEventStatus.processed and stored.attempts == 1 and stored.error is None
    listener.settle()
    [message] = outbox.messages()
    assert message.to == email and "Deep Work" in message.text


def test_duplicate_delivery_completes_once_and_sends_one_email(
    listener, webhook, session, stripe_standin, outbox
):  # type: ignore[no-untyped-def]
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    event = paid_event(stripe_standin, checkout)
    assert webhook.post(event).json()["outcome"] == "processed"
    again = webhook.post(event)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    listener.settle()
    assert len(outbox.messages()) == 1
    assert event_row(listener.container, event["id"]).attempts == 1


def test_simultaneous_deliveries_of_one_event_complete_once_with_one_email(
    listener, webhook, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    event = paid_event(stripe_standin, checkout)
    gate = threading.Barrier(8)
    answers: list = []

    def deliver() -> None:
        gate.wait()
        answers.append(webhook.post(event))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [a.status_code for a in answers] == [200] * 8
    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate"] * 7 + ["processed"]
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.completed
    listener.settle()
    assert len(outbox.messages()) == 1
    assert event_row(listener.container, event["id"]).attempts == 1


def test_completed_but_unpaid_stays_pending_until_the_async_payment_succeeds(
    listener, webhook, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    stripe_standin.mark_paid(checkout["id"], payment_status="unpaid", emit_event=False)
    unpaid = stripe_standin.event_for_session("checkout.session.completed", checkout["id"])

    assert webhook.post(unpaid).status_code == 200
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.pending
    assert event_row(listener.container, unpaid["id"]).status == StripeEventStatus.processed
    listener.settle()
    assert outbox.messages() == []

    stripe_standin.mark_async_payment(checkout["id"], succeeded=True, emit_event=False)
    settled = stripe_standin.event_for_session("checkout.session.async_payment_succeeded", checkout["id"])
    assert webhook.post(settled).status_code == 200
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.completed
    listener.settle()
    assert len(outbox.messages()) == 1


def test_expired_session_and_failed_async_payment_fail_the_purchase(
    listener, webhook, session, stripe_standin
) -> None:
    expired_id, expired_checkout, _ = pending_purchase(session, stripe_standin)
    stripe_standin.mark_expired(expired_checkout["id"], emit_event=False)
    expired = stripe_standin.event_for_session("checkout.session.expired", expired_checkout["id"])
    assert webhook.post(expired).status_code == 200
    assert purchase_row(listener.container, expired_id).status == PurchaseStatus.failed

    declined_id, declined_checkout, _ = pending_purchase(session, stripe_standin)
    stripe_standin.mark_paid(declined_checkout["id"], payment_status="unpaid", emit_event=False)
    stripe_standin.mark_async_payment(declined_checkout["id"], succeeded=False, emit_event=False)
    declined = stripe_standin.event_for_session(
        "checkout.session.async_payment_failed", declined_checkout["id"]
    )
    assert webhook.post(declined).status_code == 200
    assert purchase_row(listener.container, declined_id).status == PurchaseStatus.failed


def test_out_of_order_events_never_undo_a_completion_nor_email_twice(
    listener, webhook, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    stripe_standin.mark_paid(checkout["id"], payment_status="unpaid", emit_event=False)
    late_unpaid = stripe_standin.event_for_session("checkout.session.completed", checkout["id"])
    stripe_standin.mark_async_payment(checkout["id"], succeeded=True, emit_event=False)
    settled = stripe_standin.event_for_session("checkout.session.async_payment_succeeded", checkout["id"])
    expired = make_event("checkout.session.expired", {**settled["data"]["object"], "status": "expired"})

    # The settlement arrives first, then the older "completed (unpaid)", then a stray "expired".
    for event in (settled, late_unpaid, expired):
        assert webhook.post(event).status_code == 200

    row = purchase_row(listener.container, purchase_id)
    assert row.status == PurchaseStatus.completed and row.refunded_at is None
    listener.settle()
    assert len(outbox.messages()) == 1


def test_refund_made_in_the_stripe_dashboard_revokes_access(listener, webhook, session, stripe_standin):  # type: ignore[no-untyped-def]
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    assert webhook.post(paid_event(stripe_standin, checkout)).status_code == 200
    payment_intent = stripe_standin.session(checkout["id"])["payment_intent"]

    stripe_standin.dashboard_refund(payment_intent, reason="requested_by_customer")
    [refunded] = [e for e in stripe_standin.events if e["type"] == "charge.refunded"]
    assert webhook.post(refunded).status_code == 200

    row = purchase_row(listener.container, purchase_id)
    assert row.refunded_at is not None and row.refund_reason.startswith("Refunded in Stripe")
    assert webhook.post(refunded).json()["outcome"] == "duplicate"


def test_event_for_a_purchase_not_committed_yet_is_500_then_succeeds_on_retry(
    listener, webhook, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin, commit=False)
    event = paid_event(stripe_standin, checkout)

    first = webhook.post(event)
    assert first.status_code == 500
    failed = event_row(listener.container, event["id"])
    assert failed.status == StripeEventStatus.failed and failed.attempts == 1
    assert "not in the database yet" in failed.error and failed.payload == event

    # The web app's insert lands; Stripe retries the same event.
    customer = make_user(session, email=checkout["customer_email"])
    content = make_content(session, make_org(session), price_cents=999, title="Deep Work")
    make_purchase(session, customer, content, status=PurchaseStatus.pending, id=purchase_id)
    session.commit()
    retried = webhook.post(event)

    assert retried.status_code == 200 and retried.json()["outcome"] == "processed"
    stored = event_row(listener.container, event["id"])
    assert stored.status == StripeEventStatus.processed and stored.attempts == 2 and stored.error is None
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.completed
    listener.settle()
    assert len(outbox.messages()) == 1


def test_handler_failure_rolls_the_effect_back_and_keeps_the_failed_attempt(
    listener, webhook, session, stripe_standin, pg, db_name, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin, price=999)
    stripe_standin.mark_paid(checkout["id"], amount_total=500, emit_event=False)  # paid less: audited
    event = stripe_standin.event_for_session("checkout.session.completed", checkout["id"])
    with psycopg.connect(pg.url(db_name), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit log is read-only'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse()"
        )

    failed = webhook.post(event)

    assert failed.status_code == 500
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.pending  # rolled back
    stored = event_row(listener.container, event["id"])
    assert stored.status == StripeEventStatus.failed and "audit log is read-only" in stored.error
    listener.settle()
    assert outbox.messages() == []

    with psycopg.connect(pg.url(db_name), autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse ON audit_log")
    assert webhook.post(event).status_code == 200
    row = purchase_row(listener.container, purchase_id)
    assert row.status == PurchaseStatus.completed and row.amount_received_cents == 500
    with listener.container.uow() as uow:
        actions = uow.session.scalars(
            select(AuditLog.action).where(AuditLog.target_id == str(purchase_id))
        ).all()
    assert actions == ["purchase.amount_mismatch"]


def test_database_down_then_back_the_retried_delivery_completes(
    listener, webhook, session, stripe_standin, pg, db_name, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    session.close()
    event = paid_event(stripe_standin, checkout)
    assert webhook.get("/health").status_code == 200
    _allow_connections(pg, db_name, False)
    try:
        assert webhook.post(event).status_code == 503
    finally:
        _allow_connections(pg, db_name, True)
    assert webhook.post(event).status_code == 200
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.completed
    assert event_row(listener.container, event["id"]).attempts == 1
    listener.settle()
    assert len(outbox.messages()) == 1


def test_failed_receipt_email_is_logged_and_still_answers_200(
    start_listener, webhook_settings, resend_settings, resend_server, session, stripe_standin, caplog
) -> None:
    listener = start_listener(
        replace(resend_settings, stripe_webhook_secret_payment=webhook_settings.stripe_webhook_secret_payment)
    )
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    resend_server.fail_next(5, status=500)

    response = listener.client.post(paid_event(stripe_standin, checkout))

    assert response.status_code == 200 and response.json()["outcome"] == "processed"
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.completed
    assert resend_server.emails == []
    listener.settle()
    assert any("receipt email" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    assert WEBHOOK_SECRET not in caplog.text
