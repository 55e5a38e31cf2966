"""The Stripe stand-in refuses what Stripe refuses (400, Stripe's error shape), answers in Stripe's shapes."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.fixtures.stripe import STRIPE_SECRET_KEY

CHECKOUT = {
    "mode": "payment",
    "success_url": "http://localhost:5173/ok",
    "cancel_url": "http://localhost:5173/no",
    "line_items[0][quantity]": "1",
    "line_items[0][price_data][currency]": "usd",
    "line_items[0][price_data][unit_amount]": "999",
    "line_items[0][price_data][product_data][name]": "Film",
}


def _post(standin, path: str, data: dict[str, str]) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(
        standin.url + path, data=data, headers={"Authorization": f"Bearer {STRIPE_SECRET_KEY}"}, timeout=5
    )


def _get(standin, path: str, params: dict[str, str] | None = None) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.get(
        standin.url + path, params=params, headers={"Authorization": f"Bearer {STRIPE_SECRET_KEY}"}, timeout=5
    )


def _error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) >= {"code", "param", "message"}
    return error


def _paid_intent(standin) -> str:  # type: ignore[no-untyped-def]
    session = standin.create_session(amount_total=999)
    return standin.mark_paid(session["id"])["payment_intent"]


def test_a_valid_checkout_is_accepted_and_logged_with_its_parameters(stripe_standin) -> None:
    response = _post(stripe_standin, "/v1/checkout/sessions", {**CHECKOUT, "metadata[purchaseId]": "p1"})
    assert response.status_code == 200, response.text
    (logged,) = stripe_standin.logged("POST", "/v1/checkout/sessions")
    assert logged.params["metadata"] == {"purchaseId": "p1"}
    assert logged.params["line_items"][0]["price_data"]["unit_amount"] == "999"


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"bogus": "1"}, "bogus", "parameter_unknown"),
        (
            {"line_items[0][price_data][product_data][nam]": "x"},
            "line_items[0][price_data][product_data][nam]",
            "parameter_unknown",
        ),
        ({"line_items[0][price_data][unit_amount]": "1"}, "line_items", "amount_too_small"),
        (
            {"line_items[0][price_data][unit_amount]": "1.5"},
            "line_items[0][price_data][unit_amount]",
            "parameter_invalid_integer",
        ),
        ({"mode": "paymnt"}, "mode", "parameter_invalid_string"),
        ({"metadata[" + "k" * 41 + "]": "v"}, "metadata[" + "k" * 41 + "]", "parameter_invalid"),
        ({"metadata[note]": "v" * 501}, "metadata[note]", "parameter_invalid"),
        ({f"metadata[k{i}]": "v" for i in range(51)}, "metadata", "parameter_invalid"),
        (
            {"payment_intent_data[metadata][note]": "v" * 501},
            "payment_intent_data[metadata][note]",
            "parameter_invalid",
        ),
    ],
)
def test_checkout_requests_stripe_refuses_get_400(stripe_standin, change, param, code) -> None:
    error = _error(_post(stripe_standin, "/v1/checkout/sessions", {**CHECKOUT, **change}))
    assert (error["param"], error["code"]) == (param, code)
    assert stripe_standin.sessions == []


def test_a_price_without_product_or_product_data_is_refused(stripe_standin) -> None:
    data = {k: v for k, v in CHECKOUT.items() if "product_data" not in k}
    error = _error(_post(stripe_standin, "/v1/checkout/sessions", data))
    assert "product" in error["message"]


@pytest.mark.parametrize(
    ("currency", "amount", "ok"),
    [
        ("usd", 49, False),
        ("usd", 50, True),
        ("gbp", 29, False),
        ("gbp", 30, True),
        ("jpy", 49, False),
        ("jpy", 50, True),
        ("huf", 17499, False),
    ],
)
def test_checkout_minimum_depends_on_the_currency(stripe_standin, currency, amount, ok) -> None:
    data = {**CHECKOUT, "line_items[0][price_data][currency]": currency}
    data["line_items[0][price_data][unit_amount]"] = str(amount)
    response = _post(stripe_standin, "/v1/checkout/sessions", data)
    if ok:
        assert response.status_code == 200, response.text
    else:
        assert _error(response)["code"] == "amount_too_small"


def test_refund_requests_stripe_refuses_get_400(stripe_standin) -> None:
    intent = _paid_intent(stripe_standin)
    assert (
        _error(_post(stripe_standin, "/v1/refunds", {"payment_intent": intent, "foo": "1"}))["param"] == "foo"
    )
    assert (
        _error(_post(stripe_standin, "/v1/refunds", {"payment_intent": intent, "amount": "1.5"}))["param"]
        == "amount"
    )
    assert (
        _error(_post(stripe_standin, "/v1/refunds", {"payment_intent": intent, "reason": "bored"}))["param"]
        == "reason"
    )
    assert (
        _error(_post(stripe_standin, "/v1/refunds", {"reason": "duplicate"}))["code"] == "parameter_missing"
    )
    assert stripe_standin.refunds() == []


def test_malformed_list_filters_get_400_not_500(stripe_standin) -> None:
    assert _error(_get(stripe_standin, "/v1/checkout/sessions", {"foo": "1"}))["param"] == "foo"
    assert (
        _error(_get(stripe_standin, "/v1/checkout/sessions", {"created[gte]": "abc"}))["param"]
        == "created[gte]"
    )
    assert _error(_get(stripe_standin, "/v1/refunds", {"created[after]": "1"}))["param"] == "created[after]"
    assert _error(_get(stripe_standin, "/v1/events", {"limit": "101"}))["param"] == "limit"
    assert (
        _error(_get(stripe_standin, "/v1/events", {"type": "a", "types[0]": "b"}))["code"]
        == "parameters_exclusive"
    )


def test_objects_are_shaped_like_stripes_examples(stripe_standin) -> None:
    intent = _paid_intent(stripe_standin)
    charge_id = _get(stripe_standin, f"/v1/payment_intents/{intent}").json()["latest_charge"]
    charge = _get(stripe_standin, f"/v1/charges/{charge_id}").json()
    assert "refunds" not in charge  # not embedded since API 2022-11-15
    assert charge["failure_code"] is None and charge["refunded"] is False
    assert charge["metadata"] == {}  # a charge does not copy its PaymentIntent's metadata
    refund = _post(stripe_standin, "/v1/refunds", {"payment_intent": intent}).json()
    assert refund["object"] == "refund" and refund["status"] == "succeeded"
    assert refund["receipt_number"] is None
