"""Checkout refuses a price under Stripe Checkout's minimum before any Stripe call (rows priced before
the rule existed)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.core.errors import ValidationError
from services.core.models import ContentPurchase
from services.payments.checkout import create_checkout
from tests.factories import make_content, make_org


def test_checkout_of_a_price_under_the_minimum_is_refused_before_stripe(
    stripe_container, stripe_standin, shop, session
) -> None:  # type: ignore[no-untyped-def]
    cheap = make_content(session, make_org(session), title="Penny Clip", price_cents=30)
    session.commit()

    with pytest.raises(ValidationError, match=r"\$0\.50"):
        create_checkout(stripe_container, "jane@example.com", str(cheap.id))

    assert stripe_standin.count("POST") == 0
    assert session.scalars(select(ContentPurchase)).all() == []
