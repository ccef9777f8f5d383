"""OneBot v11 events as Pydantic models, and `parse_event`, the one way a frame becomes an event.

`parse_event(frame)` picks the class from `post_type` and its sub-key (`message_type`,
`notice_type`, `request_type`, `meta_event_type`; for `notify` notices also `sub_type`). An
event of a type this module does not know is not an error: it becomes an `UnknownEvent` (or, for
an unknown `notice_type`, a plain `NoticeEvent`) carrying every field. A known type with a
missing or invalid required field raises `pydantic.ValidationError`; the caller logs and skips
the frame.

Routing keys (`event.kind`, what the EventManager subscribes on), `EVENT_KINDS`:

    message.private          PrivateMessageEvent
    message.group            GroupMessageEvent
    message_sent.private     PrivateMessageSentEvent    our own messages, reported back
    message_sent.group       GroupMessageSentEvent      (never `message.*`: not customer input)
    notice.group_upload      GroupUploadNoticeEvent
    notice.group_admin       GroupAdminNoticeEvent
    notice.group_decrease    GroupDecreaseNoticeEvent
    notice.group_increase    GroupIncreaseNoticeEvent
    notice.group_ban         GroupBanNoticeEvent
    notice.friend_add        FriendAddNoticeEvent
    notice.group_recall      GroupRecallNoticeEvent
    notice.friend_recall     FriendRecallNoticeEvent
    notice.notify            NotifyNoticeEvent: PokeNotifyEvent, LuckyKingNotifyEvent,
                             HonorNotifyEvent, or the base class for other sub_types;
                             handlers check `sub_type`
    request.friend           FriendRequestEvent
    request.group            GroupRequestEvent
    meta_event.lifecycle     LifecycleMetaEvent
    meta_event.heartbeat     HeartbeatMetaEvent

Any other event's kind is `f"{post_type}.{detail}"`, `detail` being the value of the sub-key,
or just `post_type` when there is none (`notice.group_card`, `message.guild`, `foo`).

`event.dedupe_key` is `(self_id, post_type, message_id)` for `message` and `message_sent`
events, `(self_id, post_type, flag)` for requests, and None for the rest: notices and
heartbeats carry no id and are not de-duplicated.

Types and tolerance (implementations differ, see ONEBOT.md):
- ids (`Id`) arrive as numbers or numeric strings and become int; `MessageId` is opaque but
  numeric: NapCat's exceed int32, go-cqhttp's are often negative; both fit a 64-bit integer.
- `time` is in seconds; a value above 10**11 is taken as milliseconds and divided. A missing
  or malformed `time` becomes the moment the frame is parsed: not 0 (which would date a
  customer's message 1970) and not an error (which would drop it for want of a timestamp).
- every model keeps unknown fields (`event.model_extra`): NapCat adds `message_seq`,
  `real_id`, `group_name`, `raw`...
- best-effort fields (`sender` and its fields, `raw_message`, `font`, `anonymous`) never fail
  an event: missing or malformed, they fall back to None or their default.
- `message` parses from a CQ-code string or a segment array into one `Message`;
  `model_dump()` gives it back as a segment array, so dumps are JSON-able.
"""

from __future__ import annotations

import math
import re
import time as _time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from app.onebot.message import Message

# --- field types ----------------------------------------------------------------------------

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INTEGER = re.compile(r"[+-]?\d+")
_MILLISECONDS_FROM: Final = 10**11  # 10**11 s is the year 5138; 10**11 ms is 1973


