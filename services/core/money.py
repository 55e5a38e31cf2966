"""Money is integer cents plus a currency everywhere; it is formatted only here, once."""

from __future__ import annotations

from dataclasses import dataclass

_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$", "jpy": "¥"}
_ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp", "isk", "huf", "twd", "ugx"}


@dataclass(frozen=True)
class Money:
    cents: int
    currency: str = "usd"

    def __str__(self) -> str:
        return format_money(self.cents, self.currency)


def format_money(cents: int, currency: str = "usd") -> str:
    """`format_money(999, "usd")` -> `$9.99`; `format_money(1200, "eur")` -> `€12.00`."""
    code = (currency or "usd").lower()
    sign = "-" if cents < 0 else ""
    amount = abs(int(cents))
    number = f"{amount:,}" if code in _ZERO_DECIMAL else f"{amount // 100:,}.{amount % 100:02d}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"
