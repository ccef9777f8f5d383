"""Opaque keyset cursors: base64url of a small JSON object naming the last row's sort key."""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol, TypeVar

from app.core.errors import InvalidCursor


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursor from None
    if not isinstance(position, dict):
        raise InvalidCursor
    return position


def after_id(cursor: str | None) -> int | None:
    """The last id of the previous page, for lists ordered by id."""
    if cursor is None:
        return None
    value = decode_cursor(cursor).get("id")
    if not isinstance(value, int):
        raise InvalidCursor
    return value


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


RowT = TypeVar("RowT", bound=_HasId)


def id_page(rows: list[RowT], limit: int) -> tuple[list[RowT], str | None]:
    """Cut the extra row a keyset query fetched; the cursor names the page's last id."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor({"id": rows[-1].id})
