"""Attachments: upload (multipart, field `file`), download with auth, download by signed link."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from app.api.v1.dependencies import Context, CurrentUser, IdempotencyKey, SessionDep, idempotent_create
from app.core.context import AppContext
from app.core.errors import (
    AttachmentNotFound,
    FieldProblem,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotAuthenticated,
    PayloadTooLarge,
    problem_responses,
)
from app.models.attachment import Attachment
from app.schemas.ticket import AttachmentRead
from app.services.attachment import SERVED_TYPES, PreparedUpload, served_as

router = APIRouter(prefix="/attachments", tags=["attachments"])


async def prepared_upload(
    request: Request,
    ctx: Context,
    file: Annotated[UploadFile, File(description="The file, in the form field `file` (as wx.uploadFile sends it)")],
) -> PreparedUpload:
    """The checked, sniffed and hashed upload. Declared before the current user, so this CPU
    work happens before authentication opens the request's transaction (on SQLite a write
    transaction holds the database's write lock)."""
    for name in await request.form():  # parsed already: this is FastAPI's cached form
        if name != "file":
            raise FieldProblem(name, "unknown_field")
    return await ctx.attachments.prepare(file, filename=file.filename)


PreparedDep = Annotated[PreparedUpload, Depends(prepared_upload)]


@router.post(
    "",
    response_model=AttachmentRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(PayloadTooLarge, FieldProblem, IdempotencyKeyReused, IdempotencyKeyInProgress),
    form_limits={"max_files": 1, "max_fields": 20},
)
async def upload_attachment(
    upload: PreparedDep,
    request: Request,
    user: CurrentUser,
    ctx: Context,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> AttachmentRead:
        attachment = await ctx.attachments.store(session, uploader=user, upload=upload)
        return ctx.attachments.read_model(attachment)

    # API.md: for multipart, "the same request" means the same form fields and file sha256.
    canonical = {"filename": upload.filename, "file_sha256": upload.sha256}
    return await idempotent_create(
        session, request, user=user, key=idempotency_key, create=create, canonical_body=canonical
    )


_FILE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The bytes. Images (PNG, JPEG, GIF, WebP) inline, anything else as a download; "
        "always `X-Content-Type-Options: nosniff`.",
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in SERVED_TYPES},
    }
}


@router.get(
    "/{attachment_id}",
    response_class=StreamingResponse,
    responses={**_FILE_RESPONSE, **problem_responses(NotAuthenticated, AttachmentNotFound)},
)
async def download_attachment(
    attachment_id: int, user: CurrentUser, ctx: Context, session: SessionDep
) -> StreamingResponse:
    attachment = await ctx.attachments.readable_attachment(session, attachment_id, user)
    return await _file_response(ctx, attachment)


@router.get(
    "/{attachment_id}/content",
    response_class=StreamingResponse,
    responses={**_FILE_RESPONSE, **problem_responses(AttachmentNotFound)},
)
async def download_signed_attachment(
    attachment_id: int,
    ctx: Context,
    session: SessionDep,
    expires: Annotated[str | None, Query(max_length=20)] = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
) -> StreamingResponse:
    """The link in `url`: no header needed, valid until `expires`; refused alike (404) when the
    signature is wrong, has expired or the attachment is gone."""
    attachment = await ctx.attachments.signed_attachment(session, attachment_id, expires=expires, signature=signature)
    return await _file_response(ctx, attachment)


async def _file_response(ctx: AppContext, attachment: Attachment) -> StreamingResponse:
    # The session is committed and released when the endpoint returns; the bytes stream after.
    stored = await ctx.attachments.open(attachment)
    media_type, inline = served_as(attachment.content_type)
    headers = {
        "Content-Length": str(stored.size),
        "Content-Disposition": content_disposition("inline" if inline else "attachment", attachment.filename),
        "X-Content-Type-Options": "nosniff",
        # Even if a browser ignored the disposition, the document could run nothing.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private",
        "ETag": f'"{attachment.sha256}"',
    }
    return StreamingResponse(
        stored.chunks(), media_type=media_type, headers=headers, background=BackgroundTask(stored.aclose)
    )


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients plus RFC 5987 `filename*` (UTF-8,
    percent-encoded) whenever the name is not plain ASCII, so 报告.pdf downloads as 报告.pdf."""
    fallback = _ascii_fallback(filename)
    if fallback == filename:
        return f'{kind}; filename="{fallback}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _ascii_fallback(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    if not dot:
        stem, extension = filename, ""

    def ascii_only(text: str) -> str:
        # Quotes and backslashes would end or escape the quoted string; some clients decode %.
        return "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in text)

    stem, extension = ascii_only(stem), ascii_only(extension)
    if not any(ch.isalnum() for ch in stem):
        stem = "attachment"
    return f"{stem}.{extension}" if dot else stem
