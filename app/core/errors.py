"""One error hierarchy rendered as RFC 9457 problem+json with a stable `code`.

Domain code raises `AppError` subclasses; the handlers installed by `install_error_handlers`
render them, FastAPI's validation errors, Starlette's HTTP errors (404 for unknown routes,
405, 413) and unexpected exceptions (500 without internals, logged with the request id).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.i18n import FIELD_TEXTS, Lang, error_text, field_text, pick_language
from app.core.logging import current_request_id

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # True when the transaction must be committed although the request fails (e.g. revoking a
    # session on refresh-token reuse must stick even though the answer is 401).
    keeps_changes: ClassVar[bool] = False

    def __init__(self, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(self.code)
        self.headers = headers or {}
        self.extra = extra


class NotAuthenticated(AppError):
    status, code = 401, "not_authenticated"

    def __init__(self, **extra: Any) -> None:
        super().__init__(headers={"WWW-Authenticate": "Bearer"}, **extra)


class InvalidToken(NotAuthenticated):
    code = "invalid_token"


class InvalidCredentials(AppError):
    status, code = 401, "invalid_credentials"


class UserDisabled(AppError):
    status, code = 403, "user_disabled"


class InvalidRefreshToken(AppError):
    status, code = 401, "invalid_refresh_token"


class RefreshTokenReused(AppError):
    status, code = 401, "refresh_token_reused"
    keeps_changes = True


class Forbidden(AppError):
    status, code = 403, "forbidden"


class RegistrationClosed(AppError):
    status, code = 403, "registration_closed"


class NotFound(AppError):
    status, code = 404, "not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class UsernameTaken(Conflict):
    code = "username_taken"


class LastAdmin(Conflict):
    code = "last_admin"


class TooManyRequests(AppError):
    status, code = 429, "too_many_requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after))})


class FieldProblem(AppError):
    """A 422 about named fields, raised by services (e.g. a wrong current password)."""

    status, code = 422, "validation_error"

    def __init__(self, field: str, field_code: str, *, limit: object | None = None) -> None:
        super().__init__()
        self.field, self.field_code, self.limit = field, field_code, limit


class WrongPassword(FieldProblem):
    code = "wrong_password"

    def __init__(self, field: str = "current_password") -> None:
        super().__init__(field, "invalid_value")


class FieldNotAllowed(FieldProblem):
    """A field the caller's role may not set: refused, never silently ignored."""

    code = "field_not_allowed"

    def __init__(self, field: str) -> None:
        super().__init__(field, "field_not_allowed")


class InvalidReference(FieldProblem):
    """An id in the body that names nothing the caller may use."""

    def __init__(self, field: str) -> None:
        super().__init__(field, "invalid_value")


class TicketNotFound(NotFound):
    code = "ticket_not_found"


class AttachmentNotFound(NotFound):
    code = "attachment_not_found"


class CategoryNotFound(NotFound):
    code = "category_not_found"


class TeamNotFound(NotFound):
    code = "team_not_found"


class TagNotFound(NotFound):
    code = "tag_not_found"


class CannedResponseNotFound(NotFound):
    code = "canned_response_not_found"


class KbArticleNotFound(NotFound):
    code = "kb_article_not_found"


class CategoryExists(Conflict):
    code = "category_exists"


class TeamExists(Conflict):
    code = "team_exists"


class SlaPolicyNotFound(NotFound):
    code = "sla_policy_not_found"


class SlaPolicyExists(Conflict):
    """Another SLA policy already covers this priority and category."""

    code = "sla_policy_exists"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class TicketClosed(Conflict):
    code = "ticket_closed"


class VersionConflict(Conflict):
    """Someone else changed the resource since it was read (409), or If-Match is stale (412)."""

    code = "version_conflict"

    def __init__(self, *, precondition: bool = False, current_version: int | None = None) -> None:
        super().__init__()
        if current_version is not None:
            self.extra["current_version"] = current_version
        self.precondition = precondition


class MergeNotAllowed(Conflict):
    code = "merge_not_allowed"


class RatingNotAllowed(Conflict):
    code = "rating_not_allowed"


