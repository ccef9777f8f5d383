"""Pure ASGI middlewares: request id + access log + last-resort 500, body size limit, method override."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.i18n import error_text, pick_language
from app.core.logging import current_request_id, reset_request_id, set_request_id

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
    await _send_problem(scope, send, 500, "internal_error", request_id=request_id)


async def _send_problem(scope: Scope, send: Send, status: int, code: str, *, request_id: str | None = None) -> None:
    """problem+json for answers given before the app runs (it matches errors.problem_response)."""
    lang = pick_language(_header(scope, b"accept-language"))
    problem = {
        "type": f"https://helpdesk.invalid/problems/{code.replace('_', '-')}",
        "title": error_text(code, "en"),
        "status": status,
        "detail": error_text(code, lang),
        "code": code,
    }
    request_id = request_id or current_request_id()
    if request_id:
        problem["request_id"] = request_id
    body = json.dumps(problem, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuses request bodies over the limit with a problem+json 413: at once when
    Content-Length says so, else as soon as the streamed body passes it. `limits` maps path
    prefixes to their own limit (uploads are larger than JSON)."""

    def __init__(self, app: ASGIApp, *, default: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.limits = sorted((limits or {}).items(), key=lambda item: -len(item[0]))

    def _limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_problem(scope, send, 413, "payload_too_large")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing unchanged and is
                    # rendered by our handler as problem+json.
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, limited_receive, send)


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
