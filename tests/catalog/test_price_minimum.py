"""Prices under Stripe Checkout's minimum for the currency (other than 0, free) are refused up front."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from services.core import models as m
from tests import factories as f

OWNER = "owner@example.com"
DESCRIPTION = "A long enough description."


@pytest.fixture
def world(session):  # type: ignore[no-untyped-def]
    f.make_owner(session, email=OWNER)
    org = f.make_org(session, slug="studio")
    world = {"org": org, "media": f.make_media(session, org)}
    session.commit()
    return world


@pytest.fixture
def ccli(cli):  # type: ignore[no-untyped-def]
    return cli.with_settings(codex_operator_email=OWNER)


def _create(ccli, world, price: str, currency: str = "usd"):  # type: ignore[no-untyped-def]
    return ccli(
        "content", "create", "--org", "studio", "--media", str(world["media"].id),
        "--title", "Morning Session", "--description", DESCRIPTION,
        "--price-cents", price, "--currency", currency, "--json",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("price", "currency", "minimum"),
    [("1", "usd", "$0.50"), ("49", "usd", "$0.50"), ("29", "gbp", "£0.30"), ("249", "dkk", "2.50 DKK")],
)
def test_a_price_under_the_checkout_minimum_is_refused_naming_it(
    ccli, world, session, price, currency, minimum
) -> None:  # type: ignore[no-untyped-def]
    result = _create(ccli, world, price, currency)
    assert result.exit_code == 2, result.output
    assert minimum in result.stderr and "Checkout" in result.stderr
    assert session.scalars(select(m.Content)).all() == []


@pytest.mark.parametrize(("price", "currency"), [("0", "usd"), ("50", "usd"), ("30", "gbp"), ("50", "jpy")])
def test_free_and_the_minimum_itself_are_accepted(ccli, world, price, currency) -> None:  # type: ignore[no-untyped-def]
    result = _create(ccli, world, price, currency)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["price_cents"] == int(price)


def test_update_checks_the_price_against_the_resulting_currency(ccli, world, session) -> None:  # type: ignore[no-untyped-def]
    slug = json.loads(_create(ccli, world, "999").stdout)["slug"]
    low = ccli("content", "update", slug, "--org", "studio", "--price-cents", "30")
    assert low.exit_code == 2 and "$0.50" in low.stderr, low.output
    other = ccli("content", "update", slug, "--org", "studio", "--currency", "czk")
    assert other.exit_code == 2 and "15.00 CZK" in other.stderr, other.output
    session.expire_all()
    row = session.scalars(select(m.Content)).one()
    assert (row.price_cents, row.currency) == (999, "usd")
