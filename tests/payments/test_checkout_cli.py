"""`codex checkout create` as an operator sees it: output, exit codes, errors."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from services.core.models import ContentPurchase, PurchaseStatus


def test_create_prints_only_the_checkout_url_on_stdout(stripe_cli, stripe_standin, shop, session) -> None:
    result = stripe_cli(
        "checkout", "create", "--customer", "jane@example.com", "--content", str(shop.content.id)
    )
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    [stripe_session] = stripe_standin.sessions
    assert url == stripe_session["url"]
    assert "Intro to Pottery ($9.99) for j***@example.com" in result.stderr
    assert "jane@example.com" not in result.output
    row = session.scalars(select(ContentPurchase)).one()
    assert row.status == PurchaseStatus.pending and row.stripe_checkout_session_id == stripe_session["id"]


def test_create_json(stripe_cli, shop) -> None:
    result = stripe_cli(
        "checkout", "create", "--customer", str(shop.customer.id), "--content", str(shop.content.id), "--json"
    )
    data = json.loads(result.stdout)
    assert data["free"] is False and data["checkout_url"] and data["session_id"].startswith("cs_test_")
    assert data["amount"] == {"cents": 999, "currency": "usd"} and uuid.UUID(data["purchase_id"])


def test_free_content_says_free_access_granted(cli, shop) -> None:
    result = cli("checkout", "create", "--customer", "jane@example.com", "--content", str(shop.free.id))
    assert result.exit_code == 0 and "Free access granted: Free Sampler" in result.stdout


def test_second_checkout_is_refused_with_exit_1(stripe_cli, shop) -> None:
    args = ("checkout", "create", "--customer", "jane@example.com", "--content", str(shop.content.id))
    assert stripe_cli(*args).exit_code == 0
    again = stripe_cli(*args)
    assert again.exit_code == 1 and again.stderr.strip() == "Error: Content already purchased or pending."


def test_unavailable_or_unknown_content_exits_3(stripe_cli, shop) -> None:
    draft = stripe_cli(
        "checkout", "create", "--customer", "jane@example.com", "--content", str(shop.draft.id)
    )
    assert draft.exit_code == 3 and "Content not found or not available" in draft.stderr
    # Content is named by id or slug: `nope` is a slug nobody uses.
    bad = stripe_cli("checkout", "create", "--customer", "jane@example.com", "--content", "nope")
    assert bad.exit_code == 3 and "Content nope not found." in bad.stderr
    nobody = stripe_cli(
        "checkout", "create", "--customer", "who@example.com", "--content", str(shop.content.id)
    )
    # The operator typed the address: it is echoed as typed.
    assert nobody.exit_code == 3 and "User who@example.com not found." in nobody.stderr


def test_without_a_stripe_key_it_fails_clearly(cli, shop) -> None:
    result = cli("checkout", "create", "--customer", "jane@example.com", "--content", str(shop.content.id))
    assert result.exit_code == 1 and "STRIPE_SECRET_KEY is not set" in result.stderr


def test_stripe_down_fails_in_one_sentence_without_the_key(stripe_cli, stripe_standin, shop, session) -> None:
    stripe_standin.fail_next(100, status=500)
    result = stripe_cli(
        "checkout", "create", "--customer", "jane@example.com", "--content", str(shop.content.id)
    )
    assert result.exit_code == 1 and result.stderr.startswith("Error: Stripe is unreachable")
    assert stripe_cli.settings.stripe_secret_key not in result.output and "Traceback" not in result.output
    assert session.scalars(select(ContentPurchase)).one().status == PurchaseStatus.failed
