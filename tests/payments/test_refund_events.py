"""Refund events as Stripe sends them (API 2022-11-15 on: charges carry no `refunds` list; a charge does
not copy the PaymentIntent's metadata; events arrive in any order), and events that can never apply."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select

from services.access.entitlements import has_access
from services.core.models import ContentPurchase, PurchaseStatus, StripeEvent
from services.payments import webhooks
from tests.factories import make_content, make_org, make_purchase, make_user


def _deliver(container: Any, event: dict[str, Any]) -> webhooks.WebhookOutcome:
    return webhooks.process_event(container, json.dumps(event).encode(), event)


def _pending(session, standin):  # type: ignore[no-untyped-def]
    customer = make_user(session, email=f"buyer-{uuid.uuid4().hex[:6]}@example.com")
    content = make_content(session, make_org(session), price_cents=999, title="Deep Work")
    purchase_id = uuid.uuid4()
    checkout = standin.create_session(
        amount_total=999, customer_email=customer.email, metadata={"purchaseId": str(purchase_id)}
    )
    make_purchase(
        session,
        customer,
        content,
        id=purchase_id,
        status=PurchaseStatus.pending,
        stripe_checkout_session_id=checkout["id"],
    )
    session.commit()
    return purchase_id, checkout, customer, content


def _events(standin, type_: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [e for e in standin.events if e["type"] == type_]


def _row(session, purchase_id) -> ContentPurchase:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(ContentPurchase, purchase_id)


def _paid(standin, checkout) -> tuple[dict[str, Any], str]:  # type: ignore[no-untyped-def]
    paid = standin.mark_paid(checkout["id"])
    [completed] = _events(standin, "checkout.session.completed")
    return completed, paid["payment_intent"]


# --- defect 3: the refund id comes from refund events ----------------------------------------------


def test_charge_refunded_then_refund_created_records_the_refund_id(
    stripe_container, stripe_standin, session
) -> None:  # type: ignore[no-untyped-def]
    purchase_id, checkout, _, _ = _pending(session, stripe_standin)
    completed, intent = _paid(stripe_standin, checkout)
    _deliver(stripe_container, completed)
    refund = stripe_standin.dashboard_refund(intent)
    [charge_refunded] = _events(stripe_standin, "charge.refunded")
    [refund_created] = _events(stripe_standin, "refund.created")
    assert "refunds" not in charge_refunded["data"]["object"]

    assert _deliver(stripe_container, charge_refunded).outcome == "processed"
    assert _row(session, purchase_id).refunded_at is not None
    outcome = _deliver(stripe_container, refund_created)

    assert outcome.outcome == "processed"
    assert _row(session, purchase_id).stripe_refund_id == refund["id"]


def test_two_partial_refund_events_adding_up_to_the_price_end_access(
    stripe_container, stripe_standin, session
) -> None:  # type: ignore[no-untyped-def]
    purchase_id, checkout, customer, content = _pending(session, stripe_standin)
    completed, intent = _paid(stripe_standin, checkout)
    _deliver(stripe_container, completed)
    stripe_standin.dashboard_refund(intent, amount=400)
    second = stripe_standin.dashboard_refund(intent, amount=599)

    for event in _events(stripe_standin, "refund.created"):
        _deliver(stripe_container, event)

    row = _row(session, purchase_id)
    assert row.refunded_at is not None and row.stripe_refund_id == second["id"]
    assert not has_access(session, customer.id, content.id)


# --- defect 4: a refund before the completion is never lost ------------------------------------------


def test_a_refund_before_the_completion_is_kept_and_the_completion_grants_nothing(
    stripe_container, stripe_standin, session, outbox
) -> None:  # type: ignore[no-untyped-def]
    purchase_id, checkout, customer, content = _pending(session, stripe_standin)
    completed, intent = _paid(stripe_standin, checkout)
    refund = stripe_standin.dashboard_refund(intent)
    [charge_refunded] = _events(stripe_standin, "charge.refunded")
    assert (charge_refunded["data"]["object"]["metadata"] or {}).get("purchaseId") is None

    _deliver(stripe_container, charge_refunded)  # Stripe does not guarantee order
    outcome = _deliver(stripe_container, completed)

    assert outcome.email in ("none",) and outbox.messages() == []
    row = _row(session, purchase_id)
    assert row.refunded_at is not None and row.stripe_payment_intent_id == intent
    assert not has_access(session, customer.id, content.id)
    # and the refund id arrives with its own event
    [refund_created] = _events(stripe_standin, "refund.created")
    _deliver(stripe_container, refund_created)
    assert _row(session, purchase_id).stripe_refund_id == refund["id"]


def test_a_refund_naming_the_purchase_before_the_completion_sends_no_receipt(
    stripe_container, stripe_standin, session, outbox
) -> None:  # type: ignore[no-untyped-def]
    purchase_id, checkout, customer, content = _pending(session, stripe_standin)
    completed, intent = _paid(stripe_standin, checkout)
    stripe_standin.dashboard_refund(intent)
    [charge_refunded] = _events(stripe_standin, "charge.refunded")
    charge_refunded["data"]["object"]["metadata"] = {"purchaseId": str(purchase_id)}

    _deliver(stripe_container, charge_refunded)
    outcome = _deliver(stripe_container, completed)

    assert outcome.email == "none" and outbox.messages() == []
    assert _row(session, purchase_id).refunded_at is not None
    assert not has_access(session, customer.id, content.id)


# --- defect 8: events that can never apply ---------------------------------------------------------


def _completed_event(standin, purchase_ref: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    checkout = standin.create_session(amount_total=999, metadata={"purchaseId": purchase_ref})
    standin.mark_paid(checkout["id"], emit_event=False)
    return standin.event_for_session("checkout.session.completed", checkout["id"])


def test_an_event_whose_purchase_id_is_not_a_uuid_is_stored_failed_permanently_and_answered_200(
    listener, webhook, stripe_standin, session
) -> None:  # type: ignore[no-untyped-def]
    for ref in ("not-a-uuid", "6f1c2b9e-0d4e-4f7a-9a51-2c8d7e3b1a40\x00"):
        event = _completed_event(stripe_standin, ref)

        first = webhook.post(event)
        again = webhook.post(event)

        assert first.status_code == 200 and again.status_code == 200, first.text
        session.expire_all()
        stored = session.scalars(select(StripeEvent).where(StripeEvent.id == event["id"])).one()
        assert stored.status.value == "failed_permanently" and "purchaseId" in (stored.error or "")
        assert stored.attempts == 1  # the redelivery did not apply it again
