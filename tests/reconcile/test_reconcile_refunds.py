"""Reconcile and refunds: partial refunds add up per payment intent, and refund ids are filled in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.core import models as m
from tests.reconcile.test_reconcile import _completed


def _row(session, purchase) -> m.ContentPurchase:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(m.ContentPurchase, purchase.id)


def test_two_partial_refunds_adding_up_to_the_price_are_a_full_refund(
    session, stripe_standin, stripe_cli
) -> None:  # type: ignore[no-untyped-def]
    purchase = _completed(session, stripe_standin)
    session.commit()
    stripe_standin.dashboard_refund(purchase.stripe_payment_intent_id, amount=400)
    second = stripe_standin.dashboard_refund(purchase.stripe_payment_intent_id, amount=599)

    result = stripe_cli("reconcile", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fixed"] == {"refund_recorded": 1} and report["unresolved"] == []
    row = _row(session, purchase)
    assert row.refunded_at is not None and row.stripe_refund_id == second["id"]


def test_one_partial_refund_is_still_reported_partial(session, stripe_standin, stripe_cli) -> None:  # type: ignore[no-untyped-def]
    purchase = _completed(session, stripe_standin)
    session.commit()
    stripe_standin.dashboard_refund(purchase.stripe_payment_intent_id, amount=400)

    result = stripe_cli("reconcile", "--json")

    assert result.exit_code == 4, result.output
    assert [f["kind"] for f in json.loads(result.stdout)["unresolved"]] == ["partial_refund"]
    assert _row(session, purchase).refunded_at is None


def test_a_refund_recorded_without_its_id_gets_it_from_reconcile(session, stripe_standin, stripe_cli) -> None:  # type: ignore[no-untyped-def]
    purchase = _completed(session, stripe_standin)
    refund = stripe_standin.dashboard_refund(purchase.stripe_payment_intent_id)
    # what a charge.refunded event (no refunds list since API 2022-11-15) left behind
    purchase.refunded_at = datetime.now(UTC)
    purchase.refund_reason = "Refunded in Stripe"
    session.commit()

    result = stripe_cli("reconcile", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fixed"] == {"refund_id_recorded": 1}
    assert _row(session, purchase).stripe_refund_id == refund["id"]
    assert stripe_cli("reconcile").stdout == ""  # and a second run finds nothing
