"""Parsing QQ messages into helpdesk commands: Chinese and English words, full-width input,
group @-mentions, arguments, usage errors; weird input never raises anything but CommandError."""

from __future__ import annotations

import pytest

from app.bot.commands import TITLE_MAX_LENGTH, Command, CommandError, parse_command
from app.bot.texts import TEXTS
from app.onebot.message import Message, MessageSegment

BOT = 123456789
AGENT = 345678901
NUMBER = "20261124-0001"


def parse(raw: object, *, self_id: int | None = BOT) -> Command | None:
    return parse_command(Message.parse(raw), self_id=self_id)


def parsed(raw: object, *, self_id: int | None = BOT) -> Command:
    command = parse(raw, self_id=self_id)
    assert command is not None
    return command


def error(raw: object) -> CommandError:
    with pytest.raises(CommandError) as caught:
        parse(raw)
    return caught.value


def outcome(raw: object) -> Command | CommandError | None:
    try:
        return parse(raw)
    except CommandError as exc:
        return exc


def image(name: str = "ab12.png") -> MessageSegment:
    return MessageSegment("image", {"file": name, "url": f"https://example.invalid/{name}"})


# --- command words --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "english"),
    [
        ("/帮助", "help", False),
        ("/help", "help", True),
        ("/报修 打印机卡纸", "new", False),
        ("/new Printer jams", "new", True),
        ("/我的工单", "list", False),
        ("/list", "list", True),
        (f"/查看 {NUMBER}", "show", False),
        (f"/show {NUMBER}", "show", True),
        (f"/回复 {NUMBER} 好的", "reply", False),
        (f"/reply {NUMBER} ok", "reply", True),
        (f"/关闭 {NUMBER}", "close", False),
        (f"/close {NUMBER}", "close", True),
        (f"/评价 {NUMBER} 5", "rate", False),
        (f"/rate {NUMBER} 5", "rate", True),
        ("/绑定 ABCD2345", "bind", False),
        ("/bind ABCD2345", "bind", True),
        (f"/认领 {NUMBER}", "claim", False),
        (f"/claim {NUMBER}", "claim", True),
        (f"/备注 {NUMBER} 已联系", "note", False),
        (f"/note {NUMBER} called them", "note", True),
    ],
)
def test_each_command_word_is_recognised_in_chinese_and_english(raw, name, english):
    command = parsed(raw)
    assert (command.name, command.english) == (name, english)


@pytest.mark.parametrize(("word", "english"), [("指派", False), ("assign", True)])
def test_assign_is_recognised_in_chinese_and_english(word, english):
    command = parsed(Message([MessageSegment.text(f"/{word} {NUMBER} "), MessageSegment.at(AGENT)]))
    assert (command.name, command.english, command.alias) == ("assign", english, word)


def test_english_words_are_case_insensitive():
    command = parsed("/NEW Printer jams")
    assert (command.name, command.alias) == ("new", "new")


def test_alias_is_the_chinese_word_typed():
    assert parsed("/报修 打印机卡纸").alias == "报修"


def test_full_width_slash_and_space_work():
    command = parsed("／报修　打印机卡纸")
    assert (command.name, command.title) == ("new", "打印机卡纸")


def test_full_width_english_word_works():
    assert parsed("／ｈｅｌｐ").name == "help"


def test_full_width_digits_in_a_ticket_number_are_normalised():
    assert parsed("/查看 ２０２６１１２４－０００１").ticket == NUMBER


def test_chinese_word_needs_no_space_before_its_argument():
    assert parsed(f"/查看{NUMBER}").ticket == NUMBER


def test_chinese_new_without_space_takes_the_title():
    assert parsed("/报修电脑蓝屏").title == "电脑蓝屏"


def test_english_word_needs_a_separator():
    assert error("/newbie").code == "unknown_command"


def test_ime_enumeration_comma_counts_as_slash_before_a_known_word():
    assert parsed("、报修 电脑蓝屏").title == "电脑蓝屏"


def test_ime_enumeration_comma_before_other_text_is_not_a_command():
    assert parse("、然后呢") is None


def test_space_after_the_slash_is_tolerated():
    assert parsed("/ 帮助").name == "help"


