"""Opaque keyset cursors: base64url of a small JSON object naming the last row's sort key."""

from __future__ import annotations

import base64
import json
from typing import Any

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
