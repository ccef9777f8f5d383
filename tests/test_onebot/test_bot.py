"""The Bot facade and the hub's event path, against the simulator: messages out as segments,
opaque message ids, the outbound token bucket, de-duplication, no deadlock in handlers."""

from __future__ import annotations

import asyncio

import pytest

from app.onebot.errors import NotConnected
from app.onebot.events import Event, PrivateMessageEvent
from app.onebot.message import Message, MessageSegment
from tests.onebot_sim import Implementation, Quirks
from tests.test_onebot.conftest import FRIEND, SELF_ID, collect, forward_pair, running_hub, wait_until

GROUP = 987654321


async def test_user_text_goes_out_as_a_text_segment_never_a_cq_code(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, _):
        await hub.bot(SELF_ID).send_private_msg(FRIEND, "[CQ:at,qq=all] 打印机&#91;坏了&#93;")
    sent = impl.sent[-1]
    assert sent["message"] == [{"type": "text", "data": {"text": "[CQ:at,qq=all] 打印机&#91;坏了&#93;"}}]


async def test_messages_are_sent_as_segment_arrays_with_ids_as_strings(impl: Implementation) -> None:
    message = Message([MessageSegment.reply(3425462029), MessageSegment.at(FRIEND), MessageSegment.text(" 已处理")])
    async with forward_pair(impl) as (hub, _, _):
        await hub.bot(SELF_ID).send_group_msg(GROUP, message)
    assert impl.sent[-1]["message"] == [
        {"type": "reply", "data": {"id": "3425462029"}},
        {"type": "at", "data": {"qq": str(FRIEND)}},
        {"type": "text", "data": {"text": " 已处理"}},
    ]


@pytest.mark.parametrize(
    ("quirks", "check"),
    [(Quirks.napcat(), lambda i: i > 2**31), (Quirks.gocq(), lambda i: i < 0)],
    ids=["napcat-beyond-int32", "gocq-negative"],
)
async def test_message_ids_come_back_exactly(quirks: Quirks, check: object) -> None:
    impl = Implementation(self_id=SELF_ID, friends={FRIEND}, quirks=quirks)
    async with forward_pair(impl) as (hub, _, _):
        message_id = await hub.bot(SELF_ID).send_msg(user_id=FRIEND, message="好的")
        fetched = await hub.bot(SELF_ID).get_msg(message_id)
    assert message_id == impl.sent[-1]["message_id"]
    assert check(message_id)  # type: ignore[operator]
    assert fetched["message_id"] == message_id


async def test_typed_actions_reach_the_implementation(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, _):
        bot = hub.bot(SELF_ID)
        await bot.get_stranger_info(FRIEND)
        await bot.get_group_info(GROUP)
        await bot.get_group_member_info(GROUP, FRIEND)
        request = impl.friend_request(456789012, comment="想报修")
        await bot.set_friend_add_request(request["flag"], approve=True)
        await bot.delete_msg(await bot.send_private_msg(FRIEND, "撤回我"))
    actions = [call["action"] for call in impl.calls]
    for action in ("get_stranger_info", "get_group_info", "get_group_member_info", "set_friend_add_request"):
        assert action in actions
    assert actions[-1] == "delete_msg"


async def test_a_bot_without_a_connection_raises_not_connected() -> None:
    async with running_hub() as hub:
        with pytest.raises(NotConnected):
            await hub.bot(SELF_ID).send_private_msg(FRIEND, "hi")


async def test_sends_wait_for_the_bots_token_bucket(impl: Implementation) -> None:
    async with forward_pair(impl, send_rate=0.5, send_burst=2) as (hub, _, _):
        bot = hub.bot(SELF_ID)
        await bot.send_private_msg(FRIEND, "一")
        await bot.send_private_msg(FRIEND, "二")
        third = asyncio.create_task(bot.send_private_msg(FRIEND, "三"))
        await bot.get_login_info()  # not a send: it does not wait for the bucket
        done, _ = await asyncio.wait({third}, timeout=0.2)  # the bucket refills in 2 s
        assert not done
        third.cancel()
    assert [sent["text"] for sent in impl.sent] == ["一", "二"]


async def test_a_duplicate_message_is_handled_once_and_heartbeats_are_not_deduplicated(
    impl: Implementation,
) -> None:
    async with forward_pair(impl) as (hub, _, _):
        messages = collect(hub, "message.private")
        heartbeats = collect(hub, "meta_event.heartbeat")
        event = impl.private_message(FRIEND, "我要报修", message_id=4242)
        await impl.emit(event)
        await impl.emit(event)  # NapCat double-reports, go-cqhttp retries
        await impl.emit(impl.heartbeat())
        await impl.emit(impl.heartbeat())
        await wait_until(lambda: len(heartbeats) == 2 and hub.metrics.get("events_duplicate") == 1)
        await hub.events.join()
    assert len(messages) == 1


async def test_the_bots_own_messages_are_not_customer_messages() -> None:
    impl = Implementation(self_id=SELF_ID, friends={FRIEND}, quirks=Quirks.napcat(report_self_message=True))
    async with forward_pair(impl) as (hub, _, _):
        incoming = collect(hub, "message")
        sent = collect(hub, "message_sent")
        await hub.bot(SELF_ID).send_private_msg(FRIEND, "工单 #20261124-0001 已受理")
        await wait_until(lambda: len(sent) == 1)
        await hub.events.join()
    assert incoming == []


@pytest.mark.parametrize("message_format", ["array", "string"])
async def test_messages_parse_the_same_in_both_formats(message_format: str) -> None:
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.napcat(message_format=message_format))  # type: ignore[arg-type]
    async with forward_pair(impl) as (hub, _, _):
        events = collect(hub, "message.private")
        segments = [
            {"type": "at", "data": {"qq": "all"}},
            {"type": "text", "data": {"text": " 三楼[打印机]坏了 & 卡纸"}},
        ]
        await impl.emit(impl.private_message(FRIEND, segments))
        await wait_until(lambda: len(events) == 1)
    message = events[0].message  # type: ignore[attr-defined]
    assert message.to_array() == segments


async def test_a_handler_that_awaits_a_call_while_its_queue_is_full_does_not_deadlock(
    impl: Implementation,
) -> None:
    async with forward_pair(impl, event_queue_size=2) as (hub, _, _):
        replied: list[int] = []

        async def reply(event: Event) -> None:
            assert isinstance(event, PrivateMessageEvent)
            # Each answer needs a response read by the same reader that queues the events.
            await hub.bot(event.self_id).send_private_msg(event.user_id, "收到")
            replied.append(event.message_id)

        hub.events.subscribe("message.private", reply)
        for message_id in range(1, 11):
            await impl.emit(impl.private_message(FRIEND, f"消息 {message_id}", message_id=message_id))
        async with asyncio.timeout(5):
            await wait_until(lambda: len(replied) + hub.metrics.get("events_dropped") == 10)
            await hub.events.join()
    assert replied  # handled some, dropped the overflow, and never hung
    assert len(impl.sent) == len(replied)


async def test_an_event_that_does_not_parse_is_skipped_and_the_link_lives(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, connection):
        broken = impl.private_message(FRIEND, "x")
        del broken["message_id"]
        await impl.emit(broken)
        await impl.emit({"post_type": "something_new", "self_id": SELF_ID, "time": 1})
        unknown = collect(hub, "something_new")
        await wait_until(lambda: hub.metrics.get("events_unparsable") == 1)
        await impl.emit({"post_type": "something_new", "self_id": SELF_ID, "time": 2})
        await wait_until(lambda: len(unknown) == 1)
        assert not connection.closed
