"""The Stripe adapter against the stand-in over real HTTP: shapes, pagination, idempotency, failures."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from services.adapters.stripe_gateway import (
    StripeError,
    StripeGateway,
    StripeUnavailable,
    build_stripe_gateway,
)
from services.core.errors import ConfigurationError, ExternalServiceError
from tests.fixtures.stripe import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET
from tests.standins.stripe_server import sign_payload


def _checkout(gateway: StripeGateway, key: str = "checkout-1", amount: int = 1299) -> dict:
    return gateway.create_checkout_session(
        purchase_id="11111111-1111-1111-1111-111111111111",
        customer_id="22222222-2222-2222-2222-222222222222",
        customer_email="jane@example.com",
        content_id="33333333-3333-3333-3333-333333333333",
        organization_id="44444444-4444-4444-4444-444444444444",
        title="Intro to Pottery",
        amount_cents=amount,
        currency="usd",
        success_url="http://localhost:5173/ok",
        cancel_url="http://localhost:5173/cancel",
        idempotency_key=key,
    )


def test_checkout_session_carries_metadata_email_and_amount(stripe_gateway, stripe_standin) -> None:
    session = _checkout(stripe_gateway)
    assert session["object"] == "checkout.session" and session["id"].startswith("cs_test_")
    assert session["metadata"] == {
        "purchaseId": "11111111-1111-1111-1111-111111111111",
        "customerId": "22222222-2222-2222-2222-222222222222",
        "contentId": "33333333-3333-3333-3333-333333333333",
        "organizationId": "44444444-4444-4444-4444-444444444444",
    }
    assert session["amount_total"] == 1299 and session["currency"] == "usd"
    assert session["customer_email"] == "jane@example.com" and session["url"]
    assert stripe_gateway.retrieve_checkout_session(session["id"]) == session
    json.dumps(session)  # plain data, not SDK objects


def test_the_same_idempotency_key_creates_one_session(stripe_gateway, stripe_standin) -> None:
    first = _checkout(stripe_gateway, key="same")
    second = _checkout(stripe_gateway, key="same")
    assert first["id"] == second["id"] and len(stripe_standin.sessions) == 1


def test_reusing_a_key_with_other_parameters_is_refused(stripe_gateway) -> None:
    _checkout(stripe_gateway, key="k")
    with pytest.raises(StripeError) as err:
        _checkout(stripe_gateway, key="k", amount=1000)
    assert err.value.kind == "idempotency" and "same parameters" in str(err.value)


def test_listing_sessions_pages_by_100_and_honours_the_created_window(stripe_gateway, stripe_standin) -> None:
    now = int(time.time())
    inside = {stripe_standin.create_session(created=now - 3600 - i)["id"] for i in range(230)}
    stripe_standin.create_session(created=now - 10 * 86400)  # older than the window
    stripe_standin.create_session(created=now + 3600)  # after created_lte
    stripe_standin.clear_log()
    found = list(
        stripe_gateway.iter_checkout_sessions(
            datetime.fromtimestamp(now - 86400, UTC), datetime.fromtimestamp(now, UTC)
        )
    )
    assert {s["id"] for s in found} == inside and len(found) == 230
    assert stripe_standin.count("GET", "/v1/checkout/sessions") == 3
    assert all(r.query["limit"] == "100" for r in stripe_standin.requests)


def test_refund_with_the_same_key_returns_the_same_refund(stripe_gateway, stripe_standin) -> None:
    session = stripe_standin.mark_paid(stripe_standin.create_session(amount_total=500)["id"])
    args = dict(
        payment_intent=session["payment_intent"],
        reason="requested_by_customer",
        metadata={"purchaseId": "p1"},
        idempotency_key="refund-p1",
    )
    first = stripe_gateway.create_refund(**args)
    second = stripe_gateway.create_refund(**args)
    assert first["id"] == second["id"] and first["amount"] == 500
    assert len(stripe_standin.refunds()) == 1
    assert stripe_gateway.retrieve_payment_intent(session["payment_intent"])["status"] == "succeeded"


def test_refunding_twice_with_new_keys_is_refused_with_stripes_message(
    stripe_gateway, stripe_standin
) -> None:
    pi = stripe_standin.mark_paid(stripe_standin.create_session()["id"])["payment_intent"]
    stripe_gateway.create_refund(
        payment_intent=pi, reason="requested_by_customer", metadata={}, idempotency_key="a"
    )
    with pytest.raises(StripeError) as err:
        stripe_gateway.create_refund(
            payment_intent=pi, reason="requested_by_customer", metadata={}, idempotency_key="b"
        )
    assert isinstance(err.value, ExternalServiceError) and err.value.kind == "invalid_request"
    assert "has already been refunded" in err.value.stripe_message


def test_refunds_and_events_are_listed_in_the_window(stripe_gateway, stripe_standin) -> None:
    pi = stripe_standin.mark_paid(stripe_standin.create_session()["id"])["payment_intent"]
    refund = stripe_standin.dashboard_refund(pi)
    since = datetime.now(UTC) - timedelta(hours=1)
    assert [r["id"] for r in stripe_gateway.iter_refunds(since)] == [refund["id"]]
    events = list(stripe_gateway.iter_events(since, types=["charge.refunded"]))
    assert len(events) == 1 and events[0]["data"]["object"]["refunded"] is True
    assert events[0]["data"]["object"]["payment_intent"] == pi
    all_types = {e["type"] for e in stripe_gateway.iter_events(since)}
    assert all_types == {"checkout.session.completed", "refund.created", "charge.refunded"}
    assert stripe_gateway.retrieve_event(events[0]["id"])["id"] == events[0]["id"]


def test_transient_5xx_is_retried_by_the_sdk(stripe_gateway, stripe_standin) -> None:
    stripe_standin.fail_next(2, status=503, path="/v1/checkout/sessions")
    session = _checkout(stripe_gateway)
    assert session["id"] and stripe_standin.count("POST", "/v1/checkout/sessions") == 3
    keys = {r.idempotency_key for r in stripe_standin.requests}
    assert len(keys) == 1  # the retries replay the same write


def test_rate_limit_then_success_is_retried_by_our_backoff(stripe_gateway, stripe_standin) -> None:
    stripe_standin.fail_next(2, status=429)
    assert "test mode" in stripe_gateway.check()
    assert stripe_standin.count("GET", "/v1/balance") == 3


def test_a_bad_gateway_page_mid_listing_is_retried(stripe_gateway, stripe_standin) -> None:
    for _ in range(150):
        stripe_standin.create_session()
    stripe_standin.clear_log()
    found = []
    for i, s in enumerate(stripe_gateway.iter_checkout_sessions(datetime.now(UTC) - timedelta(hours=1))):
        if i == 0:
            stripe_standin.fail_next(1, status=502)
        found.append(s["id"])
    assert len(set(found)) == 150


def test_stripe_staying_down_gives_up_with_a_clear_message(stripe_gateway, stripe_standin) -> None:
    stripe_standin.fail_next(100, status=500)
    with pytest.raises(StripeUnavailable) as err:
        stripe_gateway.retrieve_checkout_session("cs_test_x")
    assert str(err.value).startswith("Stripe is unreachable (HTTP 500")
    assert "after 3 attempts" in str(err.value)
    assert stripe_standin.count() == 9  # 3 of ours x (1 + 2 SDK retries)


def test_persistent_429_gives_up_after_our_attempts(stripe_gateway, stripe_standin) -> None:
    stripe_standin.fail_next(100, status=429)
    with pytest.raises(StripeUnavailable) as err:
        list(stripe_gateway.iter_refunds(datetime.now(UTC) - timedelta(days=1)))
    assert err.value.kind == "rate_limit" and "HTTP 429" in str(err.value)
    assert stripe_standin.count() == 3


def test_a_response_slower_than_the_timeout_counts_as_unreachable(stripe_standin) -> None:
    gateway = StripeGateway(
        STRIPE_SECRET_KEY,
        api_base=stripe_standin.url,
        base_delay=0.01,
        sdk_retries=0,
        attempts=2,
        timeout=(2.0, 0.2),
    )
    stripe_standin.slow(1.0, count=2)
    with pytest.raises(StripeUnavailable) as err:
        gateway.check()
    assert err.value.kind == "connection"


def test_unknown_session_is_a_not_found_from_stripe(stripe_gateway) -> None:
    with pytest.raises(StripeError) as err:
        stripe_gateway.retrieve_checkout_session("cs_test_nope")
    assert err.value.http_status == 404 and "No such checkout.session" in str(err.value)


def test_a_wrong_key_is_reported_without_the_key(stripe_standin) -> None:
    secret = "sk_test_wrongwrongwrong987654321"
    gateway = StripeGateway(secret, api_base=stripe_standin.url, base_delay=0.01)
    with pytest.raises(StripeError) as err:
        gateway.check()
    assert err.value.kind == "authentication" and "STRIPE_SECRET_KEY" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value.args)


def test_missing_key_is_a_configuration_error(settings) -> None:
    with pytest.raises(ConfigurationError, match="STRIPE_SECRET_KEY is not set"):
        build_stripe_gateway(settings)


def test_gateway_built_from_settings_talks_to_the_api_base(stripe_settings, stripe_standin) -> None:
    gateway = build_stripe_gateway(stripe_settings)
    assert stripe_standin.url in gateway.check()
    other = build_stripe_gateway(replace(stripe_settings, stripe_api_base=""))
    assert other.api_base == "https://api.stripe.com"


def test_signed_payloads_verify_with_the_sdk(stripe_standin) -> None:
    event = stripe_standin.event_for_session(
        "checkout.session.expired", stripe_standin.create_session()["id"]
    )
    payload = json.dumps(event).encode()
    header = sign_payload(payload, STRIPE_WEBHOOK_SECRET)
    assert stripe.WebhookSignature.verify_header(payload.decode(), header, STRIPE_WEBHOOK_SECRET, 300)
    stale = sign_payload(payload, STRIPE_WEBHOOK_SECRET, timestamp=int(time.time()) - 600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), stale, STRIPE_WEBHOOK_SECRET, 300)