def test_help_and_list_ignore_extra_text():
    assert (parsed("/帮助 怎么用").name, parsed("/我的工单 全部").name) == ("help", "list")


# --- /报修 --------------------------------------------------------------------------------------


def test_new_takes_the_first_line_as_title_and_the_rest_as_body():
    command = parsed("/报修 三楼打印机卡纸\n\n型号 HP M404\n  重启后还是不行\n\n")
    assert (command.title, command.body) == ("三楼打印机卡纸", "型号 HP M404\n  重启后还是不行")


def test_new_with_an_empty_first_line_takes_the_first_non_empty_line_as_title():
    command = parsed("/报修\n\n宿舍网络连不上\n网口灯不亮")
    assert (command.title, command.body) == ("宿舍网络连不上", "网口灯不亮")


def test_new_accepts_windows_line_breaks():
    command = parsed("/报修 标题\r\n正文")
    assert (command.title, command.body) == ("标题", "正文")


def test_new_keeps_chinese_punctuation_in_free_text():
    command = parsed("/报修 打印机（三楼）坏了，急！")
    assert command.title == "打印机（三楼）坏了，急！"


def test_new_collects_images_as_attachments():
    first, second = image("a.png"), image("b.jpg")
    command = parsed(Message([MessageSegment.text("/报修 显示器花屏\n见图"), first, second]))
    assert (command.title, command.images) == ("显示器花屏", (first, second))


def test_new_with_images_but_no_title_is_a_usage_error():
    assert error(Message([MessageSegment.text("/报修"), image()])).code == "usage_new"


def test_new_without_title_is_a_usage_error():
    caught = error("/报修   \n  ")
    assert (caught.code, caught.command) == ("usage_new", "new")


def test_new_with_an_over_long_first_line_cuts_the_title_and_keeps_the_line_in_the_body():
    line = "很" * (TITLE_MAX_LENGTH + 50)
    command = parsed(f"/报修 {line}\n详情")
    assert len(command.title) == TITLE_MAX_LENGTH
    assert command.title.endswith("…")
    assert command.body == f"{line}\n\n详情"


def test_group_at_bot_then_new_opens_a_ticket():
    # Shaped like the NapCat fixture `group_array_at_text_napcat`.
    raw = [{"type": "at", "data": {"qq": str(BOT)}}, {"type": "text", "data": {"text": " /报修 电脑蓝屏"}}]
    command = parsed(raw)
    assert (command.name, command.title, command.mentions) == ("new", "电脑蓝屏", ())


def test_group_at_bot_as_cq_string_opens_a_ticket():
    assert parsed(f"[CQ:at,qq={BOT}] /报修 电脑蓝屏").title == "电脑蓝屏"


def test_leading_reply_and_at_are_skipped():
    raw = Message([MessageSegment.reply(1999), MessageSegment.at(AGENT), MessageSegment.text(" /我的工单")])
    command = parsed(raw)
    assert (command.name, command.mentions) == ("list", ())


def test_user_typed_cq_code_stays_literal_text_in_the_body():
    # A user typing "[CQ:at,qq=all]" sends escaped text: it must not become a mention.
    command = parsed("/报修 打印机坏了\n&#91;CQ:at,qq=all&#93; 大家注意")
    assert (command.body, command.mentions) == ("[CQ:at,qq=all] 大家注意", ())


# --- ticket-number commands ---------------------------------------------------------------------


@pytest.mark.parametrize("word", ["查看", "关闭", "认领"])
def test_single_ticket_commands_take_the_number(word):
    assert parsed(f"/{word} {NUMBER}").ticket == NUMBER


def test_leading_hash_is_removed_from_the_ticket_number():
    assert parsed(f"/查看 #{NUMBER}").ticket == NUMBER


def test_full_width_hash_is_removed_from_the_ticket_number():
    assert parsed(f"/关闭 ＃{NUMBER}").ticket == NUMBER


@pytest.mark.parametrize(("word", "code"), [("查看", "usage_show"), ("关闭", "usage_close"), ("认领", "usage_claim")])
def test_single_ticket_command_without_number_is_a_usage_error(word, code):
    caught = error(f"/{word}")
    assert caught.code == code


