"""Frames on the wire: decoding, action requests and action responses.

A frame with `post_type` is an event; any other object is the response to an action. Success is
`status == "ok"` (or `"async"`: accepted); retcodes are not compared because every implementation
uses its own. Implementations surface the reason in `wording`, `message` or `msg`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from app.onebot.errors import ActionFailed, InvalidFrame

SUCCESS = frozenset({"ok", "async"})
# NapCat's stream actions answer with several frames under one echo; data.type says which.
STREAM_ACTION = "stream-action"
STREAM_CHUNK, STREAM_RESET, STREAM_END, STREAM_ERROR = "stream", "reset", "response", "error"


# JSON may escape half of a UTF-16 surrogate pair ("\ud83d" alone: a JavaScript implementation
# that cut an emoji in two). Such a string is not Unicode: the database and pydantic refuse it
# wherever it goes, so a customer's message would fail its job again and again.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # after json.loads, pairs are joined: these are halves


def decode(raw: str | bytes) -> dict[str, Any]:
    """One frame as a JSON object, or InvalidFrame. Lone surrogates become U+FFFD."""
    try:
        frame = json.loads(raw)
        text = raw if isinstance(raw, str) else raw.decode("latin-1")  # escapes are ASCII
        if _SURROGATE_ESCAPE.search(text):
            frame = _replace_lone_surrogates(frame)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidFrame(f"not JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise InvalidFrame(f"not a JSON object: {type(frame).__name__}")
    return frame


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def is_event(frame: dict[str, Any]) -> bool:
    return "post_type" in frame


def action_frame(action: str, params: dict[str, Any], echo: str) -> dict[str, Any]:
    return {"action": action, "params": params, "echo": echo}


@dataclass(slots=True)
class ActionResponse:
    status: str
    retcode: int
    data: Any
    echo: str | None
    wording: str = ""
    stream: str | None = None
    # Chunks of a NapCat stream action, in order, gathered before the final frame.
    chunks: list[Any] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> ActionResponse:
        echo = frame.get("echo")
        retcode = frame.get("retcode")
        return cls(
            status=str(frame.get("status", "")),
            retcode=retcode if isinstance(retcode, int) else _int_or(retcode, -1),
            data=frame.get("data"),
            # Some implementations turn our string echo into another type; compare as text.
            echo=None if echo is None else str(echo),
            wording=_reason(frame),
            stream=frame.get("stream") if isinstance(frame.get("stream"), str) else None,
        )

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS

    @property
    def stream_phase(self) -> str | None:
        """For a stream-action frame, `stream`/`reset`/`response`/`error`; otherwise None."""
        if self.stream != STREAM_ACTION or not isinstance(self.data, dict):
            return None
        phase = self.data.get("type")
        return phase if isinstance(phase, str) else None

    def result(self, action: str) -> Any:
        """The data of a successful response, or ActionFailed."""
        if not self.ok or self.stream_phase == STREAM_ERROR:
            raise ActionFailed(action, self.retcode, self.wording, self.data)
        return self.data


def _reason(frame: dict[str, Any]) -> str:
    for key in ("wording", "message", "msg"):
        value = frame.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float (1e400)
        return default
