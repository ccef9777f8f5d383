"""Structured logs: one JSON object per line, carrying the request id; secrets redacted.

Redaction happens when a record is created (a log-record factory), so it covers third-party
loggers (httpx logs request URLs, which for WeChat carry the app secret in the query string)
and every handler, whatever order they were added in.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# key=value / "key": "value" pairs whose value must never reach a log line.
_SECRET_KEYS = r"(?:secret|password|passwd|token|access_token|refresh_token|js_code|session_key|authorization|api_key)"  # noqa: S105  # names to redact, not a secret
_PATTERNS = [
    re.compile(rf"(?i)(\b{_SECRET_KEYS}=)[^&\s\"']+"),
    re.compile(rf"(?i)(\"{_SECRET_KEYS}\"\s*:\s*\")[^\"]*"),
    re.compile(r"(?i)(\b(?:bearer|token)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # password hashes, should one ever be printed
    re.compile(r"()\$argon2(?:id|i|d)\$[^\s'\"]+"),
    # JWTs wherever they appear
    re.compile(r"()\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> Any:
    return _request_id.set(value)


def reset_request_id(token: Any) -> None:
    _request_id.reset(token)


def _redacting_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for logging's own error report
            return record
        # Rendered once, redacted, at creation: every handler (ours, pytest's, an operator's)
        # sees the same clean text, whatever order they were added in.
        record.msg, record.args = redact(message), None
        record.request_id = _request_id.get()
        return record

    make_record._helpdesk = True  # type: ignore[attr-defined]  # marks the installed factory
    return make_record


def install_record_factory() -> None:
    current = logging.getLogRecordFactory()
    if not getattr(current, "_helpdesk", False):
        logging.setLogRecordFactory(_redacting_factory(current))


class JsonFormatter(logging.Formatter):
    _EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "client_ip")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for field in self._EXTRA_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        line = f"{line} [{request_id}]" if request_id else line
        return redact(line) if record.exc_info else line


def build_handler(stream: TextIO, *, json_lines: bool) -> logging.Handler:
    install_record_factory()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if json_lines else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    return handler


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = build_handler(sys.stderr, json_lines=json_lines)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_helpdesk", False):
            root.removeHandler(old)
    handler._helpdesk = True  # type: ignore[attr-defined]  # marks our handler for reconfiguration
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Our access log replaces uvicorn's (which logs query strings: realtime tokens live there).
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
