"""Template variables survive the trip through the outbox's JSON column unchanged."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from services.core.money import Money
from services.email.outbox import backoff, decode_variables, encode_variables


def test_money_and_dates_come_back_as_they_were_queued() -> None:
    data = {
        "amount": Money(1250, "eur"),
        "purchaseDate": datetime(2026, 11, 26, 12, 30, tzinfo=UTC),
        "day": date(2026, 11, 26),
        "customerName": "Jane",
        "nested": {"items": [Money(5, "usd")]},
        "nothing": None,
    }
    stored = json.loads(json.dumps(encode_variables(data)))  # as the jsonb column hands it back
    assert decode_variables(stored) == data


def test_backoff_doubles_and_is_capped() -> None:
    base = timedelta(seconds=30)
    assert [backoff(n, base) for n in (1, 2, 3, 4)] == [base, base * 2, base * 4, base * 8]
    assert backoff(20, base) == timedelta(hours=1)
