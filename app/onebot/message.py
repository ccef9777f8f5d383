"""Messages: segments, CQ-code strings and segment arrays, one model for both.

Implementations send a CQ-code string (go-cqhttp's default `message_format: string`) or an
array of segments (NapCat's default); both parse into `Message`. We always send arrays, and
user text always goes out as `text` segments, so a user's "[CQ:...]" can never become a real
code (injection).

CQ escaping: in text `&` `[` `]` are `&amp;` `&#91;` `&#93;`; inside parameter values `,` is
also `&#44;`. Unescaping replaces `&amp;` last, so "&amp;#91;" stays the literal "&#91;".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_CQ = re.compile(r"\[CQ:([A-Za-z0-9_.-]+)((?:,[^\[\],]*)*)\]")


def escape(text: str, *, in_param: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("[", "&#91;").replace("]", "&#93;")
    return text.replace(",", "&#44;") if in_param else text


def unescape(text: str) -> str:
    return text.replace("&#44;", ",").replace("&#91;", "[").replace("&#93;", "]").replace("&amp;", "&")


@dataclass(frozen=True)
class MessageSegment:
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    # --- builders ---------------------------------------------------------------------------

    @classmethod
    def text(cls, text: str) -> MessageSegment:
        return cls("text", {"text": text})

    @classmethod
    def at(cls, qq: int | str) -> MessageSegment:
        return cls("at", {"qq": str(qq)})  # ids go out as strings (ONEBOT.md)

    @classmethod
    def reply(cls, message_id: int | str) -> MessageSegment:
        return cls("reply", {"id": str(message_id)})

    @classmethod
    def face(cls, face_id: int | str) -> MessageSegment:
        return cls("face", {"id": str(face_id)})

    @classmethod
    def image(cls, file: str) -> MessageSegment:
        """`file` is a URL, a `file:///` path or `base64://...`."""
        return cls("image", {"file": file})

    # --- forms ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "data": dict(self.data)}

    def __str__(self) -> str:
        if self.type == "text":
            return escape(str(self.data.get("text", "")))
        params = "".join(f",{k}={escape(str(v), in_param=True)}" for k, v in self.data.items() if v is not None)
        return f"[CQ:{self.type}{params}]"


class Message(list[MessageSegment]):
    """A list of segments; `str()` gives the CQ-code form, `to_array()` what we send."""

    @classmethod
    def parse(cls, raw: Any) -> Message:
        """From a CQ-code string, an array of segments, a single segment dict, or None."""
        if raw is None:
            return cls()
        if isinstance(raw, str):
            return cls.from_cq(raw)
        if isinstance(raw, dict):
            raw = [raw]
        if isinstance(raw, Iterable):
            return cls(_segment(item) for item in raw)
        raise TypeError(f"not a message: {type(raw).__name__}")

    @classmethod
    def from_cq(cls, text: str) -> Message:
        message = cls()
        position = 0
        for match in _CQ.finditer(text):
            if match.start() > position:
                message.append(MessageSegment.text(unescape(text[position : match.start()])))
            message.append(MessageSegment(match.group(1), _params(match.group(2))))
            position = match.end()
        if position < len(text):
            message.append(MessageSegment.text(unescape(text[position:])))
        return message

    def to_array(self) -> list[dict[str, Any]]:
        return [segment.to_dict() for segment in self]

    def plain_text(self) -> str:
        """The text segments only, joined (what a command parser reads)."""
        return "".join(str(s.data.get("text", "")) for s in self if s.type == "text")

    def of_type(self, kind: str) -> Iterator[MessageSegment]:
        return (segment for segment in self if segment.type == kind)

    def __str__(self) -> str:
        return "".join(str(segment) for segment in self)


def _segment(item: Any) -> MessageSegment:
    if isinstance(item, MessageSegment):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise ValueError(f"not a message segment: {item!r}")
    data = item.get("data") or {}
    if not isinstance(data, dict):
        raise ValueError(f"segment data is not an object: {item!r}")
    return MessageSegment(item["type"], dict(data))


def _params(raw: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for part in raw.split(",")[1:]:
        key, _, value = part.partition("=")
        if key:
            params[key] = unescape(value)
    return params