@pytest.mark.parametrize(("word", "code"), [("查看", "usage_show"), ("close", "usage_close"), ("认领", "usage_claim")])
def test_single_ticket_command_with_two_numbers_is_a_usage_error(word, code):
    assert error(f"/{word} {NUMBER} 20261124-0002").code == code


def test_ticket_number_with_invalid_characters_is_a_usage_error():
    assert error("/查看 2026/11/24").code == "usage_show"


def test_over_long_ticket_number_is_a_usage_error():
    assert error(f"/查看 {'1' * 33}").code == "usage_show"


# --- /回复 /备注 ------------------------------------------------------------------------------------


def test_reply_takes_number_and_multi_line_content():
    command = parsed(f"/回复 {NUMBER} 重启过了\n还是蓝屏")
    assert (command.ticket, command.body) == (NUMBER, "重启过了\n还是蓝屏")


def test_reply_content_may_start_on_the_next_line():
    command = parsed(f"/回复 {NUMBER}\n还是蓝屏")
    assert (command.ticket, command.body) == (NUMBER, "还是蓝屏")


def test_reply_without_space_after_chinese_word():
    command = parsed(f"/回复{NUMBER} 好的")
    assert (command.ticket, command.body) == (NUMBER, "好的")


def test_note_takes_number_and_content():
    command = parsed(f"/note #{NUMBER} called the user")
    assert (command.name, command.ticket, command.body) == ("note", NUMBER, "called the user")


@pytest.mark.parametrize(("raw", "code"), [(f"/回复 {NUMBER}", "usage_reply"), (f"/备注 {NUMBER}  ", "usage_note")])
def test_reply_or_note_without_content_is_a_usage_error(raw, code):
    assert error(raw).code == code


def test_reply_without_anything_is_a_usage_error():
    caught = error("/reply")
    assert (caught.code, caught.command) == ("usage_reply", "reply")


# --- /评价 --------------------------------------------------------------------------------------


def test_rate_takes_number_score_and_comment():
    command = parsed(f"/评价 {NUMBER} 4 修得很快，\n但等了两天")
    assert (command.ticket, command.score, command.body) == (NUMBER, 4, "修得很快，\n但等了两天")


def test_rate_comment_is_optional():
    command = parsed(f"/rate {NUMBER} 5")
    assert (command.score, command.body) == (5, "")


@pytest.mark.parametrize("score", ["5分", "5星", "５"])
def test_rate_accepts_score_with_unit_or_full_width(score):
    assert parsed(f"/评价 {NUMBER} {score}").score == 5


@pytest.mark.parametrize("score", ["0", "6", "10", "五", "好", "-1", "4.5"])
def test_rate_with_an_invalid_score_is_a_usage_error(score):
    assert error(f"/评价 {NUMBER} {score}").code == "usage_rate"


def test_rate_without_score_is_a_usage_error():
    assert error(f"/评价 {NUMBER}").code == "usage_rate"


# --- /绑定 --------------------------------------------------------------------------------------


def test_bind_code_is_upper_cased_without_spaces_or_dashes():
    assert parsed("/绑定 abcd-2345 wxyz").code == "ABCD2345WXYZ"


def test_bind_code_in_full_width_is_normalised():
    assert parsed("/bind ａｂｃｄ－２３４５").code == "ABCD2345"


def test_bind_without_code_is_a_usage_error():
    assert error("/绑定").code == "usage_bind"


def test_bind_code_with_other_characters_is_a_usage_error():
    assert error("/绑定 绑定码").code == "usage_bind"


# --- /指派 --------------------------------------------------------------------------------------


def test_assign_takes_number_and_the_mentioned_agent():
    message = Message([MessageSegment.text(f"/指派 {NUMBER} "), MessageSegment.at(AGENT)])
    command = parsed(message)
    assert (command.ticket, command.mentions) == (NUMBER, (AGENT,))


def test_assign_in_a_group_skips_the_bot_mention():
    message = Message(
        [
            MessageSegment.at(BOT),
            MessageSegment.text(f" /指派 {NUMBER} "),
            MessageSegment.at(BOT),
            MessageSegment.at(AGENT),
        ]
    )
    assert parsed(message).mentions == (AGENT,)


