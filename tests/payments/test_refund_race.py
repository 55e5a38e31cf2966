"""A refund event and the completion of the same payment at the same moment: the refund is never lost.

Real concurrency on the real PostgreSQL: the test holds the payment intent's advisory lock, so both
deliveries are in flight at once (the completion holding the purchase row, the refund having found no
purchase for the payment yet), then lets them go.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.access.entitlements import has_access
from tests.catalog.test_content_concurrency import Background
from tests.payments.test_checkout_delete_race import _wait_until
from tests.payments.test_refund_events import _deliver, _events, _paid, _pending, _row

pytestmark = pytest.mark.commits


def test_a_refund_racing_the_completion_of_its_payment_ends_access(
    session, stripe_container, stripe_standin
) -> None:  # type: ignore[no-untyped-def]
    purchase_id, checkout, customer, content = _pending(session, stripe_standin)
    completed, intent = _paid(stripe_standin, checkout)
    refund = stripe_standin.dashboard_refund(intent)
    [charge_refunded] = _events(stripe_standin, "charge.refunded")
    [refund_created] = _events(stripe_standin, "refund.created")
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"codex-pi:{intent}"}
    )

    completion = Background(lambda: _deliver(stripe_container, completed))
    _wait_until(stripe_container, 1, completion)
    refunding = Background(lambda: _deliver(stripe_container, charge_refunded))
    _wait_until(stripe_container, 2, refunding)
    session.rollback()  # both go ahead

    completion.join()
    refunding.join()
    _deliver(stripe_container, refund_created)

    row = _row(session, purchase_id)
    assert row.refunded_at is not None and row.stripe_refund_id == refund["id"]
    assert not has_access(session, customer.id, content.id)
