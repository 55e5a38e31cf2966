"""`codex webhook backfill` (events missed while the listener was down) and `codex webhook replay`."""

from __future__ import annotations

import json
import time

from services.core.models import PurchaseStatus, StripeEventStatus
from tests.factories import make_content, make_org, make_purchase, make_user
from tests.webhook.test_effects import event_row, paid_event, pending_purchase, purchase_row


def test_backfill_applies_a_missed_event_once(
    stripe_cli, stripe_container, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    stripe_standin.mark_paid(checkout["id"])  # Stripe emitted the event; the listener was down
    [missed] = [e for e in stripe_standin.events if e["type"] == "checkout.session.completed"]

    dry = stripe_cli("webhook", "backfill", "--since", "2h", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would-apply {missed['id']} checkout.session.completed (never received)" in dry.stdout
    assert purchase_row(stripe_container, purchase_id).status == PurchaseStatus.pending

    done = stripe_cli("webhook", "backfill", "--since", "2h", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert [(i["event_id"], i["result"]) for i in report["items"]] == [(missed["id"], "processed")]
    assert purchase_row(stripe_container, purchase_id).status == PurchaseStatus.completed
    assert event_row(stripe_container, missed["id"]).status == StripeEventStatus.processed
    assert len(outbox.messages()) == 1

    again = stripe_cli("webhook", "backfill", "--since", "2h")
    assert (
        again.exit_code == 0 and "Nothing to apply" in again.stdout and "1 already processed" in again.stdout
    )
    assert len(outbox.messages()) == 1


def test_backfill_only_looks_back_as_far_as_asked(
    stripe_cli, stripe_container, session, stripe_standin
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    stripe_standin.mark_paid(checkout["id"], created=time.time() - 3 * 3600)
    result = stripe_cli("webhook", "backfill", "--since", "2h")
    assert result.exit_code == 0 and "listed 0 event(s)" in result.stdout
    assert purchase_row(stripe_container, purchase_id).status == PurchaseStatus.pending


def test_backfill_retries_failed_events_and_exits_4_while_one_still_fails(
    stripe_cli, stripe_container, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin, commit=False)
    stripe_standin.mark_paid(checkout["id"])

    failing = stripe_cli("webhook", "backfill", "--since", "1h")
    assert failing.exit_code == 4 and "still fail" in failing.stderr
    assert "failed" in failing.stdout and "not in the database yet" in failing.stdout
    listed = json.loads(stripe_cli("webhook", "events", "--status", "failed", "--json").stdout)
    assert len(listed) == 1 and listed[0]["attempts"] == 1

    customer = make_user(session, email=checkout["customer_email"])
    content = make_content(session, make_org(session), price_cents=999)
    make_purchase(session, customer, content, status=PurchaseStatus.pending, id=purchase_id)
    session.commit()

    fixed = stripe_cli("webhook", "backfill", "--since", "1h")
    assert fixed.exit_code == 0 and "processed" in fixed.stdout and "(failed)" in fixed.stdout
    assert purchase_row(stripe_container, purchase_id).status == PurchaseStatus.completed
    assert event_row(stripe_container, listed[0]["id"]).attempts == 2
    assert len(outbox.messages()) == 1


def test_backfill_cannot_reach_past_stripes_30_day_retention(stripe_cli) -> None:
    result = stripe_cli("webhook", "backfill", "--since", "31d")
    assert result.exit_code == 2 and "30 days" in result.stderr
    assert "the backfill period must be 30d or less (--since)." in result.stderr


def test_backfill_without_a_stripe_key_says_so(cli) -> None:
    result = cli("webhook", "backfill", "--since", "2h")
    assert result.exit_code == 1 and "STRIPE_SECRET_KEY" in result.stderr


def test_replay_reapplies_a_failed_event_once_it_can_succeed(
    listener, webhook, cli, session, stripe_standin, outbox
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin, commit=False)
    event = paid_event(stripe_standin, checkout)
    assert webhook.post(event).status_code == 500

    still = cli("webhook", "replay", event["id"])
    assert still.exit_code == 1 and "not in the database yet" in still.stderr
    assert event_row(listener.container, event["id"]).attempts == 2

    customer = make_user(session, email=checkout["customer_email"])
    content = make_content(session, make_org(session), price_cents=999)
    make_purchase(session, customer, content, status=PurchaseStatus.pending, id=purchase_id)
    session.commit()

    replayed = cli("webhook", "replay", event["id"], "--json")
    assert replayed.exit_code == 0, replayed.output
    outcome = json.loads(replayed.stdout)
    assert (
        outcome["outcome"] == "processed" and outcome["action"] == "completed" and outcome["email"] == "sent"
    )
    assert purchase_row(listener.container, purchase_id).status == PurchaseStatus.completed
    stored = event_row(listener.container, event["id"])
    assert stored.status == StripeEventStatus.processed and stored.attempts == 3
    assert len(outbox.messages()) == 1

    twice = cli("webhook", "replay", event["id"])
    assert twice.exit_code == 0 and "already_completed" in twice.stdout
    assert len(outbox.messages()) == 1