class IdempotencyKeyReused(AppError):
    status, code = 422, "idempotency_key_reused"


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"


class NotReady(AppError):
    status, code = 503, "not_ready"


class DatabaseUnavailable(AppError):
    """The database could not be reached, or the connection broke mid-request: nothing this
    request wrote was committed unless the commit itself was lost, and a retry (with the same
    Idempotency-Key for a create) is safe."""

    status, code = 503, "database_unavailable"


class InvalidCursor(AppError):
    status, code = 400, "invalid_cursor"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class TooManyStreams(AppError):
    status, code = 429, "too_many_streams"


class JobNotFound(NotFound):
    code = "job_not_found"


class JobNotRetryable(Conflict):
    code = "job_not_retryable"


class QQBindingCodeInvalid(AppError):
    """A QQ binding code (`/绑定 <code>`) that is wrong, expired or already used."""

    status, code = 400, "qq_binding_code_invalid"


class QQBindingRateLimited(TooManyRequests):
    """Too many wrong binding codes from this QQ account, or from everyone (a guessed code would
    bind a stranger's QQ account); `retry_after` is in seconds."""

    code = "qq_binding_rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = max(1, retry_after)


class AiDisabled(AppError):
    """The AI feature asked for is switched off (no provider configured, or the feature off)."""

    status, code = 503, "ai_disabled"


class AiUnavailable(AppError):
    """Every configured provider failed (or is skipped by its circuit breaker) just now."""

    status, code = 503, "ai_unavailable"


class PayloadTooLarge(AppError):
    """An upload over its limit (the body-limit middleware answers the same for whole bodies)."""

    status, code = 413, "payload_too_large"


