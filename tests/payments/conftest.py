"""Shared pieces for payment tests: a customer and published content, committed for services to see."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.core import models as m
from tests.factories import make_content, make_org, make_user


@dataclass
class Shop:
    customer: m.User
    content: m.Content
    free: m.Content
    draft: m.Content


@pytest.fixture
def shop(session) -> Shop:  # type: ignore[no-untyped-def]
    org = make_org(session)
    customer = make_user(session, email="jane@example.com", name="Jane Doe")
    content = make_content(session, org, title="Intro to Pottery", price_cents=999)
    free = make_content(session, org, title="Free Sampler", price_cents=0)
    draft = make_content(session, org, title="Unreleased", status=m.ContentStatus.draft)
    session.commit()
    return Shop(customer, content, free, draft)


# The real webhook listener, for tests here that check what Stripe is answered.
from tests.webhook.conftest import listener, start_listener, webhook, webhook_settings  # noqa: E402, F401
