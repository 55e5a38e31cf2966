"""Stripe Checkout's smallest charge per currency: a price under it cannot be paid, so it is refused.

From Stripe's "Minimum and maximum charge amounts" (docs.stripe.com/currencies), in the smallest unit
the API takes (JPY is zero-decimal; HUF is sent with two decimals). A currency not listed uses
Stripe's rule of thumb, the equivalent of USD 0.50, taken here as 50 of its smallest unit.
"""

from __future__ import annotations

from services.core.errors import ValidationError
from services.core.money import format_money

CHECKOUT_MINIMUM_CENTS: dict[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}
DEFAULT_MINIMUM_CENTS = 50


def checkout_minimum(currency: str) -> int:
    return CHECKOUT_MINIMUM_CENTS.get((currency or "usd").lower(), DEFAULT_MINIMUM_CENTS)


def check_checkout_price(price_cents: int, currency: str) -> None:
    """ValidationError for a price Checkout cannot charge: 0 (free) or at least the currency's minimum."""
    minimum = checkout_minimum(currency)
    if 0 < price_cents < minimum:
        code = (currency or "usd").lower()
        raise ValidationError(
            f"Price {format_money(price_cents, code)} is under Stripe Checkout's minimum of "
            f"{format_money(minimum, code)} for {code}; use 0 (free) or at least {minimum} cents."
        )
