"""One parser for durations written like `30s`, `15m`, `24h`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

from services.core.errors import ValidationError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d{1,18})\s*([smhdw])\s*$", re.ASCII)
# Far beyond any retention or window we use, and far inside what `now - duration` can hold.
MAX_DURATION = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """Parse `30s`, `15m`, `24h`, `7d` or `2w` into a timedelta; anything else is a ValidationError."""
    match = _PATTERN.match(text or "")
    if not match:
        raise ValidationError(
            f"Invalid duration {text!r}: write a number and a unit, like 30s, 15m, 24h or 7d."
        )
    try:
        value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        value = MAX_DURATION + MAX_DURATION
    if value > MAX_DURATION:
        raise ValidationError(
            f"Duration {text.strip()!r} is too long: at most {MAX_DURATION.days}d (100 years)."
        )
    return value
