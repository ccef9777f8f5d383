"""Tag schemas. Tags are created by tickets; agents list them, admins delete them."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from app.schemas.common import ReadModel


class TagRead(ReadModel):
    id: int
    name: str
    created_at: datetime


def normalize_prefix(value: str | None) -> str | None:
    """A `?q=` prefix folded the way tag names are stored (NFKC, trimmed, case-folded)."""
    if value is None:
        return None
    return unicodedata.normalize("NFKC", value).strip().casefold() or None
