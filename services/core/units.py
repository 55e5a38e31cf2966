"""Byte counts for people: one formatter for every command and message."""

from __future__ import annotations

_UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def format_bytes(n: int) -> str:
    """`format_bytes(2048)` -> `2 KiB`; `format_bytes(2000)` -> `2.0 KiB`; below 1 KiB, `512 B`."""
    for unit, size in _UNITS:
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"
