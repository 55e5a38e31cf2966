"""Refund fixtures: an operator, a customer, content, and purchases paid through the Stripe stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.core import models as m
from tests.factories import make_content, make_org, make_owner, make_purchase, make_user

OPERATOR = "ops@codex.test"
CUSTOMER = "jane.doe@example.com"
REASON = "Customer asked for a refund: wrong video"


@dataclass
class World:
    session: Any
    standin: Any
    owner: m.User
    customer: m.User
    content: m.Content

    def paid_purchase(
        self, days_ago: float = 1, price_cents: int | None = None, **kw: Any
    ) -> m.ContentPurchase:
        """A completed purchase whose payment intent really exists (and is paid) in the stand-in."""
        price = self.content.price_cents if price_cents is None else price_cents
        checkout = self.standin.create_session(amount_total=price, customer_email=self.customer.email)
        paid = self.standin.mark_paid(checkout["id"])
        purchase = make_purchase(
            self.session,
            self.customer,
            self.content,
            price_paid_cents=price,
            purchased_at=datetime.now(UTC) - timedelta(days=days_ago),
            stripe_checkout_session_id=checkout["id"],
            stripe_payment_intent_id=paid["payment_intent"],
            **kw,
        )
        self.session.commit()
        return purchase

    def purchase(self, **kw: Any) -> m.ContentPurchase:
        """A purchase row without anything at Stripe (free, pending, failed ...)."""
        purchase = make_purchase(self.session, self.customer, self.content, **kw)
        self.session.commit()
        return purchase

    def reload(self, purchase: m.ContentPurchase) -> m.ContentPurchase:
        self.session.expire_all()
        return self.session.get(m.ContentPurchase, purchase.id)


@pytest.fixture
def world(session, stripe_standin) -> World:  # type: ignore[no-untyped-def]
    owner = make_owner(session, email=OPERATOR, name="Ops Person")
    customer = make_user(session, email=CUSTOMER, name="Jane Doe")
    org = make_org(session)
    content = make_content(session, org, title="Intro to Pottery", price_cents=1999)
    session.commit()
    return World(session, stripe_standin, owner, customer, content)


@pytest.fixture
def refund_cli(stripe_cli):  # type: ignore[no-untyped-def]
    """`codex` against the test database and the Stripe stand-in, run by the platform owner."""
    return stripe_cli.with_settings(codex_operator_email=OPERATOR)