def test_assign_keeps_the_text_after_the_number_as_body():
    message = Message(
        [MessageSegment.text(f"/指派 {NUMBER} "), MessageSegment.at(AGENT), MessageSegment.text(" 麻烦看下")]
    )
    assert parsed(message).body == "麻烦看下"


def test_assign_without_mention_is_a_usage_error():
    assert error(f"/指派 {NUMBER} 张三").code == "usage_assign"


def test_assign_with_two_people_is_a_usage_error():
    message = Message([MessageSegment.text(f"/指派 {NUMBER} "), MessageSegment.at(AGENT), MessageSegment.at(AGENT + 1)])
    assert error(message).code == "usage_assign"


def test_assign_ignores_at_all():
    message = Message([MessageSegment.text(f"/指派 {NUMBER} "), MessageSegment.at("all")])
    assert error(message).code == "usage_assign"


def test_assign_without_number_is_a_usage_error():
    assert error(Message([MessageSegment.text("/指派 "), MessageSegment.at(AGENT)])).code == "usage_assign"


def test_mentions_are_ints_without_duplicates():
    message = Message([MessageSegment.text("/帮助 "), MessageSegment.at(str(AGENT)), MessageSegment.at(AGENT)])
    assert parsed(message).mentions == (AGENT,)


# --- not commands, unknown, weird input -----------------------------------------------------------


@pytest.mark.parametrize("raw", ["你好", "打印机坏了 /报修", "", "   ", "　", "2026/11/24 的工单"])
def test_text_not_starting_with_slash_is_not_a_command(raw):
    assert parse(raw) is None


def test_message_with_only_images_is_not_a_command():
    assert parse(Message([image()])) is None


def test_message_with_only_an_at_is_not_a_command():
    assert parse(Message([MessageSegment.at(BOT)])) is None


def test_empty_message_is_not_a_command():
    assert parse_command(Message()) is None


def test_user_typed_cq_at_text_is_not_a_command():
    assert parse("&#91;CQ:at,qq=all&#93; /报修 x") is None


@pytest.mark.parametrize("raw", ["/天气", "/", "//", "/ ", "/:)", "/usr/bin"])
def test_unknown_command_word_is_an_error_without_command(raw):
    caught = error(raw)
    assert (caught.code, caught.command) == ("unknown_command", None)


@pytest.mark.parametrize(
    "raw",
    [
        "/报修 " + "长" * 100_000,
        "/" + "x" * 100_000,
        "/回复 " + " " * 10_000,
        "/评价 \n\n\n",
        "/\u0301\u200d",
        "/报修\x00\x1b",
        "/绑定 " + "-" * 50,
        "/查看 #",
        "/ＮＥＷ\u3000x",
        "／",
        "/\ud800",
        [{"type": "text", "data": {"text": None}}, {"type": "at", "data": {"qq": None}}],
        [
            {"type": "at", "data": {}},
            {"type": "text", "data": {"text": "/指派 1 "}},
            {"type": "at", "data": {"qq": "x"}},
        ],
        [{"type": "image", "data": {}}, {"type": "text", "data": {"text": "/报修"}}],
        [{"type": "face", "data": {"id": "1"}}, {"type": "text", "data": {"text": "/帮助"}}],
        [{"type": "text", "data": {"text": 42}}],
    ],
)
def test_weird_input_raises_nothing_but_command_error(raw):
    result = outcome(raw)
    assert result is None or isinstance(result, Command) or result.code in TEXTS


@pytest.mark.parametrize(
    "raw",
    ["/报修", "/查看", "/回复 1", "/关闭", "/评价 1", "/绑定", "/认领", "/指派 1", "/备注 1", "/天气"],
)
def test_every_error_code_is_a_text_key(raw):
    assert error(raw).code in TEXTS


def test_without_self_id_every_later_at_is_a_mention():
    message = Message([MessageSegment.text("/帮助 "), MessageSegment.at(BOT)])
    assert parsed(message, self_id=None).mentions == (BOT,)