def _integer(value: Any) -> Any:
    """Numeric strings to int; a bool is no number here (pydantic would take it as 0/1)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer id")
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            raise ValueError("not an integer")
        return int(text)
    return value


Id = Annotated[int, BeforeValidator(_integer), Field(ge=_INT64_MIN, le=_INT64_MAX)]
"""A QQ number, group number, bot id...: a number or a numeric string, stored as int."""

MessageId = Annotated[int, BeforeValidator(_integer), Field(ge=_INT64_MIN, le=_INT64_MAX)]
"""Opaque message id: beyond int32 (NapCat) or negative (go-cqhttp); always fits 64 bits."""


def _seconds(value: Any) -> Any:
    value = _integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a time")
        return int(value)  # fractional seconds: the second is precise enough
    return value


def _from_milliseconds(value: int) -> int:
    return value // 1000 if value > _MILLISECONDS_FROM else value


def _now() -> int:
    return int(_time.time())


Timestamp = Annotated[int, BeforeValidator(_seconds), Field(ge=0, le=_INT64_MAX), AfterValidator(_from_milliseconds)]
"""Unix time in seconds; a value in milliseconds (above 10**11) is divided by 1000."""


def _text(value: Any) -> Any:
    """Numbers to str, for string fields some implementations send as numbers."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _best_effort(default: Any = None, *, factory: Callable[[], Any] | None = None) -> WrapValidator:
    """A field that falls back to `default` (or `factory()`) instead of failing the event."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return factory() if factory is not None else default

    return WrapValidator(validate)


def _parse_message(value: Any) -> Message:
    try:
        return Message.parse(value)
    except TypeError as exc:  # pydantic reports ValueError, but would let a TypeError through
        raise ValueError(str(exc)) from exc


def _message_array(message: Message) -> list[dict[str, Any]]:
    return message.to_array()


MessageField = Annotated[
    Message,
    PlainValidator(_parse_message),
    PlainSerializer(_message_array, return_type=list[dict[str, Any]]),
]
"""A CQ-code string or a segment array in; a `Message` in Python; a segment array out."""


# --- base -----------------------------------------------------------------------------------

_SUB_KEYS: Final[Mapping[str, str]] = {
    "message": "message_type",
    "message_sent": "message_type",
    "notice": "notice_type",
    "request": "request_type",
    "meta_event": "meta_event_type",
}
_DEDUPE_FIELDS: Final[Mapping[str, str]] = {"message": "message_id", "message_sent": "message_id", "request": "flag"}

DedupeKey = tuple[int, str, int | str]


class Event(BaseModel):
    """Fields every event has; unknown ones are kept (`model_extra`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    time: Annotated[Timestamp, _best_effort(factory=_now)] = Field(default_factory=_now)
    self_id: Id
    post_type: str

    @property
    def kind(self) -> str:
        """The routing key: `post_type.detail` (`message.private`, `notice.notify`...)."""
        key = _SUB_KEYS.get(self.post_type)
        detail = getattr(self, key, None) if key is not None else None
        if isinstance(detail, str) and detail:
            return f"{self.post_type}.{detail}"
        return self.post_type

    @property
    def dedupe_key(self) -> DedupeKey | None:
        """`(self_id, post_type, message_id | flag)` for events that carry one, else None."""
        field = _DEDUPE_FIELDS.get(self.post_type)
        value = getattr(self, field, None) if field is not None else None
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
            return None
        return (self.self_id, self.post_type, value)


class UnknownEvent(Event):
    """An event of a type this module does not model: every field is kept."""


# --- messages -------------------------------------------------------------------------------


class Sender(BaseModel):
    """Who sent a message, as the implementation saw them: every field is best effort."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: Annotated[Id | None, _best_effort(None)] = None
    nickname: Annotated[str | None, _best_effort(None)] = None
    card: Annotated[str | None, _best_effort(None)] = None  # group nickname
    sex: Annotated[str | None, _best_effort(None)] = None  # male / female / unknown
    age: Annotated[int | None, _best_effort(None)] = None
    area: Annotated[str | None, _best_effort(None)] = None
    level: Annotated[str | None, BeforeValidator(_text), _best_effort(None)] = None
    role: Annotated[str | None, _best_effort(None)] = None  # owner / admin / member
    title: Annotated[str | None, _best_effort(None)] = None


class Anonymous(BaseModel):
    """An anonymous group member (`flag` is what `set_group_anonymous_ban` takes)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: Annotated[Id | None, _best_effort(None)] = None
    name: Annotated[str | None, _best_effort(None)] = None
    flag: Annotated[str | None, _best_effort(None)] = None


def _sender(value: Any) -> Any:
    return {} if value is None else value


class BaseMessageEvent(Event):
    """The fields of a message, whoever sent it. Handlers want `MessageEvent` (incoming) or
    `MessageSentEvent` (ours), never this base, which would mix the two."""

    message_type: str
    sub_type: str = ""
    message_id: MessageId
    user_id: Id
    message: MessageField
    raw_message: Annotated[str, _best_effort("")] = ""
    font: Annotated[int, _best_effort(0)] = 0
    sender: Annotated[Sender, BeforeValidator(_sender), _best_effort(factory=Sender)] = Field(default_factory=Sender)


class MessageEvent(BaseMessageEvent):
    """A message someone sent to the bot (`post_type: message`)."""

    post_type: Literal["message"]


class PrivateMessageEvent(MessageEvent):
    message_type: Literal["private"]  # sub_type: friend / group (temporary chat) / other


class GroupMessageEvent(MessageEvent):
    message_type: Literal["group"]  # sub_type: normal / anonymous / notice
    group_id: Id
    anonymous: Annotated[Anonymous | None, _best_effort(None)] = None


class MessageSentEvent(BaseMessageEvent):
    """A message the bot itself sent, reported back (`post_type: message_sent`): never a
    customer's input, so deliberately not a `MessageEvent`."""

    post_type: Literal["message_sent"]


class PrivateMessageSentEvent(MessageSentEvent):
    message_type: Literal["private"]


class GroupMessageSentEvent(MessageSentEvent):
    message_type: Literal["group"]
    group_id: Id
    anonymous: Annotated[Anonymous | None, _best_effort(None)] = None


# --- notices --------------------------------------------------------------------------------


class NoticeEvent(Event):
    """A notice; as such (not a subclass) it is one whose `notice_type` is not modelled."""

    post_type: Literal["notice"]
    notice_type: str


class GroupFile(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    size: Annotated[int, _best_effort(0)] = 0
    busid: Annotated[int, _best_effort(0)] = 0


class GroupUploadNoticeEvent(NoticeEvent):
    notice_type: Literal["group_upload"]
    group_id: Id
    user_id: Id
    file: GroupFile


class GroupAdminNoticeEvent(NoticeEvent):
    notice_type: Literal["group_admin"]
    sub_type: str = ""  # set / unset
    group_id: Id
    user_id: Id


class GroupDecreaseNoticeEvent(NoticeEvent):
    notice_type: Literal["group_decrease"]
    sub_type: str = ""  # leave / kick / kick_me
    group_id: Id
    user_id: Id
    operator_id: Id | None = None  # equals user_id when they left


class GroupIncreaseNoticeEvent(NoticeEvent):
    notice_type: Literal["group_increase"]
    sub_type: str = ""  # approve / invite
    group_id: Id
    user_id: Id
    operator_id: Id | None = None


class GroupBanNoticeEvent(NoticeEvent):
    notice_type: Literal["group_ban"]
    sub_type: str = ""  # ban / lift_ban
    group_id: Id
    user_id: Id  # 0 for a whole-group ban
    operator_id: Id | None = None
    duration: int = 0  # seconds


class FriendAddNoticeEvent(NoticeEvent):
    notice_type: Literal["friend_add"]
    user_id: Id


class GroupRecallNoticeEvent(NoticeEvent):
    notice_type: Literal["group_recall"]
    group_id: Id
    user_id: Id
    operator_id: Id | None = None
    message_id: MessageId


class FriendRecallNoticeEvent(NoticeEvent):
    notice_type: Literal["friend_recall"]
    user_id: Id
    message_id: MessageId


class NotifyNoticeEvent(NoticeEvent):
    """`notify` notices; as such (not a subclass) one whose `sub_type` is not modelled
    (NapCat's `input_status`, `profile_like`...). Kind `notice.notify` for all of them."""

    notice_type: Literal["notify"]
    sub_type: str = ""
    group_id: Id | None = None
    user_id: Id | None = None


class PokeNotifyEvent(NotifyNoticeEvent):
    sub_type: Literal["poke"]
    group_id: Id | None = None  # None for a poke in a private chat (go-cqhttp, NapCat)
    user_id: Id  # who poked
    target_id: Id  # who was poked


class LuckyKingNotifyEvent(NotifyNoticeEvent):
    sub_type: Literal["lucky_king"]
    group_id: Id
    user_id: Id  # who sent the red packet
    target_id: Id  # the lucky king


class HonorNotifyEvent(NotifyNoticeEvent):
    sub_type: Literal["honor"]
    group_id: Id
    user_id: Id
    honor_type: str  # talkative / performer / emotion


# --- requests -------------------------------------------------------------------------------


class RequestEvent(Event):
    """A request; `flag` is what the answering action (`set_*_add_request`) takes."""

    post_type: Literal["request"]
    request_type: str
    user_id: Id
    comment: Annotated[str, _best_effort("")] = ""
    flag: Annotated[str, BeforeValidator(_text), Field(min_length=1)]


class FriendRequestEvent(RequestEvent):
    request_type: Literal["friend"]


class GroupRequestEvent(RequestEvent):
    request_type: Literal["group"]
    sub_type: str = ""  # add (someone asks to join) / invite (the bot is invited)
    group_id: Id


# --- meta events ----------------------------------------------------------------------------


class MetaEvent(Event):
    post_type: Literal["meta_event"]
    meta_event_type: str


class LifecycleMetaEvent(MetaEvent):
    meta_event_type: Literal["lifecycle"]
    sub_type: str = ""  # enable / disable / connect (connect: WebSocket links only)


class HeartbeatMetaEvent(MetaEvent):
    meta_event_type: Literal["heartbeat"]
    status: Annotated[dict[str, Any], _best_effort(factory=dict)] = Field(default_factory=dict)
    interval: Annotated[int, _best_effort(0)] = 0  # milliseconds to the next one; 0: not told


# --- parsing --------------------------------------------------------------------------------

_UNKNOWN: Final = "unknown"


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)


def _tag(value: Any) -> str:
    """The union member for a frame (a mapping) or an event (when re-validating a model)."""
    post_type = _get(value, "post_type")
    sub_key = _SUB_KEYS.get(post_type) if isinstance(post_type, str) else None
    detail = _get(value, sub_key) if sub_key is not None else None
    if not isinstance(detail, str):
        return _UNKNOWN
    tag = f"{post_type}.{detail}"
    if tag == "notice.notify":
        sub_type = _get(value, "sub_type")
        return f"{tag}.{sub_type}" if f"{tag}.{sub_type}" in _TAGS else tag
    if tag in _TAGS:
        return tag
    return "notice" if post_type == "notice" else _UNKNOWN


AnyEvent = Annotated[
    Union[  # noqa: UP007 (the spelling pydantic documents for tagged unions)
        Annotated[PrivateMessageEvent, Tag("message.private")],
        Annotated[GroupMessageEvent, Tag("message.group")],
        Annotated[PrivateMessageSentEvent, Tag("message_sent.private")],
        Annotated[GroupMessageSentEvent, Tag("message_sent.group")],
        Annotated[GroupUploadNoticeEvent, Tag("notice.group_upload")],
        Annotated[GroupAdminNoticeEvent, Tag("notice.group_admin")],
        Annotated[GroupDecreaseNoticeEvent, Tag("notice.group_decrease")],
        Annotated[GroupIncreaseNoticeEvent, Tag("notice.group_increase")],
        Annotated[GroupBanNoticeEvent, Tag("notice.group_ban")],
        Annotated[FriendAddNoticeEvent, Tag("notice.friend_add")],
        Annotated[GroupRecallNoticeEvent, Tag("notice.group_recall")],
        Annotated[FriendRecallNoticeEvent, Tag("notice.friend_recall")],
        Annotated[PokeNotifyEvent, Tag("notice.notify.poke")],
        Annotated[LuckyKingNotifyEvent, Tag("notice.notify.lucky_king")],
        Annotated[HonorNotifyEvent, Tag("notice.notify.honor")],
        Annotated[NotifyNoticeEvent, Tag("notice.notify")],
        Annotated[NoticeEvent, Tag("notice")],
        Annotated[FriendRequestEvent, Tag("request.friend")],
        Annotated[GroupRequestEvent, Tag("request.group")],
        Annotated[LifecycleMetaEvent, Tag("meta_event.lifecycle")],
        Annotated[HeartbeatMetaEvent, Tag("meta_event.heartbeat")],
        Annotated[UnknownEvent, Tag(_UNKNOWN)],
    ],
    Discriminator(_tag),
]

_TAGS: Final[frozenset[str]] = frozenset(
    meta.tag for member in get_args(get_args(AnyEvent)[0]) for meta in get_args(member)[1:] if isinstance(meta, Tag)
)

EVENT_KINDS: Final[tuple[str, ...]] = (
    "message.private",
    "message.group",
    "message_sent.private",
    "message_sent.group",
    "notice.group_upload",
    "notice.group_admin",
    "notice.group_decrease",
    "notice.group_increase",
    "notice.group_ban",
    "notice.friend_add",
    "notice.group_recall",
    "notice.friend_recall",
    "notice.notify",
    "request.friend",
    "request.group",
    "meta_event.lifecycle",
    "meta_event.heartbeat",
)
"""The kinds of the modelled events; any other event's kind is built the same way."""

_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(AnyEvent, config=ConfigDict(title="OneBot event"))


def parse_event(data: Mapping[str, Any]) -> Event:
    """The event a frame carries. Unknown types give `UnknownEvent`/`NoticeEvent`; a known
    type with missing or invalid required fields raises `pydantic.ValidationError`."""
    return _ADAPTER.validate_python(data)


__all__ = [
    "EVENT_KINDS",
    "Anonymous",
    "AnyEvent",
    "BaseMessageEvent",
    "DedupeKey",
    "Event",
    "FriendAddNoticeEvent",
    "FriendRecallNoticeEvent",
    "FriendRequestEvent",
    "GroupAdminNoticeEvent",
    "GroupBanNoticeEvent",
    "GroupDecreaseNoticeEvent",
    "GroupFile",
    "GroupIncreaseNoticeEvent",
    "GroupMessageEvent",
    "GroupMessageSentEvent",
    "GroupRecallNoticeEvent",
    "GroupRequestEvent",
    "GroupUploadNoticeEvent",
    "HeartbeatMetaEvent",
    "HonorNotifyEvent",
    "Id",
    "LifecycleMetaEvent",
    "LuckyKingNotifyEvent",
    "MessageEvent",
    "MessageField",
    "MessageId",
    "MessageSentEvent",
    "MetaEvent",
    "NoticeEvent",
    "NotifyNoticeEvent",
    "PokeNotifyEvent",
    "PrivateMessageEvent",
    "PrivateMessageSentEvent",
    "RequestEvent",
    "Sender",
    "Timestamp",
    "UnknownEvent",
    "parse_event",
]
