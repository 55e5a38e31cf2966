"""`codex reconcile` against the Stripe stand-in over HTTP and a real PostgreSQL."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from services.adapters.locks import run_lock
from services.core import models as m
from tests import factories as f

HOUR = 3600


def _pending(
    session,
    standin,
    *,
    age_s: int = HOUR,
    session_age_s: int | None = None,
    price: int = 999,
    with_session: bool = True,
    customer=None,
    content=None,
):  # type: ignore[no-untyped-def]
    """A pending purchase created `age_s` ago with its Checkout Session in the stand-in."""
    org = content.organization_id if content is not None else None
    if content is None:
        org_row = f.make_org(session)
        content = f.make_content(session, org_row, price_cents=price)
        org = org_row.id
    customer = customer or f.make_user(session)
    created = datetime.now(UTC) - timedelta(seconds=age_s)
    purchase = f.make_purchase(
        session, customer, content, status=m.PurchaseStatus.pending, created_at=created
    )
    if with_session:
        stripe_session = standin.create_session(
            amount_total=price,
            metadata={
                "purchaseId": str(purchase.id),
                "customerId": str(customer.id),
                "contentId": str(content.id),
                "organizationId": str(org),
            },
            customer_email=customer.email,
            created=time.time() - (session_age_s if session_age_s is not None else age_s),
        )
        purchase.stripe_checkout_session_id = stripe_session["id"]
    session.flush()
    return purchase


def _completed(session, standin):  # type: ignore[no-untyped-def]
    """A purchase completed through Stripe earlier (its payment intent exists in the stand-in)."""
    purchase = _pending(session, standin, age_s=2 * 24 * HOUR)
    paid = standin.mark_paid(purchase.stripe_checkout_session_id, emit_event=False)
    purchase.status = m.PurchaseStatus.completed
    purchase.purchased_at = datetime.now(UTC) - timedelta(days=2)
    purchase.stripe_payment_intent_id = paid["payment_intent"]
    session.flush()
    return purchase


def _status(session, purchase) -> str:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(m.ContentPurchase, purchase.id).status.value


def test_each_drift_kind_is_fixed_and_a_second_run_finds_nothing(
    session, stripe_standin, stripe_cli, outbox
) -> None:
    paid = _pending(session, stripe_standin)
    expired = _pending(session, stripe_standin)
    still_open = _pending(session, stripe_standin)
    refunded = _completed(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(paid.stripe_checkout_session_id)
    stripe_standin.mark_expired(expired.stripe_checkout_session_id)
    stripe_standin.dashboard_refund(refunded.stripe_payment_intent_id)

    result = stripe_cli("reconcile", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fixed"] == {"completed": 1, "failed": 1, "refund_recorded": 1}
    assert report["unresolved"] == []
    assert _status(session, paid) == "completed"
    assert _status(session, expired) == "failed"
    assert _status(session, still_open) == "pending"
    row = session.get(m.ContentPurchase, refunded.id)
    assert row.refunded_at is not None and row.stripe_refund_id
    receipts = [msg for msg in outbox.messages() if paid_email(session, paid) in msg.to]
    assert len(receipts) == 1
    actions = set(session.scalars(select(m.AuditLog.action).where(m.AuditLog.actor == "codex reconcile")))
    assert actions == {"reconcile.completed", "reconcile.failed", "reconcile.refund_recorded"}

    again = stripe_cli("reconcile")
    assert again.exit_code == 0 and again.stdout == ""  # quiet when all is well


def paid_email(session, purchase) -> str:  # type: ignore[no-untyped-def]
    return session.get(m.User, purchase.customer_id).email


def test_summary_table_when_something_was_fixed(session, stripe_standin, stripe_cli) -> None:
    paid = _pending(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(paid.stripe_checkout_session_id)
    result = stripe_cli("reconcile")
    assert result.exit_code == 0
    assert "fixed: completed\t1" in result.stdout and "needs a person\t0" in result.stdout


def test_purchase_older_than_the_window_is_retrieved_once(session, stripe_standin, stripe_cli) -> None:
    old = _pending(session, stripe_standin, age_s=10 * 24 * HOUR)
    recent = _pending(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(old.stripe_checkout_session_id)
    stripe_standin.mark_paid(recent.stripe_checkout_session_id)
    stripe_standin.clear_log()
    result = stripe_cli("reconcile", "--since", "7d", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["retrieved_sessions"] == 1
    assert _status(session, old) == "completed" and _status(session, recent) == "completed"
    retrieves = [
        r
        for r in stripe_standin.requests
        if r.method == "GET" and r.path.startswith("/v1/checkout/sessions/")
    ]
    assert [r.path for r in retrieves] == [f"/v1/checkout/sessions/{old.stripe_checkout_session_id}"]


def test_min_age_skips_a_customer_paying_right_now(session, stripe_standin, stripe_cli) -> None:
    young = _pending(session, stripe_standin, age_s=60)
    session.commit()
    stripe_standin.mark_paid(young.stripe_checkout_session_id)
    assert stripe_cli("reconcile", "--min-age", "15m").exit_code == 0
    assert _status(session, young) == "pending"
    assert stripe_cli("reconcile", "--min-age", "30s").exit_code == 0
    assert _status(session, young) == "completed"


def test_what_needs_a_person_exits_4(session, stripe_standin, stripe_cli) -> None:
    unknown_session = _pending(session, stripe_standin, with_session=False)
    unknown_session.stripe_checkout_session_id = "cs_test_never_existed"
    mismatch = _pending(session, stripe_standin, price=999)
    session.commit()
    stripe_standin.mark_paid(mismatch.stripe_checkout_session_id, amount_total=500)
    stray = stripe_standin.create_session(metadata={"purchaseId": "7d2c1a52-5a7e-4a57-9b0c-3b9f2f1d0c11"})
    stripe_standin.mark_paid(stray["id"])

    result = stripe_cli("reconcile")
    assert result.exit_code == 4, result.output
    assert "session_unknown_to_stripe" in result.stdout
    assert "amount_mismatch" in result.stdout and "paid 500 cents, price 999 cents" in result.stdout
    assert "paid_session_unknown_purchase" in result.stdout and stray["id"] in result.stdout
    assert _status(session, mismatch) == "completed"  # access granted, the difference reported
    assert session.get(m.ContentPurchase, mismatch.id).amount_received_cents == 500


def test_dry_run_changes_nothing(session, stripe_standin, stripe_cli, outbox) -> None:
    paid = _pending(session, stripe_standin)
    expired = _pending(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(paid.stripe_checkout_session_id)
    stripe_standin.mark_expired(expired.stripe_checkout_session_id)
    result = stripe_cli("reconcile", "--dry-run", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["fixed"] == {"completed": 1, "failed": 1}
    assert _status(session, paid) == "pending" and _status(session, expired) == "pending"
    assert outbox.messages() == []
    assert session.execute(text("SELECT count(*) FROM audit_log")).scalar() == 0


def test_a_429_mid_run_is_retried(session, stripe_standin, stripe_cli) -> None:
    paid = _pending(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(paid.stripe_checkout_session_id)
    stripe_standin.fail_next(2, status=429, path="/v1/refunds")
    result = stripe_cli("reconcile")
    assert result.exit_code == 0, result.output
    assert _status(session, paid) == "completed"


def test_stripe_staying_down_exits_1_and_keeps_fixes_made(session, stripe_standin, stripe_cli) -> None:
    paid = _pending(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(paid.stripe_checkout_session_id)
    stripe_standin.fail_next(100, status=503, path="/v1/refunds")
    result = stripe_cli("reconcile")
    assert result.exit_code == 1
    assert "Stripe" in result.stderr and "sk_test" not in result.output and "Traceback" not in result.output
    assert _status(session, paid) == "completed"  # the fix before the failure stays


def test_a_second_run_at_the_same_time_exits_0(session, stripe_standin, stripe_cli, container) -> None:
    paid = _pending(session, stripe_standin)
    session.commit()
    stripe_standin.mark_paid(paid.stripe_checkout_session_id)
    with run_lock(container.engine, "codex-reconcile", timedelta(hours=1)) as held:
        assert held.acquired
        result = stripe_cli("reconcile")
    assert result.exit_code == 0
    assert "Another reconcile run is in progress" in result.stdout
    assert f"(pid {os.getpid()} on {socket.gethostname()} since " in result.stdout
    assert _status(session, paid) == "pending"


def test_request_count_for_a_known_mix(session, stripe_standin, stripe_cli) -> None:
    org = f.make_org(session)
    content = f.make_content(session, org)
    purchases = [_pending(session, stripe_standin, content=content) for _ in range(230)]
    old = _pending(session, stripe_standin, age_s=9 * 24 * HOUR)
    session.commit()
    for p in purchases[:120]:
        stripe_standin.mark_paid(p.stripe_checkout_session_id, emit_event=False)
    for p in purchases[120:200]:
        stripe_standin.mark_expired(p.stripe_checkout_session_id, emit_event=False)
    stripe_standin.clear_log()

    result = stripe_cli("reconcile", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fixed"] == {"completed": 120, "failed": 80}
    listed_pages = math.ceil(231 / 100)  # the old purchase's session falls outside the window
    assert stripe_standin.count(path="/v1/checkout/sessions") == listed_pages + 1  # + one retrieve
    assert stripe_standin.count(path="/v1/refunds") == 1
    assert len(stripe_standin.requests) == listed_pages + 2
    assert _status(session, old) == "pending"


def test_a_purchase_whose_session_id_was_never_stored_is_matched_by_metadata(
    session, stripe_standin, stripe_cli
) -> None:
    purchase = _pending(session, stripe_standin)
    session_id = purchase.stripe_checkout_session_id
    purchase.stripe_checkout_session_id = None  # Stripe answered, but saving its id failed
    lost = _pending(session, stripe_standin, with_session=False)
    session.commit()
    stripe_standin.mark_paid(session_id)
    result = stripe_cli("reconcile", "--json")
    assert result.exit_code == 4
    report = json.loads(result.stdout)
    assert report["fixed"] == {"completed": 1}
    assert [u["kind"] for u in report["unresolved"]] == ["no_checkout_session"]
    assert report["unresolved"][0]["purchase_id"] == str(lost.id)
    session.expire_all()
    row = session.get(m.ContentPurchase, purchase.id)
    assert row.status == m.PurchaseStatus.completed and row.stripe_checkout_session_id == session_id
