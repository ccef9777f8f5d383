"""The simulated QQ account and OneBot implementation: state, actions, events and delivery.

Transports (forward/reverse WebSocket, HTTP API, HTTP POST) only move frames; everything a
test can observe or script about the implementation itself lives here.
"""

# Waits take a `timeout` on purpose: a test helper that can never hang is the point (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from tests.onebot_sim import cqcode, responses
from tests.onebot_sim.actions import ACTIONS, NAPCAT_ONLY, Handler, Stream
from tests.onebot_sim.quirks import Quirks
from tests.onebot_sim.responses import NO_ECHO, ActionFailure

ID_KEYS = frozenset({"self_id", "user_id", "group_id", "operator_id", "target_id"})
# Where the message id counters start: NapCat's ids exceed int32, go-cqhttp's are negative.
FIRST_MESSAGE_ID = {"napcat": (3425462029, 1), "gocq": (-726405240, -1)}
MEDIA_SEGMENTS = frozenset({"image", "record", "video", "file"})

T = TypeVar("T")


def encode(frame: dict[str, Any]) -> str:
    """JSON as the implementations write it: compact, UTF-8 text (no \\u escapes)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class EventSink(Protocol):
    """A link that carries events to the client: a WebSocket or the HTTP POST target."""

    async def deliver(self, text: str) -> bool: ...


class DropConnection(Exception):
    """`drop_next` fired: the transport closes the link instead of answering."""

    def __init__(self, action: str, close_code: int | None) -> None:
        super().__init__(action)
        self.close_code = close_code


@dataclass
class _Control:
    kind: Literal["drop", "fail"]
    close_code: int | None = None
    retcode: int | None = None
    wording: str = ""


class Signal:
    """Wakes every waiter on each `notify`, so tests await state changes instead of sleeping."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float) -> T:
        """The predicate's first truthy result, checked after every notify."""
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                await self._event.wait()