def problem_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors an endpoint may answer, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error.code)
        if error is VersionConflict:  # a stale If-Match is answered 412 (see `_app_error`)
            by_status.setdefault(412, []).append(error.code)
    return {
        status: {
            "description": "problem+json; code: " + ", ".join(f"`{c}`" for c in codes),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status, codes in by_status.items()
    }


def document_generic_problems(openapi: dict[str, Any]) -> None:
    """Document the problems every operation may answer, which FastAPI cannot see: invalid
    parameters are `validation_error` as problem+json (not FastAPI's HTTPValidationError), a
    JSON body that does not parse is 400 `malformed_json` (see `_validation_error`), a multipart
    body that does not parse 400 `bad_request` (Starlette's parser), and a body over its limit is
    413 `payload_too_large` (BodyLimitMiddleware)."""
    validation = problem_responses(FieldProblem)[422]
    for path in openapi.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if "application/json" in responses.get("422", {}).get("content", {}):
                responses["422"] = validation
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                _add_problem_code(responses, 400, "malformed_json")
            if "multipart/form-data" in body:
                _add_problem_code(responses, 400, "bad_request")
            if body:
                _add_problem_code(responses, 413, "payload_too_large")


def _add_problem_code(responses: dict[str, Any], status: int, code: str) -> None:
    existing = responses.get(str(status))
    if existing is None:
        responses[str(status)] = {
            "description": f"problem+json; code: `{code}`",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    elif f"`{code}`" not in existing["description"]:
        # A copy: endpoints may share one `responses` dict.
        responses[str(status)] = {**existing, "description": f"{existing['description']}, `{code}`"}


def problem_response(
    request: Request,
    status: int,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    lang = request_language(request)
    body: dict[str, Any] = {
        "type": f"https://helpdesk.invalid/problems/{code.replace('_', '-')}",
        "title": error_text(code, "en"),
        "status": status,
        "detail": error_text(code, lang),
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def request_language(request: Request) -> Lang:
    return pick_language(request.headers.get("accept-language"))


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    exc = cast(AppError, exc)  # registered for AppError only
    status = exc.status
    if isinstance(exc, VersionConflict) and exc.precondition:
        status = 412
    errors = None
    if isinstance(exc, FieldProblem):
        lang = request_language(request)
        errors = [{"field": exc.field, "code": exc.field_code, "message": field_text(exc.field_code, lang, exc.limit)}]
    return problem_response(request, status, exc.code, headers=exc.headers, errors=errors, extra=exc.extra)


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, exc)  # registered for HTTP errors only
    code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
    return problem_response(request, exc.status_code, code, headers=dict(exc.headers or {}))


# pydantic error type -> our field code
_PYDANTIC_CODES = {
    "missing": "required",
    "string_too_long": "too_long",
    "too_long": "too_long",
    "string_too_short": "too_short",
    "too_short": "too_short",
    "value_error": "invalid_value",
    "enum": "invalid_value",
    "literal_error": "invalid_value",
    "greater_than_equal": "too_small",
    "greater_than": "too_small",
    "less_than_equal": "too_large",
    "less_than": "too_large",
    "extra_forbidden": "unknown_field",
}
_LIMIT_KEYS = ("max_length", "min_length", "ge", "gt", "le", "lt")


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "title") -> "title"; ("query", "limit") -> "limit"; nested -> "a.b.0"
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts) or "body"


def _field_code(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    custom = ctx.get("field_code") if isinstance(ctx, dict) else None
    if isinstance(custom, str):
        return custom
    kind = str(error.get("type", ""))
    if kind in FIELD_TEXTS:  # our own PydanticCustomError types
        return kind
    if kind in _PYDANTIC_CODES:
        return _PYDANTIC_CODES[kind]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "invalid_type"
    return "invalid_value"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    exc = cast(RequestValidationError, exc)  # registered for validation errors only
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        return problem_response(request, 400, "malformed_json")
    lang = request_language(request)
    errors = []
    for error in raw:
        ctx = error.get("ctx") or {}
        limit = next((ctx[k] for k in _LIMIT_KEYS if k in ctx), None)
        code = _field_code(error)
        errors.append(
            {"field": _field_name(tuple(error.get("loc", ()))), "code": code, "message": field_text(code, lang, limit)}
        )
    return problem_response(request, 422, "validation_error", errors=errors)


def _is_unstorable_value(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        # sqlstate 22021 (character_not_in_repertoire): PostgreSQL text cannot hold a NUL character.
        if isinstance(cause, OverflowError) or getattr(cause, "sqlstate", None) == "22021":
            return True
        cause = cause.__cause__
    return False


_DATABASE_DRIVERS = ("asyncpg", "aiosqlite", "sqlalchemy")


def _raised_by_database_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_DATABASE_DRIVERS):
            return True
        tb = tb.tb_next
    return False


def _is_database_unavailable(exc: BaseException) -> bool:
    """A lost or refused database connection, as opposed to a statement the database refused.
    asyncpg raises a failed connect as a bare OSError (reset, refused, timeout) that SQLAlchemy
    does not wrap; a connection lost mid-statement is a DBAPIError SQLAlchemy marks invalidated."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, InterfaceError)
    return isinstance(exc, OSError) and _raised_by_database_driver(exc)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if _is_database_unavailable(exc):
        return problem_response(request, DatabaseUnavailable.status, DatabaseUnavailable.code)
    if isinstance(exc, OSError):
        raise exc  # not the database's: stays a logged 500 (RequestContextMiddleware)
    return await _unstorable_value(request, exc)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    # A value no column can hold reached a statement: a number past the column's range (an id past
    # 32 bits on PostgreSQL's integer columns, past 64 on SQLite; asyncpg and sqlite3 refuse to
    # bind it with OverflowError) or, on PostgreSQL, text with a NUL character (a username or a
    # filter typed as `%00`). No row can carry such a value, so it is the client's invalid input.
    if not _is_unstorable_value(exc):
        raise exc  # any other database error stays a logged 500 (RequestContextMiddleware)
    return problem_response(request, 422, "validation_error", errors=[])


async def _stale_data(request: Request, exc: Exception) -> JSONResponse:
    # SQLAlchemy's version check failed at some flush: someone else changed the row first.
    return problem_response(request, 409, VersionConflict.code)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OverflowError, _unstorable_value)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    # Anything else escapes to RequestContextMiddleware, which logs it and answers a bare 500.
