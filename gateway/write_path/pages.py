"""Pages of a customer's orders: the opaque cursor that says where the next page starts."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from uuid import UUID

from gateway.errors import ValidationError

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"
"""What a cursor looks like (base64url); only one the API made is a cursor."""
_CURSOR = re.compile(CURSOR_PATTERN)


def check_page_size(limit: int, field: str = "limit") -> int:
    """``limit`` if it is between 1 and :data:`MAX_PAGE_SIZE`; else a clear error."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError.single(field, f"must be between 1 and {MAX_PAGE_SIZE}")
    return limit


def encode_cursor(created_at: datetime, order_id: UUID) -> str:
    """The cursor of the page after the order created at ``created_at`` with ``order_id``."""
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, field: str = "before") -> tuple[datetime, UUID]:
    """Where the page given by ``cursor`` starts; a clear error naming ``field`` if the
    cursor was not made by :func:`encode_cursor`."""
    try:
        if not _CURSOR.match(cursor):
            raise ValueError(cursor)
        cursor = cursor.strip()
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, order_id = raw.partition("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError(created_at)
        return moment, UUID(order_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError.single(field, "is not a cursor this API returned") from None