@dataclass
class Implementation:
    """One logged-in QQ account behind a OneBot v11 implementation (NapCat, go-cqhttp, ...).

    `calls` records every action received (`{"action", "params", "over_http"[, "echo"]}`), in
    order; `sent` every message "sent" to QQ (`{"action", "message_type", "user_id",
    "group_id", "message", "segments", "text", "message_id"}`, `message` as the client gave it).
    """

    self_id: int = 123456789
    nickname: str = "工单助手"
    quirks: Quirks = field(default_factory=Quirks)
    token: str = ""
    friends: set[int] = field(default_factory=set)
    nicknames: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)
    online: bool = True
    history_limit: int = 5000  # NapCat answers get_msg for about this many recent messages
    calls: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    bad_frames: list[str | bytes] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # pending friend request flag -> user_id
    messages: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    changed: Signal = field(default_factory=Signal, repr=False)
    _silenced: set[str] = field(default_factory=set, repr=False)
    _controls: dict[str, deque[_Control]] = field(default_factory=dict, repr=False)
    _delays: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _sinks: list[EventSink] = field(default_factory=list, repr=False)
    _followups: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _issued: int = field(default=0, repr=False)
    _stored: int = field(default=0, repr=False)

    # --- scripting -------------------------------------------------------------------------

    def drop_next(self, action: str, *, close_code: int | None = None) -> None:
        """The next `action` closes its link unanswered: the TCP connection is aborted (no close
        frame, like a crash), or closed with `close_code`. Over HTTP the response is cut off."""
        self._controls.setdefault(action, deque()).append(_Control("drop", close_code=close_code))

    def silence(self, action: str) -> None:
        """Never answer `action` (until `unsilence`); it is still recorded in `calls`."""
        self._silenced.add(action)

    def unsilence(self, action: str) -> None:
        self._silenced.discard(action)

    def fail_next(self, action: str, retcode: int | None = None, wording: str = "操作失败") -> None:
        """The next `action` fails with `retcode` (default: the flavor's generic failure code)."""
        self._controls.setdefault(action, deque()).append(_Control("fail", retcode=retcode, wording=wording))

    def delay_next(self, action: str, seconds: float) -> None:
        """The next `action` is answered `seconds` late (on top of `reply_delay`); other actions
        are answered meanwhile, as both implementations handle actions concurrently."""
        self._delays.setdefault(action, deque()).append(seconds)

    def reply_delay_for(self, action: str) -> float:
        """How long to wait before answering this `action` (consumes a `delay_next`)."""
        queue = self._delays.get(action)
        return self.quirks.reply_delay + (queue.popleft() if queue else 0.0)

    def add_file(self, file: str, *, url: str | None = None, size: int = 2048, name: str | None = None) -> None:
        """Make `file` known to get_image / get_file (media in built events are added too)."""
        self.files[file] = {"name": name or file, "url": url or f"https://example.invalid/{file}", "size": size}

    # --- actions ---------------------------------------------------------------------------

    def supports(self, action: str) -> bool:
        return self._handler(action) is not None

    def handle_action(
        self, action: str, params: Any, echo: Any = NO_ECHO, *, over_http: bool = False
    ) -> list[dict[str, Any]]:
        """Record the call and return the response frame(s) it gets: none when silenced, two
        with `reply_twice`, several for a stream action. Raises `DropConnection` for
        `drop_next`. `echo=NO_ECHO` means the request had no echo key."""
        self.record_call(action, params, echo, over_http=over_http)
        return self.answer(action, params, echo, over_http=over_http)

    async def respond(
        self, action: str, params: Any, echo: Any = NO_ECHO, *, over_http: bool = False
    ) -> list[dict[str, Any]]:
        """`handle_action` with `reply_delay` (and any `delay_next`) between receiving and
        answering, as the sockets do."""
        self.record_call(action, params, echo, over_http=over_http)
        if delay := self.reply_delay_for(action):
            await asyncio.sleep(delay)
        return self.answer(action, params, echo, over_http=over_http)

    def record_call(self, action: str, params: Any, echo: Any = NO_ECHO, *, over_http: bool = False) -> None:
        """The first half of `handle_action`: note the call as received."""
        call = {"action": action, "params": params, "over_http": over_http}
        if echo is not NO_ECHO:
            call["echo"] = echo
        self.calls.append(call)
        self.changed.notify()

    def answer(self, action: str, params: Any, echo: Any = NO_ECHO, *, over_http: bool = False) -> list[dict[str, Any]]:
        """The second half of `handle_action`: the frames, with the scripted faults applied."""
        if action in self._silenced:
            return []
        control = self._take_control(action)
        if control is not None and control.kind == "drop":
            raise DropConnection(action, control.close_code)
        frames = self._frames(action, params, echo, over_http, control)
        return frames * 2 if self.quirks.reply_twice else frames

    def _take_control(self, action: str) -> _Control | None:
        queue = self._controls.get(action)
        return queue.popleft() if queue else None

    def _handler(self, action: str) -> Handler | None:
        if self.quirks.flavor == "gocq":
            # go-cqhttp strips `_async` and answers synchronously; NapCat does not know the suffix.
            return ACTIONS.get(action.removesuffix("_async"))
        return ACTIONS.get(action) or NAPCAT_ONLY.get(action)

    def _frames(
        self, action: str, params: Any, echo: Any, over_http: bool, control: _Control | None
    ) -> list[dict[str, Any]]:
        try:
            result = self._run(action, params, control)
        except ActionFailure as failure:
            return [responses.failed(failure, echo, self.quirks, over_http=over_http)]
        if isinstance(result, Stream):
            return [responses.ok(self.shape(p), echo, self.quirks, stream=True) for p in result.packets]
        return [responses.ok(self.shape(result), echo, self.quirks)]

    def _run(self, action: str, params: Any, control: _Control | None) -> Any:
        if control is not None:
            raise ActionFailure("failed", control.wording, code="SCRIPTED_FAILURE", retcode=control.retcode)
        handler = self._handler(action)
        if handler is None:
            raise responses.unknown_action(action, self.quirks)
        if not isinstance(params, dict):
            raise ActionFailure("bad_params", "Key: params, Message: must be object", code="PARAM_ERROR")
        return handler(self, params)

    # --- QQ-side state ---------------------------------------------------------------------

    def nickname_of(self, user_id: int) -> str:
        if user_id == self.self_id:
            return self.nickname
        return self.nicknames.get(user_id, f"用户{user_id}")

    def group_name(self, group_id: int) -> str:
        return self.groups.get(group_id, f"群{group_id}")

    def next_message_id(self) -> int:
        start, step = FIRST_MESSAGE_ID[self.quirks.flavor]
        self._issued += 1
        return start + step * (self._issued - 1)

    def record_send(
        self,
        action: str,
        raw: Any,
        segments: list[dict[str, Any]],
        *,
        user_id: int | None = None,
        group_id: int | None = None,
    ) -> int:
        """A message the client made the bot send: keep it for `sent`, get_msg and delete_msg."""
        message_type = "group" if group_id is not None else "private"
        stored = self._store(message_type, self.self_id, segments, group_id=group_id, target_id=user_id)
        text = "".join(str(s["data"].get("text", "")) for s in segments if s["type"] == "text")
        self.sent.append(
            {
                "action": action,
                "message_type": message_type,
                "user_id": user_id,
                "group_id": group_id,
                "message": raw,
                "segments": segments,
                "text": text,
                "message_id": stored["message_id"],
            }
        )
        self.changed.notify()
        if self.quirks.report_self_message:
            self._followups.append(self._message_event("message_sent", stored, sub_type=_sub_type(stored)))
        return int(stored["message_id"])

    def _store(
        self,
        message_type: str,
        sender_id: int,
        segments: list[dict[str, Any]],
        *,
        group_id: int | None = None,
        target_id: int | None = None,
        message_id: int | None = None,
        at: int | None = None,
        sender: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        for segment in segments:
            file = segment.get("data", {}).get("file")
            if segment["type"] in MEDIA_SEGMENTS and isinstance(file, str) and file not in self.files:
                size = int(segment["data"].get("file_size") or 2048)
                self.add_file(file, url=segment["data"].get("url"), size=size)
        self._stored += 1
        stored: dict[str, Any] = {
            "message_id": self.next_message_id() if message_id is None else message_id,
            "seq": 1000 + self._stored,  # NapCat's message_seq / real_id: small, per chat in reality
            "time": int(time.time()) if at is None else at,
            "message_type": message_type,
            "user_id": sender_id,
            "group_id": group_id,
            "target_id": target_id,
            "segments": segments,
            "sender": sender or {},
            "deleted": False,
        }
        self.messages[stored["message_id"]] = stored
        while len(self.messages) > self.history_limit:
            self.messages.popitem(last=False)
        return stored

    def describe_message(self, stored: dict[str, Any]) -> dict[str, Any]:
        """get_msg's data for a stored message."""
        data = {
            "time": stored["time"],
            "message_type": stored["message_type"],
            "message_id": stored["message_id"],
            "real_id": stored["seq"],
            "sender": self._sender(stored),
            "message": self._message_field(stored["segments"]),
            "raw_message": cqcode.to_cq(stored["segments"]),
        }
        if stored["group_id"] is not None:
            data["group_id"] = stored["group_id"]
        if self.quirks.flavor == "napcat":
            data |= {"message_seq": stored["seq"], "message_format": self.quirks.message_format}
        return data

    # --- events ----------------------------------------------------------------------------

    def private_message(
        self,
        user_id: int,
        message: str | list[dict[str, Any]],
        *,
        message_id: int | None = None,
        nickname: str | None = None,
        sub_type: str = "friend",
        at: int | None = None,
    ) -> dict[str, Any]:
        """A private message from `user_id`. A str is the user's literal text (one text segment);
        a list is a segment array. `at` overrides `time` (e.g. NapCat's rare milliseconds)."""
        sender = {"nickname": nickname} if nickname else None
        stored = self._store("private", user_id, _segments(message), message_id=message_id, at=at, sender=sender)
        return self._message_event("message", stored, sub_type=sub_type)

    def group_message(
        self,
        group_id: int,
        user_id: int,
        message: str | list[dict[str, Any]],
        *,
        message_id: int | None = None,
        nickname: str | None = None,
        card: str = "",
        role: str = "member",
        at: int | None = None,
    ) -> dict[str, Any]:
        """A group message from `user_id` in `group_id` (sub_type "normal")."""
        sender = {"nickname": nickname or self.nickname_of(user_id), "card": card, "role": role}
        segments = _segments(message)
        stored = self._store("group", user_id, segments, group_id=group_id, message_id=message_id, at=at, sender=sender)
        return self._message_event("message", stored, sub_type="normal")

    def message_sent(
        self,
        message: str | list[dict[str, Any]],
        *,
        user_id: int | None = None,
        group_id: int | None = None,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """post_type "message_sent": the bot account's own message (sent by any client of it),
        to `user_id` in private or to `group_id`."""
        message_type = "group" if group_id is not None else "private"
        stored = self._store(
            message_type, self.self_id, _segments(message), group_id=group_id, target_id=user_id, message_id=message_id
        )
        return self._message_event("message_sent", stored, sub_type=_sub_type(stored))

    def friend_request(self, user_id: int, flag: str | None = None, comment: str = "") -> dict[str, Any]:
        """A friend request; its flag is what set_friend_add_request answers (approve adds a friend)."""
        flag = flag or f"friend_request_{user_id}_{len(self.requests) + 1}"
        self.requests[flag] = user_id
        event = self._base("request") | {"request_type": "friend", "user_id": user_id, "comment": comment, "flag": flag}
        return self.shape(event)

    def group_increase(
        self, group_id: int, user_id: int, *, operator_id: int | None = None, sub_type: str = "approve"
    ) -> dict[str, Any]:
        event = self._base("notice") | {
            "notice_type": "group_increase",
            "sub_type": sub_type,
            "group_id": group_id,
            "operator_id": operator_id if operator_id is not None else self.self_id,
            "user_id": user_id,
        }
        return self.shape(event)

    def heartbeat(self) -> dict[str, Any]:
        interval_ms = round((self.quirks.heartbeat_interval or 30) * 1000)
        status: dict[str, Any] = {"online": self.online, "good": True}
        if self.quirks.flavor == "gocq":
            status |= {"app_enabled": True, "app_good": True, "app_initialized": True, "plugins_good": None}
        event = self._base("meta_event") | {"meta_event_type": "heartbeat", "status": status, "interval": interval_ms}
        return self.shape(event)

    def lifecycle_connect(self) -> dict[str, Any]:
        event = self._base("meta_event") | {"meta_event_type": "lifecycle", "sub_type": "connect"}
        if self.quirks.flavor == "gocq":
            event["_post_method"] = 2  # go-cqhttp's forward server leaks this internal field
        return self.shape(event)

    def _base(self, post_type: str, at: int | None = None) -> dict[str, Any]:
        return {"time": int(time.time()) if at is None else at, "self_id": self.self_id, "post_type": post_type}

    def _message_event(self, post_type: str, stored: dict[str, Any], *, sub_type: str) -> dict[str, Any]:
        napcat = self.quirks.flavor == "napcat"
        event = self._base(post_type, stored["time"]) | {
            "message_type": stored["message_type"],
            "sub_type": sub_type,
            "message_id": stored["message_id"],
            "user_id": stored["user_id"],
            "message": self._message_field(stored["segments"]),
            "raw_message": cqcode.to_cq(stored["segments"]),
            "font": 14 if napcat else 0,
            "sender": self._sender(stored),
        }
        if stored["group_id"] is not None:
            event["group_id"] = stored["group_id"]
            event |= {"group_name": self.group_name(stored["group_id"])} if napcat else {"anonymous": None}
        elif not napcat or post_type == "message_sent":
            event["target_id"] = stored["target_id"] if post_type == "message_sent" else self.self_id
        if napcat:
            event |= {
                "message_seq": stored["seq"],
                "real_id": stored["seq"],
                "message_format": self.quirks.message_format,
            }
        return self.shape(event)

    def _message_field(self, segments: list[dict[str, Any]]) -> Any:
        if self.quirks.message_format == "string":
            return cqcode.to_cq(segments)
        return copy.deepcopy(segments)

    def _sender(self, stored: dict[str, Any]) -> dict[str, Any]:
        user_id = stored["user_id"]
        sender: dict[str, Any] = {"user_id": user_id, "nickname": self.nickname_of(user_id)}
        sender |= stored["sender"]
        if stored["group_id"] is not None:
            sender = {"card": "", "role": "member"} | sender
        if self.quirks.flavor == "gocq":
            sender = {"sex": "unknown", "age": 0} | sender
        return sender

    def shape(self, value: T) -> T:
        """Ids as the configured implementation writes them (numbers, or strings)."""
        return _stringify_ids(value) if self.quirks.ids_as_strings else value

    # --- delivery --------------------------------------------------------------------------

    def attach(self, sink: EventSink) -> None:
        self._sinks.append(sink)
        self.changed.notify()

    def detach(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
        self.changed.notify()

    @property
    def event_links(self) -> int:
        """How many links events currently go to."""
        return len(self._sinks)

    async def emit(self, event: dict[str, Any]) -> int:
        """Send `event` to every event-carrying link (forward WS connections, reverse WS clients
        with role Universal/Event, HTTP POST senders); returns how many took it."""
        text = encode(event)
        delivered = 0
        for sink in list(self._sinks):
            delivered += await sink.deliver(text)
        return delivered

    async def flush_followups(self) -> None:
        """Emit what the last actions caused (message_sent reports); transports call this after
        writing the response, as the implementations report after the send went through."""
        followups, self._followups = self._followups, []
        for event in followups:
            await self.emit(event)

    # --- waiting ---------------------------------------------------------------------------

    async def wait_for_call(self, action: str, *, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        """The `count`-th call of `action`, once it has arrived."""

        def nth() -> dict[str, Any] | None:
            matching = [call for call in self.calls if call["action"] == action]
            return matching[count - 1] if len(matching) >= count else None

        return await self.changed.wait_for(nth, timeout)

    async def wait_for_sent(self, count: int = 1, *, timeout: float = 5.0) -> dict[str, Any]:
        """The `count`-th message sent, once it has been."""
        return await self.changed.wait_for(lambda: self.sent[count - 1] if len(self.sent) >= count else None, timeout)


def _stringify_ids(value: Any) -> Any:
    if isinstance(value, list):
        return [_stringify_ids(item) for item in value]
    if isinstance(value, dict):
        return {k: str(v) if k in ID_KEYS and isinstance(v, int) else _stringify_ids(v) for k, v in value.items()}
    return value


def _segments(message: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(message, str):
        return [{"type": "text", "data": {"text": message}}]
    return copy.deepcopy(message)


def _sub_type(stored: dict[str, Any]) -> str:
    return "normal" if stored["group_id"] is not None else "friend"
