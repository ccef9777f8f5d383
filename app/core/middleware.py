"""Pure ASGI middlewares: request id + access log + last-resort 500, and method override."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.i18n import error_text, pick_language
from app.core.logging import reset_request_id, set_request_id

access_log = logging.getLogger("helpdesk.access")
error_log = logging.getLogger("helpdesk.errors")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Gives every request an id (a sane incoming `X-Request-ID` is kept), echoes it, logs one
    access line (path without the query string) and turns an escaped exception into a
    problem+json 500 that reveals nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unhandled error on %s %s", scope.get("method", "WS"), scope.get("path"))
            if scope["type"] == "http" and not response_started:
                await _send_internal_error(scope, send_with_id, request_id)
        finally:
            if scope["type"] == "http":
                access_log.info(
                    "%s %s %s",
                    scope.get("method"),
                    scope.get("path"),
                    status,
                    extra={
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            reset_request_id(token)


async def _send_internal_error(scope: Scope, send: Send, request_id: str) -> None:
    lang = pick_language(_header(scope, b"accept-language"))
    body = json.dumps(
        {
            "type": "https://helpdesk.invalid/problems/internal-error",
            "title": error_text("internal_error", "en"),
            "status": 500,
            "detail": error_text("internal_error", lang),
            "code": "internal_error",
            "request_id": request_id,
        },
        ensure_ascii=False,
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MethodOverrideMiddleware:
    """`wx.request` cannot send PATCH: a POST with `X-HTTP-Method-Override: PATCH` is routed
    as PATCH. Only PATCH is honoured, and only on POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            override = _header(scope, b"x-http-method-override")
            if override and override.strip().upper() == "PATCH":
                scope = {**scope, "method": "PATCH"}
        await self.app(scope, receive, send)
