"""Events: every OneBot v11 event parses to its class and routing kind; ids normalise; unknown
types are kept, not rejected; our own `message_sent` messages never look like customer input."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.onebot.events import (
    EVENT_KINDS,
    Event,
    FriendAddNoticeEvent,
    FriendRecallNoticeEvent,
    FriendRequestEvent,
    GroupAdminNoticeEvent,
    GroupBanNoticeEvent,
    GroupDecreaseNoticeEvent,
    GroupIncreaseNoticeEvent,
    GroupMessageEvent,
    GroupMessageSentEvent,
    GroupRecallNoticeEvent,
    GroupRequestEvent,
    GroupUploadNoticeEvent,
    HeartbeatMetaEvent,
    HonorNotifyEvent,
    LifecycleMetaEvent,
    LuckyKingNotifyEvent,
    MessageEvent,
    NoticeEvent,
    NotifyNoticeEvent,
    PokeNotifyEvent,
    PrivateMessageEvent,
    PrivateMessageSentEvent,
    Sender,
    UnknownEvent,
    parse_event,
)
from app.onebot.message import Message, MessageSegment

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "onebot" / "fixtures" / "events.json"

FIXTURE_EXPECTATIONS: dict[str, tuple[type[Event], str]] = {
    "private_text_string_format": (PrivateMessageEvent, "message.private"),
    "private_cq_at_string_format": (PrivateMessageEvent, "message.private"),
    "group_array_at_text_napcat": (GroupMessageEvent, "message.group"),
    "private_array_reply_image": (PrivateMessageEvent, "message.private"),
    "notice_group_increase": (GroupIncreaseNoticeEvent, "notice.group_increase"),
    "request_friend": (FriendRequestEvent, "request.friend"),
    "meta_lifecycle_connect": (LifecycleMetaEvent, "meta_event.lifecycle"),
    "meta_heartbeat": (HeartbeatMetaEvent, "meta_event.heartbeat"),
}


def fixtures() -> dict[str, dict[str, Any]]:
    if not FIXTURES.exists():
        return {}
    events: dict[str, dict[str, Any]] = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return events


needs_fixtures = pytest.mark.skipif(
    not FIXTURES.exists(), reason="shared/onebot/fixtures is beside the repository in CI"
)

BASE = {"time": 1732435200, "self_id": 123456789}


def private_message(**fields: Any) -> dict[str, Any]:
    return {
        **BASE,
        "post_type": "message",
        "message_type": "private",
        "sub_type": "friend",
        "message_id": 12,
        "user_id": 12345678,
        "message": "你好",
        "raw_message": "你好",
        "font": 0,
        "sender": {"user_id": 12345678, "nickname": "小不点"},
        **fields,
    }


# One payload per event type of the spec (botuniverse/onebot-11, event/*.md).
SPEC_EVENTS: list[tuple[dict[str, Any], type[Event], str]] = [
    (private_message(), PrivateMessageEvent, "message.private"),
    (
        private_message(message_type="group", sub_type="normal", group_id=987654321, anonymous=None),
        GroupMessageEvent,
        "message.group",
    ),
    (private_message(post_type="message_sent"), PrivateMessageSentEvent, "message_sent.private"),
    (
        private_message(post_type="message_sent", message_type="group", group_id=987654321),
        GroupMessageSentEvent,
        "message_sent.group",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "group_upload",
            "group_id": 987654321,
            "user_id": 345678901,
            "file": {"id": "/abc-123", "name": "日志.txt", "size": 2048, "busid": 102},
        },
        GroupUploadNoticeEvent,
        "notice.group_upload",
    ),
    (
        {**BASE, "post_type": "notice", "notice_type": "group_admin", "sub_type": "set", "group_id": 1, "user_id": 2},
        GroupAdminNoticeEvent,
        "notice.group_admin",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "group_decrease",
            "sub_type": "kick",
            "group_id": 1,
            "operator_id": 3,
            "user_id": 2,
        },
        GroupDecreaseNoticeEvent,
        "notice.group_decrease",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "group_increase",
            "sub_type": "approve",
            "group_id": 1,
            "operator_id": 3,
            "user_id": 2,
        },
        GroupIncreaseNoticeEvent,
        "notice.group_increase",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "group_ban",
            "sub_type": "ban",
            "group_id": 1,
            "operator_id": 3,
            "user_id": 2,
            "duration": 600,
        },
        GroupBanNoticeEvent,
        "notice.group_ban",
    ),
    (
        {**BASE, "post_type": "notice", "notice_type": "friend_add", "user_id": 2},
        FriendAddNoticeEvent,
        "notice.friend_add",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "group_recall",
            "group_id": 1,
            "user_id": 2,
            "operator_id": 2,
            "message_id": -726405240,
        },
        GroupRecallNoticeEvent,
        "notice.group_recall",
    ),
    (
        {**BASE, "post_type": "notice", "notice_type": "friend_recall", "user_id": 2, "message_id": 3425462029},
        FriendRecallNoticeEvent,
        "notice.friend_recall",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "notify",
            "sub_type": "poke",
            "group_id": 1,
            "user_id": 2,
            "target_id": 123456789,
        },
        PokeNotifyEvent,
        "notice.notify",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "notify",
            "sub_type": "lucky_king",
            "group_id": 1,
            "user_id": 2,
            "target_id": 3,
        },
        LuckyKingNotifyEvent,
        "notice.notify",
    ),
    (
        {
            **BASE,
            "post_type": "notice",
            "notice_type": "notify",
            "sub_type": "honor",
            "group_id": 1,
            "honor_type": "talkative",
            "user_id": 2,
        },
        HonorNotifyEvent,
        "notice.notify",
    ),
    (
        {**BASE, "post_type": "request", "request_type": "friend", "user_id": 2, "comment": "想报修", "flag": "f1"},
        FriendRequestEvent,
        "request.friend",
    ),
    (
        {
            **BASE,
            "post_type": "request",
            "request_type": "group",
            "sub_type": "invite",
            "group_id": 1,
            "user_id": 2,
            "comment": "",
            "flag": "f2",
        },
        GroupRequestEvent,
        "request.group",
    ),
    (
        {**BASE, "post_type": "meta_event", "meta_event_type": "lifecycle", "sub_type": "enable"},
        LifecycleMetaEvent,
        "meta_event.lifecycle",
    ),
    (
        {
            **BASE,
            "post_type": "meta_event",
            "meta_event_type": "heartbeat",
            "status": {"online": True, "good": True},
            "interval": 5000,
        },
        HeartbeatMetaEvent,
        "meta_event.heartbeat",
    ),
]


# --- classes and kinds ----------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("name", sorted(fixtures()))
def test_every_fixture_parses_to_its_class_and_kind(name):
    assert name in FIXTURE_EXPECTATIONS, f"new fixture {name}: add its expected class and kind"
    cls, kind = FIXTURE_EXPECTATIONS[name]
    event = parse_event(fixtures()[name])
    assert type(event) is cls
    assert event.kind == kind


@pytest.mark.parametrize(
    ("payload", "cls", "kind"), SPEC_EVENTS, ids=[f"{kind}:{cls.__name__}" for _, cls, kind in SPEC_EVENTS]
)
def test_every_spec_event_type_parses_to_its_class_and_kind(payload, cls, kind):
    event = parse_event(payload)
    assert type(event) is cls
    assert event.kind == kind


def test_event_kinds_lists_the_kinds_of_the_modelled_events():
    assert set(EVENT_KINDS) == {kind for _, _, kind in SPEC_EVENTS}


# --- ids ------------------------------------------------------------------------------------


def test_ids_given_as_strings_become_ints():
    event = parse_event(
        private_message(
            message_type="group", self_id="123456789", user_id="345678901", group_id=" 987654321 ", message_id="2002"
        )
    )
    assert isinstance(event, GroupMessageEvent)
    assert (event.self_id, event.user_id, event.group_id, event.message_id) == (123456789, 345678901, 987654321, 2002)


@pytest.mark.parametrize("message_id", [3425462029, -726405240, "3425462029", "-726405240"])
def test_message_ids_beyond_int32_or_negative_survive(message_id):
    event = parse_event(private_message(message_id=message_id))
    assert isinstance(event, PrivateMessageEvent)
    assert event.message_id == int(message_id)


@pytest.mark.parametrize("user_id", [True, "12a", "", 2**63])
def test_a_malformed_id_is_a_validation_error(user_id):
    with pytest.raises(ValidationError):
        parse_event(private_message(user_id=user_id))


# --- messages -------------------------------------------------------------------------------


def test_cq_string_and_segment_array_give_equal_messages():
    cq = parse_event(private_message(message="[CQ:reply,id=1999][CQ:at,qq=10001] 打印机&#91;三楼&#93;坏了 &amp; 卡纸"))
    array = parse_event(
        private_message(
            message=[
                {"type": "reply", "data": {"id": "1999"}},
                {"type": "at", "data": {"qq": "10001"}},
                {"type": "text", "data": {"text": " 打印机[三楼]坏了 & 卡纸"}},
            ]
        )
    )
    assert isinstance(cq, PrivateMessageEvent)
    assert isinstance(array, PrivateMessageEvent)
    assert isinstance(cq.message, Message)
    assert cq.message == array.message
    assert cq.message.plain_text() == " 打印机[三楼]坏了 & 卡纸"


def test_a_single_segment_object_is_a_message_of_one_segment():
    event = parse_event(private_message(message={"type": "text", "data": {"text": "hi"}}))
    assert isinstance(event, PrivateMessageEvent)
    assert event.message == Message([MessageSegment.text("hi")])


def test_a_message_of_the_wrong_type_is_a_validation_error():
    with pytest.raises(ValidationError):
        parse_event(private_message(message=42))


def test_a_message_event_without_message_id_is_a_validation_error():
    payload = private_message()
    del payload["message_id"]
    with pytest.raises(ValidationError):
        parse_event(payload)


def test_a_group_message_without_group_id_is_a_validation_error():
    with pytest.raises(ValidationError):
        parse_event(private_message(message_type="group"))


def test_missing_sender_parses_as_an_empty_sender():
    payload = private_message()
    del payload["sender"]
    event = parse_event(payload)
    assert isinstance(event, PrivateMessageEvent)
    assert event.sender == Sender()


def test_missing_sender_fields_parse_as_none():
    event = parse_event(private_message(sender={"nickname": "群友A"}))
    assert isinstance(event, PrivateMessageEvent)
    assert event.sender.nickname == "群友A"
    assert event.sender.user_id is None
    assert event.sender.card is None
    assert event.sender.role is None


def test_malformed_sender_fields_become_none_instead_of_failing():
    event = parse_event(private_message(sender={"user_id": "not a number", "age": "old", "level": 5, "nickname": "A"}))
    assert isinstance(event, PrivateMessageEvent)
    assert event.sender.user_id is None
    assert event.sender.age is None
    assert event.sender.level == "5"
    assert event.sender.nickname == "A"


def test_a_null_sender_parses_as_an_empty_sender():
    event = parse_event(private_message(sender=None))
    assert isinstance(event, PrivateMessageEvent)
    assert event.sender == Sender()


def test_missing_raw_message_and_font_take_their_defaults():
    payload = private_message()
    del payload["raw_message"], payload["font"]
    event = parse_event(payload)
    assert isinstance(event, PrivateMessageEvent)
    assert (event.raw_message, event.font) == ("", 0)


def test_extra_fields_are_kept():
    event = parse_event(private_message(message_seq=2002, real_id=2002, group_name="报修群", message_format="array"))
    assert event.model_extra == {
        "message_seq": 2002,
        "real_id": 2002,
        "group_name": "报修群",
        "message_format": "array",
    }


def test_extra_sender_fields_are_kept():
    event = parse_event(private_message(sender={"nickname": "A", "uid": "u_abc"}))
    assert isinstance(event, PrivateMessageEvent)
    assert event.sender.model_extra == {"uid": "u_abc"}


# --- message_sent ---------------------------------------------------------------------------


def test_message_sent_is_not_an_incoming_message():
    event = parse_event(private_message(post_type="message_sent", target_id=12345678))
    assert isinstance(event, PrivateMessageSentEvent)
    assert not isinstance(event, MessageEvent)
    assert not isinstance(event, PrivateMessageEvent)
    assert event.kind == "message_sent.private"
    assert not event.kind.startswith("message.")  # a `message` or `message.private` handler never sees it


def test_message_sent_keeps_the_message_fields():
    event = parse_event(private_message(post_type="message_sent", message="[CQ:at,qq=1] 已受理"))
    assert isinstance(event, PrivateMessageSentEvent)
    assert event.message.plain_text() == " 已受理"
    assert event.message_id == 12


# --- unknown types --------------------------------------------------------------------------


def test_unknown_post_type_becomes_an_unknown_event_with_every_field():
    event = parse_event({**BASE, "post_type": "message_reaction", "emoji": "👍"})
    assert type(event) is UnknownEvent
    assert event.kind == "message_reaction"
    assert event.model_extra == {"emoji": "👍"}


def test_unknown_notice_type_becomes_a_generic_notice():
    event = parse_event({**BASE, "post_type": "notice", "notice_type": "group_card", "card_new": "张三"})
    assert type(event) is NoticeEvent
    assert event.kind == "notice.group_card"
    assert event.model_extra == {"card_new": "张三"}


def test_unknown_notify_sub_type_is_a_plain_notify_notice():
    event = parse_event(
        {**BASE, "post_type": "notice", "notice_type": "notify", "sub_type": "input_status", "user_id": "2"}
    )
    assert type(event) is NotifyNoticeEvent
    assert event.kind == "notice.notify"
    assert event.user_id == 2


def test_unknown_message_type_becomes_an_unknown_event():
    event = parse_event({**BASE, "post_type": "message", "message_type": "guild", "message_id": "abc"})
    assert type(event) is UnknownEvent
    assert event.kind == "message.guild"


@pytest.mark.parametrize(("post_type", "sub_key"), [("request", "request_type"), ("meta_event", "meta_event_type")])
def test_unknown_sub_types_of_requests_and_meta_events_become_unknown_events(post_type, sub_key):
    event = parse_event({**BASE, "post_type": post_type, sub_key: "novel"})
    assert type(event) is UnknownEvent
    assert event.kind == f"{post_type}.novel"


def test_a_poke_in_a_private_chat_has_no_group():
    event = parse_event(
        {**BASE, "post_type": "notice", "notice_type": "notify", "sub_type": "poke", "user_id": 2, "target_id": 3}
    )
    assert isinstance(event, PokeNotifyEvent)
    assert event.group_id is None


@pytest.mark.parametrize("frame", [[], "text", None])
def test_a_frame_that_is_not_an_object_is_a_validation_error(frame):
    with pytest.raises(ValidationError):
        parse_event(frame)


def test_a_frame_without_self_id_is_a_validation_error():
    with pytest.raises(ValidationError):
        parse_event({"time": 1, "post_type": "meta_event", "meta_event_type": "heartbeat"})


# --- dedupe keys ----------------------------------------------------------------------------


def test_message_dedupe_key_is_self_post_type_and_message_id():
    assert parse_event(private_message(message_id="3425462029")).dedupe_key == (123456789, "message", 3425462029)


def test_message_sent_dedupe_key_differs_from_the_incoming_one():
    assert parse_event(private_message(post_type="message_sent")).dedupe_key == (123456789, "message_sent", 12)


def test_request_dedupe_key_is_self_post_type_and_flag():
    event = parse_event(
        {**BASE, "post_type": "request", "request_type": "friend", "user_id": 2, "flag": "request_flag_1"}
    )
    assert event.dedupe_key == (123456789, "request", "request_flag_1")


@pytest.mark.parametrize(
    ("payload", "cls", "kind"),
    [entry for entry in SPEC_EVENTS if entry[2].startswith(("notice.", "meta_event."))],
    ids=[kind for _, _, kind in SPEC_EVENTS if kind.startswith(("notice.", "meta_event."))],
)
def test_notices_and_meta_events_are_not_deduplicated(payload, cls, kind):
    assert parse_event(payload).dedupe_key is None


def test_a_request_without_flag_is_a_validation_error():
    with pytest.raises(ValidationError):
        parse_event({**BASE, "post_type": "request", "request_type": "friend", "user_id": 2})


# --- time -----------------------------------------------------------------------------------


def test_millisecond_time_is_normalised_to_seconds():
    assert parse_event(private_message(time=1732435200123)).time == 1732435200


@pytest.mark.parametrize("value", [1732435200, "1732435200", 1732435200.75])
def test_second_time_is_kept(value):
    assert parse_event(private_message(time=value)).time == 1732435200


@pytest.mark.parametrize("value", ["missing", None, "yesterday", -5])
def test_missing_or_malformed_time_becomes_the_parse_time(value):
    payload = private_message(time=value)
    if value == "missing":
        del payload["time"]
    before = int(time.time())
    event = parse_event(payload)
    assert before <= event.time <= int(time.time())


# --- dumping --------------------------------------------------------------------------------


def test_model_dump_gives_the_message_as_a_segment_array():
    dumped = parse_event(private_message(message="[CQ:at,qq=all] 停电")).model_dump()
    assert dumped["message"] == [{"type": "at", "data": {"qq": "all"}}, {"type": "text", "data": {"text": " 停电"}}]


@pytest.mark.parametrize(
    ("payload", "cls", "kind"), SPEC_EVENTS, ids=[f"{kind}:{cls.__name__}" for _, cls, kind in SPEC_EVENTS]
)
def test_model_dump_is_json_and_parses_back_to_an_equal_event(payload, cls, kind):
    event = parse_event({**payload, "message_seq": 7})
    again = parse_event(json.loads(json.dumps(event.model_dump())))
    assert type(again) is cls
    assert again == event


def test_heartbeat_interval_and_status_are_read():
    event = parse_event(
        {**BASE, "post_type": "meta_event", "meta_event_type": "heartbeat", "status": {"good": True}, "interval": 5000}
    )
    assert isinstance(event, HeartbeatMetaEvent)
    assert (event.interval, event.status) == (5000, {"good": True})
