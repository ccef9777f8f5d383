"""Attachments: upload (size limit, type sniffed from the bytes, safe name, sha256), who may
download what, how a file is served, and signed download links (so <img>/<image> can show a
file without a header). The bytes live in a `Storage` backend (app/services/storage.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import AttachmentSettings
from app.core.errors import AttachmentNotFound, FieldProblem, PayloadTooLarge
from app.core.security import constant_time_equals
from app.crud import crud_attachment
from app.db.base import utcnow
from app.models.attachment import Attachment
from app.models.user import User
from app.schemas.ticket import AttachmentRead
from app.services.storage import ObjectNotFound, Storage, StoredObject, new_key

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
# The only types a browser is asked to show in place: raster images cannot run script.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Served under their own type (as downloads); anything else, HTML and SVG above all, is sent
# as application/octet-stream so that no browser treats it as a page even if it ignored
# `Content-Disposition`.
_DOWNLOAD_TYPES = {
    "application/pdf": "application/pdf",
    "application/zip": "application/zip",
    "text/plain": "text/plain; charset=utf-8",
}
# Every media type a download is served as (the OpenAPI document lists them).
SERVED_TYPES = (*sorted(INLINE_TYPES), *sorted({t.split(";")[0] for t in _DOWNLOAD_TYPES.values()}), OCTET_STREAM)
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "text/plain": ".txt",
    "text/html": ".html",
    "image/svg+xml": ".svg",
}


# --- what the bytes are -----------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
    (b"PK\x07\x08", "application/zip"),  # a spanned archive
)
# WHATWG MIME Sniffing, "identifying a resource with an unknown MIME type": a document that
# starts (after whitespace) with one of these tags, followed by a space or '>', is HTML.
_HTML_TAGS = (
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<script",
    b"<iframe",
    b"<h1",
    b"<div",
    b"<font",
    b"<table",
    b"<a",
    b"<style",
    b"<title",
    b"<b",
    b"<body",
    b"<br",
    b"<p",
)
_WHITESPACE = b"\t\n\x0c\r "
_UTF8_BOM = b"\xef\xbb\xbf"
# Bytes that never occur in text (WHATWG's "binary data bytes").
_BINARY_BYTE = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def sniff(data: bytes) -> str:
    """The content type of `data`, judged from the bytes alone (never from the client's claim).

    Images, PDF and ZIP by their magic numbers; HTML and SVG are recognised only so that they
    are never served as themselves; valid UTF-8 without binary bytes is text/plain; anything
    else is application/octet-stream.
    """
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    markup = _markup_type(data)
    if markup is not None:
        return markup
    if _BINARY_BYTE.search(data) is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return OCTET_STREAM
        return "text/plain"
    return OCTET_STREAM


def _markup_type(data: bytes) -> str | None:
    head = data[:4096].removeprefix(_UTF8_BOM).lstrip(_WHITESPACE).lower()
    for tag in _HTML_TAGS:
        if head.startswith(tag) and head[len(tag) : len(tag) + 1] in (b" ", b">"):
            return "text/html"
    # SVG often opens with an XML declaration or a generator's comment before <svg>.
    if head.startswith((b"<svg", b"<?xml", b"<!--", b"<!doctype svg")) and b"<svg" in head:
        return "image/svg+xml"
    if head.startswith(b"<!--") or (head.startswith(b"<?xml") and b"<html" in head):
        return "text/html"  # WHATWG counts a leading comment as HTML; XHTML
    return None


def served_as(content_type: str) -> tuple[str, bool]:
    """(Content-Type to send, whether to show it inline) for a stored, sniffed type."""
    if content_type in INLINE_TYPES:
        return content_type, True
    return _DOWNLOAD_TYPES.get(content_type, OCTET_STREAM), False


# --- names ------------------------------------------------------------------------------------

MAX_FILENAME = 255
_PATH_SEPARATORS = re.compile(r"[\\/]")
# Characters Windows refuses in file names; replaced so a download saves under the name shown.
_RESERVED = re.compile(r'[:*?"<>|]')
# Bidi controls disguise names ("invoice\u202egpj.exe" reads as "invoiceexe.jpg").
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ZWJ = "\u200d"  # joins emoji sequences: harmless, kept


def safe_filename(raw: str | None, content_type: str) -> str:
    """A display and download name made from the client's: no directories, no control, format
    or bidi characters, no Windows-reserved characters, at most 255 characters with the
    extension kept. Chinese (and any other script) stays as it is. Never used as a path: the
    bytes are stored under a random key."""
    name = unicodedata.normalize("NFC", raw or "")
    name = _PATH_SEPARATORS.split(name)[-1]  # "C:\\Users\\me\\报告.pdf", "wxfile://tmp_1.jpg"
    name = " ".join(name.split())  # tabs, newlines and other spaces: one plain space per run
    name = "".join(
        ch for ch in name if ch not in _BIDI and (ch == _ZWJ or unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    )
    name = _RESERVED.sub("_", name)
    name = " ".join(name.split()).strip(" .")  # no leading/trailing dots (hidden files, Windows)
    if not name:
        name = "attachment" + _EXTENSIONS.get(content_type, "")
    return _shorten(name)


def _shorten(name: str) -> str:
    if len(name) <= MAX_FILENAME:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension) <= 16:
        return stem[: MAX_FILENAME - len(extension) - 1].rstrip(" .") + "." + extension
    return name[:MAX_FILENAME].rstrip(" .")


# --- upload -----------------------------------------------------------------------------------


class Readable(Protocol):
    """What an upload is read from (Starlette's UploadFile is one)."""

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class PreparedUpload:
    """An upload that passed the checks, with everything the row needs; nothing stored yet."""

    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes


# Room in a request body for the multipart boundaries and part headers around the file: the
# body limit for uploads is max_bytes plus this, and the file itself is held to max_bytes.
MULTIPART_OVERHEAD = 64 * 1024


def upload_body_limit(settings: AttachmentSettings) -> int:
    return settings.max_bytes + MULTIPART_OVERHEAD


def _inspect(data: bytes) -> tuple[str, str]:
    return sniff(data), hashlib.sha256(data).hexdigest()


# --- signed links -----------------------------------------------------------------------------

_EXPIRES = re.compile(r"^[0-9]{1,12}$")


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


# --- the service ------------------------------------------------------------------------------


class AttachmentService:
    def __init__(self, settings: AttachmentSettings, *, storage: Storage, links: AttachmentLinks) -> None:
        self.settings = settings
        self.storage = storage
        self.links = links

    @property
    def max_bytes(self) -> int:
        return self.settings.max_bytes

    async def prepare(self, source: Readable, *, filename: str | None) -> PreparedUpload:
        """Read at most the limit (413 `payload_too_large` beyond it), then sniff and hash off
        the event loop. Touches neither the database nor storage."""
        data = await source.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise PayloadTooLarge
        if not data:
            raise FieldProblem("file", "blank")
        content_type, digest = await anyio.to_thread.run_sync(_inspect, data)
        return PreparedUpload(
            filename=safe_filename(filename, content_type),
            content_type=content_type,
            size=len(data),
            sha256=digest,
            data=data,
        )

    async def store(self, session: AsyncSession, *, uploader: User, upload: PreparedUpload) -> Attachment:
        """Write the bytes, then the row (flushed, not committed). The file comes first so a
        committed row always has its bytes; a transaction that fails afterwards leaves an
        unreferenced file, which a sweep can delete, never a row without a file."""
        key = new_key()
        await self.storage.put(key, upload.data)
        attachment = Attachment(
            uploader_id=uploader.id,
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            sha256=upload.sha256,
            storage_key=key,
            created_at=utcnow(),
        )
        session.add(attachment)
        try:
            await session.flush()
        except Exception:
            await self.storage.delete(key)
            raise
        return attachment

    async def upload(self, session: AsyncSession, *, uploader: User, filename: str | None, data: bytes) -> Attachment:
        """Check and store bytes already in memory (the bot and jobs; the API uses prepare/store)."""
        return await self.store(session, uploader=uploader, upload=await self.prepare(_Bytes(data), filename=filename))

    def read_model(self, attachment: Attachment) -> AttachmentRead:
        return AttachmentRead(
            id=attachment.id,
            filename=attachment.filename,
            content_type=attachment.content_type,
            size=attachment.size,
            sha256=attachment.sha256,
            url=self.links.url_for(attachment),
        )

    # --- who may download ---------------------------------------------------------------------

    async def readable_attachment(self, session: AsyncSession, attachment_id: int, user: User) -> Attachment:
        """The attachment if `user` may download it, else 404 `attachment_not_found` alike for
        missing and hidden: whoever may read its ticket, except that customers never see what
        is attached to an internal note; an upload not attached yet only its uploader."""
        attachment = await crud_attachment.get_readable(session, attachment_id, user)
        if attachment is None:
            raise AttachmentNotFound
        return attachment

    async def signed_attachment(
        self,
        session: AsyncSession,
        attachment_id: int,
        *,
        expires: str | None,
        signature: str | None,
        now: float | None = None,
    ) -> Attachment:
        """The attachment a signed link names, if the signature is good and not expired. The
        link is the permission: it was handed only to someone who could read the file then.
        A bad, expired or missing signature is 404 like a missing file: nothing to tell."""
        if not expires or not signature or not _EXPIRES.match(expires):
            raise AttachmentNotFound
        if not self.links.verify(attachment_id, int(expires), signature, now=now):
            raise AttachmentNotFound
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None:
            raise AttachmentNotFound
        return attachment

    async def open(self, attachment: Attachment) -> StoredObject:
        try:
            return await self.storage.open(attachment.storage_key)
        except ObjectNotFound:
            # A row without bytes should not exist; say so loudly, answer as for a missing file.
            log.error("attachment %s has no stored object %s", attachment.id, attachment.storage_key)
            raise AttachmentNotFound from None


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, size: int = -1) -> bytes:
        return self._data if size < 0 else self._data[:size]
