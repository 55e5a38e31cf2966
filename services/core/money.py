"""Money is integer cents plus a currency everywhere; it is formatted only here, once."""

from __future__ import annotations

from dataclasses import dataclass

_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$", "jpy": "¥"}
# The API's smallest unit per currency (docs.stripe.com/currencies). Zero-decimal: the amount is whole
# units. ISK, HUF and TWD are not among them: the API takes them with two decimals (an amount of
# 17500 HUF is 175.00 HUF). Three-decimal currencies take thousandths.
_ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"]
    + ["xaf", "xof", "xpf"]
)
_THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


@dataclass(frozen=True)
class Money:
    cents: int
    currency: str = "usd"

    def __str__(self) -> str:
        return format_money(self.cents, self.currency)


def format_money(cents: int, currency: str = "usd") -> str:
    """`format_money(999, "usd")` -> `$9.99`; `format_money(1200, "eur")` -> `€12.00`; the amount is in
    the API's smallest unit of the currency (`format_money(500, "jpy")` -> `¥500`)."""
    code = (currency or "usd").lower()
    sign = "-" if cents < 0 else ""
    amount = abs(int(cents))
    if code in _ZERO_DECIMAL:
        number = f"{amount:,}"
    elif code in _THREE_DECIMAL:
        number = f"{amount // 1000:,}.{amount % 1000:03d}"
    else:
        number = f"{amount // 100:,}.{amount % 100:02d}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"
