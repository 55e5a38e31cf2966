"""The purchase service against real PostgreSQL and the Stripe stand-in over HTTP."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import select, text

from services.bootstrap import Container
from services.core.errors import ConfigurationError, Conflict, ExternalServiceError, NotFound
from services.core.models import AuditLog, ContentPurchase, PurchaseStatus
from services.payments import checkout, purchases


def _row(session, purchase_id) -> ContentPurchase:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(ContentPurchase, uuid.UUID(str(purchase_id)))


def _checkout(stripe_container, shop):  # type: ignore[no-untyped-def]
    return checkout.create_checkout(stripe_container, "jane@example.com", str(shop.content.id))


# --- checkout ---


def test_checkout_writes_a_pending_purchase_and_a_session_with_metadata(
    stripe_container, stripe_standin, shop, session
) -> None:
    result = _checkout(stripe_container, shop)
    assert result.free is False and result.checkout_url and result.session_id.startswith("cs_test_")
    assert result.customer == "j***@example.com" and str(result.amount) == "$9.99"
    row = _row(session, result.purchase_id)
    assert row.status == PurchaseStatus.pending and row.stripe_checkout_session_id == result.session_id
    assert row.price_paid_cents == 999 and row.purchased_at is None
    stripe_session = stripe_standin.session(result.session_id)
    assert stripe_session["metadata"] == {
        "purchaseId": result.purchase_id,
        "customerId": str(shop.customer.id),
        "contentId": str(shop.content.id),
        "organizationId": str(shop.content.organization_id),
    }
    assert stripe_session["customer_email"] == "jane@example.com" and stripe_session["amount_total"] == 999
    assert f"/content/{shop.content.id}?purchase=success" in stripe_session["success_url"]


def test_unpublished_or_unknown_content_is_not_available(stripe_container, shop) -> None:
    for content_id in (str(shop.draft.id), str(uuid.uuid4())):
        with pytest.raises(NotFound, match="Content not found or not available"):
            checkout.create_checkout(stripe_container, "jane@example.com", content_id)


def test_a_second_checkout_while_one_is_pending_is_a_conflict(stripe_container, stripe_standin, shop) -> None:
    _checkout(stripe_container, shop)
    with pytest.raises(Conflict, match="Content already purchased or pending"):
        _checkout(stripe_container, shop)
    assert len(stripe_standin.sessions) == 1


@pytest.mark.commits
def test_free_content_is_granted_without_stripe_or_a_key(container, shop, session) -> None:
    # `container` has no STRIPE_SECRET_KEY at all: free content must not need one.
    result = checkout.create_checkout(container, str(shop.customer.id), str(shop.free.id))
    assert result.free is True and result.checkout_url is None and result.session_id is None
    row = _row(session, result.purchase_id)
    assert row.status == PurchaseStatus.completed and row.price_paid_cents == 0 and row.purchased_at
    with pytest.raises(Conflict):
        checkout.create_checkout(container, "jane@example.com", str(shop.free.id))


def test_free_content_makes_no_stripe_request(stripe_container, stripe_standin, shop) -> None:
    checkout.create_checkout(stripe_container, "jane@example.com", str(shop.free.id))
    assert stripe_standin.count() == 0


@pytest.mark.commits
def test_missing_stripe_key_writes_nothing(container, shop, session) -> None:
    with pytest.raises(ConfigurationError, match="STRIPE_SECRET_KEY is not set"):
        checkout.create_checkout(container, "jane@example.com", str(shop.content.id))
    assert session.scalars(select(ContentPurchase)).all() == []


def test_stripe_failure_fails_the_pending_purchase_so_the_customer_can_retry(
    stripe_container, stripe_standin, shop, session
) -> None:
    stripe_standin.fail_next(100, status=503)
    with pytest.raises(ExternalServiceError, match="Stripe is unreachable"):
        _checkout(stripe_container, shop)
    [failed] = session.scalars(select(ContentPurchase)).all()
    assert failed.status == PurchaseStatus.failed and failed.stripe_checkout_session_id is None
    stripe_standin.clear_faults()
    retried = _checkout(stripe_container, shop)
    assert _row(session, retried.purchase_id).status == PurchaseStatus.pending


def test_concurrent_checkouts_for_the_same_content_let_exactly_one_through(
    stripe_settings, stripe_standin, shop, session
) -> None:
    barrier = threading.Barrier(4)
    results: list[object] = []

    def buy() -> None:
        c = Container(stripe_settings)
        try:
            barrier.wait()
            results.append(checkout.create_checkout(c, "jane@example.com", str(shop.content.id)))
        except Conflict as exc:
            results.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=buy) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, checkout.CheckoutResult)]
    assert len(wins) == 1 and len(results) == 4
    assert all("already purchased or pending" in str(r) for r in results if r not in wins)
    assert len(session.scalars(select(ContentPurchase)).all()) == 1
    assert len(stripe_standin.sessions) == 1


def test_the_unique_index_decides_a_race_the_pre_check_cannot_see(
    stripe_container, stripe_standin, shop, container
) -> None:
    """Another transaction has inserted (not yet committed) the same live purchase: our insert waits on the
    partial unique index and, once that transaction commits, ends as the same Conflict."""
    with container.uow() as other:
        other.session.add(
            ContentPurchase(
                customer_id=shop.customer.id,
                content_id=shop.content.id,
                organization_id=shop.content.organization_id,
                price_paid_cents=999,
                status=PurchaseStatus.pending,
            )
        )
        other.session.flush()
        outcome: list[object] = []
        worker = threading.Thread(target=lambda: outcome.append(_try_checkout(stripe_container, shop)))
        worker.start()
        _wait_for_lock_wait(container)
        other.commit()
    worker.join()
    assert isinstance(outcome[0], Conflict) and stripe_standin.count() == 0


def _try_checkout(c, shop):  # type: ignore[no-untyped-def]
    try:
        return _checkout(c, shop)
    except Conflict as exc:
        return exc


def _wait_for_lock_wait(container) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2000):
        with container.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the second insert never waited on the unique index")


# --- completion, failure, refunds ---


def test_completing_twice_completes_once_and_sends_one_receipt(
    stripe_container, stripe_standin, shop, session, outbox
) -> None:
    checkout = _checkout(stripe_container, shop)
    paid = stripe_standin.mark_paid(checkout.session_id)
    first = purchases.apply_checkout_completed(stripe_container, paid)
    second = purchases.apply_checkout_completed(stripe_container, paid)
    assert (first.action, second.action) == ("completed", "already_completed")
    assert first.amount_mismatch is False and first.received_cents == 999
    row = _row(session, checkout.purchase_id)
    assert row.status == PurchaseStatus.completed and row.stripe_payment_intent_id == paid["payment_intent"]
    assert row.amount_received_cents == 999 and row.purchased_at is not None
    [receipt] = outbox.messages()
    assert receipt.to == "jane@example.com" and first.email.success
    assert "Intro to Pottery" in receipt.text and "$9.99" in receipt.text
    assert f"/content/{shop.content.id}" in receipt.text


def test_concurrent_completions_apply_once(stripe_settings, stripe_standin, shop, session, outbox) -> None:
    first = Container(stripe_settings)
    checkout = _checkout(first, shop)
    first.close()
    paid = stripe_standin.mark_paid(checkout.session_id)
    barrier = threading.Barrier(5)
    actions: list[str] = []

    def complete() -> None:
        c = Container(stripe_settings)
        barrier.wait()
        actions.append(purchases.apply_checkout_completed(c, paid).action)
        c.close()

    threads = [threading.Thread(target=complete) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(actions) == ["already_completed"] * 4 + ["completed"]
    assert len(outbox.messages()) == 1


def test_expired_after_completed_changes_nothing(stripe_container, stripe_standin, shop, session) -> None:
    checkout = _checkout(stripe_container, shop)
    paid = stripe_standin.mark_paid(checkout.session_id)
    stale_expired = {**paid, "status": "expired", "payment_status": "unpaid"}
    purchases.apply_checkout_completed(stripe_container, paid)
    assert purchases.apply_checkout_failed(stripe_container, stale_expired).action == "already_completed"
    assert _row(session, checkout.purchase_id).status == PurchaseStatus.completed


def test_completed_but_unpaid_stays_pending_until_the_async_payment_succeeds(
    stripe_container, stripe_standin, shop, session, outbox
) -> None:
    checkout = _checkout(stripe_container, shop)
    unpaid = stripe_standin.mark_paid(checkout.session_id, payment_status="unpaid")
    assert purchases.apply_checkout_completed(stripe_container, unpaid).action == "pending_unpaid"
    assert _row(session, checkout.purchase_id).status == PurchaseStatus.pending and outbox.messages() == []
    settled = stripe_standin.mark_async_payment(checkout.session_id, succeeded=True)
    assert purchases.apply_checkout_completed(stripe_container, settled).action == "completed"
    assert len(outbox.messages()) == 1


def test_expired_session_fails_the_purchase_and_the_customer_may_buy_again(
    stripe_container, stripe_standin, shop, session
) -> None:
    checkout = _checkout(stripe_container, shop)
    expired = stripe_standin.mark_expired(checkout.session_id)
    assert purchases.apply_checkout_failed(stripe_container, expired).action == "failed"
    assert purchases.apply_checkout_failed(stripe_container, expired).action == "already_failed"
    assert _row(session, checkout.purchase_id).status == PurchaseStatus.failed
    assert _checkout(stripe_container, shop).session_id != checkout.session_id


def test_a_different_amount_is_recorded_and_reported(stripe_container, stripe_standin, shop, session) -> None:
    checkout = _checkout(stripe_container, shop)
    paid = stripe_standin.mark_paid(checkout.session_id, amount_total=499)
    outcome = purchases.apply_checkout_completed(stripe_container, paid)
    assert outcome.action == "completed" and outcome.amount_mismatch is True
    assert (outcome.expected_cents, outcome.received_cents) == (999, 499)
    row = _row(session, checkout.purchase_id)
    assert row.amount_received_cents == 499 and row.price_paid_cents == 999
    [audit] = session.scalars(select(AuditLog).where(AuditLog.action == "purchase.amount_mismatch")).all()
    assert audit.target_id == checkout.purchase_id and audit.details["received_cents"] == 499


def test_a_session_naming_an_unknown_purchase_asks_for_a_retry(stripe_container, stripe_standin) -> None:
    session_obj = stripe_standin.create_session(metadata={"purchaseId": str(uuid.uuid4())})
    paid = stripe_standin.mark_paid(session_obj["id"])
    with pytest.raises(purchases.PurchaseNotFoundYet):
        purchases.apply_checkout_completed(stripe_container, paid)
    foreign = stripe_standin.mark_paid(stripe_standin.create_session()["id"])  # no purchaseId: not ours
    assert purchases.apply_checkout_completed(stripe_container, foreign).action == "not_found"


def test_a_session_found_by_its_id_when_metadata_is_missing(
    stripe_container, stripe_standin, shop, session
) -> None:
    checkout = _checkout(stripe_container, shop)
    paid = stripe_standin.mark_paid(checkout.session_id)
    outcome = purchases.apply_checkout_completed(stripe_container, {**paid, "metadata": {}})
    assert outcome.action == "completed" and outcome.purchase_id == checkout.purchase_id


def _completed(stripe_container, stripe_standin, shop):  # type: ignore[no-untyped-def]
    checkout = _checkout(stripe_container, shop)
    paid = stripe_standin.mark_paid(checkout.session_id)
    purchases.apply_checkout_completed(stripe_container, paid)
    return checkout, paid


def test_a_dashboard_refund_ends_access_and_allows_buying_again(
    stripe_container, stripe_standin, shop, session
) -> None:
    checkout, paid = _completed(stripe_container, stripe_standin, shop)
    refund = stripe_standin.dashboard_refund(paid["payment_intent"])
    [charge_event] = [e for e in stripe_standin.events if e["type"] == "charge.refunded"]
    [refund_event] = [e for e in stripe_standin.events if e["type"] == "refund.created"]
    outcome = purchases.apply_external_refund(stripe_container, charge_event["data"]["object"])
    assert outcome.action == "refund_recorded" and outcome.purchase_id == checkout.purchase_id
    row = _row(session, checkout.purchase_id)
    assert row.refunded_at is not None and row.refund_reason == "Refunded in Stripe"
    # the refund object (refund.created or reconcile's listing) fills in the refund id, once
    again = purchases.apply_external_refund(stripe_container, refund_event["data"]["object"])
    assert (
        again.action == "refund_id_recorded"
        and _row(session, checkout.purchase_id).stripe_refund_id == refund["id"]
    )
    assert session.scalars(select(AuditLog).where(AuditLog.action == "purchase.external_refund")).one()
    assert _checkout(stripe_container, shop).checkout_url


def test_a_refund_object_alone_is_recorded_with_its_id(
    stripe_container, stripe_standin, shop, session
) -> None:
    checkout, paid = _completed(stripe_container, stripe_standin, shop)
    refund = stripe_standin.dashboard_refund(paid["payment_intent"], reason="duplicate")
    outcome = purchases.apply_external_refund(stripe_container, refund)
    assert outcome.action == "refund_recorded"
    row = _row(session, checkout.purchase_id)
    assert row.stripe_refund_id == refund["id"] and row.refund_reason == "Refunded in Stripe (duplicate)"


def test_a_partial_refund_keeps_access_and_is_reported(
    stripe_container, stripe_standin, shop, session
) -> None:
    checkout, paid = _completed(stripe_container, stripe_standin, shop)
    stripe_standin.dashboard_refund(paid["payment_intent"], amount=300)
    [charge_event] = [e for e in stripe_standin.events if e["type"] == "charge.refunded"]
    outcome = purchases.apply_external_refund(stripe_container, charge_event["data"]["object"])
    assert outcome.action == "partial_refund" and outcome.received_cents == 300
    assert _row(session, checkout.purchase_id).refunded_at is None


def test_a_refund_for_a_payment_codex_does_not_know_is_not_found(stripe_container, stripe_standin) -> None:
    pi = stripe_standin.mark_paid(stripe_standin.create_session()["id"])["payment_intent"]
    refund = stripe_standin.dashboard_refund(pi)
    assert purchases.apply_external_refund(stripe_container, refund).action == "not_found"


def test_receipt_email_failure_does_not_undo_the_purchase(
    stripe_settings, stripe_standin, shop, session
) -> None:
    broken = Container(
        replace(stripe_settings, resend_api_key="re_test_x", resend_api_url="http://127.0.0.1:9")
    )
    checkout = _checkout(broken, shop)
    outcome = purchases.apply_checkout_completed(broken, stripe_standin.mark_paid(checkout.session_id))
    assert outcome.action == "completed" and outcome.email is not None and outcome.email.success is False
    assert _row(session, checkout.purchase_id).status == PurchaseStatus.completed
    broken.close()
