"""Attachments: signed download links (so <img>/<image> can show a file without a header).

Upload, storage and download live here too (see the storage backend in app/services/storage.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from app.core.security import constant_time_equals
from app.models.attachment import Attachment


class AttachmentLinks:
    """`/api/v1/attachments/{id}/content?expires=<unix>&signature=<hex>`: HMAC over id and
    expiry with a key derived for this purpose only; valid for `ttl_seconds`."""

    def __init__(self, secret: str, *, ttl_seconds: int) -> None:
        self._key = hmac.new(secret.encode(), b"attachment-url", hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds

    def _signature(self, attachment_id: int, expires: int) -> str:
        return hmac.new(self._key, f"{attachment_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url_for(self, attachment: Attachment, *, now: float | None = None) -> str:
        # Expiry rounded up to the minute: the same link for a minute, friendlier to caches.
        moment = int(now if now is not None else time.time())
        expires = (moment + self.ttl_seconds + 59) // 60 * 60
        return (
            f"/api/v1/attachments/{attachment.id}/content"
            f"?expires={expires}&signature={self._signature(attachment.id, expires)}"
        )

    def verify(self, attachment_id: int, expires: int, signature: str, *, now: float | None = None) -> bool:
        if expires < int(now if now is not None else time.time()):
            return False
        return constant_time_equals(self._signature(attachment_id, expires), signature)
