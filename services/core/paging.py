"""Keyset pagination for operator listings: newest first, cut on (created_at, id), so rows inserted
while an operator pages through never shift or repeat what they already saw.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import tuple_

from services.core.errors import ValidationError

MAX_LIMIT = 500

# ------------------------------------------------------------------------------------------ paging


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        return datetime.fromisoformat(stamp), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationError(
            f"Invalid cursor {cursor!r}: pass the value printed as next_cursor by the previous page."
        ) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"The page size must be between 1 and {MAX_LIMIT}.", field="limit")
    return limit


def page_query(query: Any, created_col: Any, id_col: Any, limit: int, cursor: str | None) -> Any:
    if cursor:
        at, row_id = decode_cursor(cursor)
        query = query.where(tuple_(created_col, id_col) < tuple_(at, row_id))
    return query.order_by(created_col.desc(), id_col.desc()).limit(check_limit(limit) + 1)
