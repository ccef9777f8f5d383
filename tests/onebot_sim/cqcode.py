"""A tiny CQ-code writer and reader, kept apart from `app/onebot` so the simulator checks it.

Text escapes `&` `[` `]` as `&amp;` `&#91;` `&#93;`; parameter values also escape `,` as `&#44;`.
"""

from __future__ import annotations

import re
from typing import Any

_CQ = re.compile(r"\[CQ:([^,\]]+)((?:,[^\]]*)?)\]")


def escape(text: str, *, in_param: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("[", "&#91;").replace("]", "&#93;")
    return text.replace(",", "&#44;") if in_param else text


def unescape(text: str) -> str:
    # `&amp;` last, so "&amp;#91;" stays the literal text "&#91;".
    return text.replace("&#44;", ",").replace("&#91;", "[").replace("&#93;", "]").replace("&amp;", "&")


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_cq(segments: list[dict[str, Any]]) -> str:
    """Segment array → CQ string, as go-cqhttp writes `message` and every `raw_message`."""
    parts = []
    for segment in segments:
        data = segment.get("data") or {}
        if segment["type"] == "text":
            parts.append(escape(str(data.get("text", ""))))
            continue
        params = "".join(f",{key}={escape(_param_value(value), in_param=True)}" for key, value in data.items())
        parts.append(f"[CQ:{segment['type']}{params}]")
    return "".join(parts)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "data": {"text": unescape(text)}}


def _code(kind: str, raw_params: str) -> dict[str, Any]:
    data = {}
    for pair in filter(None, raw_params.split(",")):
        key, _, value = pair.partition("=")
        data[key] = unescape(value)
    return {"type": kind, "data": data}


def from_cq(message: str) -> list[dict[str, Any]]:
    """CQ string → segment array (parameter values stay strings, as they arrive)."""
    segments = []
    position = 0
    for match in _CQ.finditer(message):
        if match.start() > position:
            segments.append(_text(message[position : match.start()]))
        segments.append(_code(match.group(1), match.group(2)))
        position = match.end()
    if position < len(message):
        segments.append(_text(message[position:]))
    return segments
