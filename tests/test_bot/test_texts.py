"""The bot's texts: every key exists in both languages with its documented placeholders;
status and priority names; splitting long replies for QQ."""

from __future__ import annotations

import re
import string

import pytest

from app.bot.texts import (
    QQ_MESSAGE_LIMIT,
    TEXTS,
    channel_name,
    priority_name,
    split_message,
    status_name,
    text,
)
from app.models.ticket import Channel, Priority, TicketStatus

# The documented placeholders of every key; a new key must be listed here.
PLACEHOLDERS: dict[str, set[str]] = {
    "help": set(),
    "help_group": set(),
    "help_agent": set(),
    **{f"usage_{name}": set() for name in ("new", "show", "reply", "close", "rate", "bind", "claim", "assign", "note")},
    "unknown_command": set(),
    "ticket_created": {"number", "title"},
    "ticket_list": set(),
    "ticket_list_item": {"number", "status", "title"},
    "ticket_list_more": {"count"},
    "ticket_list_empty": set(),
    "ticket_show": {"number", "title", "status", "priority", "updated"},
    "ticket_show_message": {"who", "when", "text"},
    "reply_added": {"number"},
    "note_added": {"number"},
    "ticket_closed": {"number"},
    "rate_invite": {"number"},
    "rating_saved": {"number", "score"},
    "bind_ok": {"username"},
    "bind_moved": {"count"},
    "bind_failed": set(),
    "bind_too_many_attempts": set(),
    "claimed": {"number", "agent"},
    "assigned": {"number", "agent"},
    "ticket_not_found": {"number"},
    "ticket_closed_already": {"number"},
    "not_agent": set(),
    "not_agent_target": set(),
    "rate_not_allowed": set(),
    "rate_limited": set(),
    "internal_error": set(),
    "attachment_failed": {"name"},
    "notify_reply": {"number", "title", "who", "text"},
    "notify_status": {"number", "title", "status"},
    "notify_new_ticket_agents": {"number", "title", "requester", "priority", "channel"},
    "notify_urgent_agents": {"number", "title", "priority"},
    "notify_sla_warning": {"number", "title", "target", "due"},
    "notify_sla_breached": {"number", "title", "target", "due"},
    "sla_target_first_response": set(),
    "sla_target_resolution": set(),
    "notify_undeliverable": set(),
    "assistant_sources": {"titles"},
    "assistant_hint": set(),
    "assistant_resolved": set(),
    "assistant_describe_first": set(),
    "assistant_rate_limited": {"seconds"},
    **{f"assistant_handover_{r}": {"number"} for r in ("requested", "ungrounded", "turns", "unavailable")},
    "assistant_transcript": {"reason"},
    "assistant_transcript_user": set(),
    "assistant_transcript_bot": set(),
    **{f"assistant_reason_{r}": set() for r in ("requested", "ungrounded", "turns", "unavailable")},
    **{f"status_{s}": set() for s in ("new", "open", "pending", "resolved", "closed")},
    **{f"priority_{p}": set() for p in ("low", "normal", "high", "urgent")},
    **{f"channel_{c}": set() for c in ("web", "android", "miniprogram", "qq", "api")},
}
CJK = re.compile(r"[\u4e00-\u9fff]")


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_every_key_is_documented_here():
    assert set(TEXTS) == set(PLACEHOLDERS)


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_both_languages_use_exactly_the_documented_placeholders(key):
    zh, en = TEXTS[key]
    assert (fields(zh), fields(en)) == (PLACEHOLDERS[key], PLACEHOLDERS[key])


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("key", sorted(TEXTS))
def test_every_key_formats_without_leftover_braces(key, lang):
    values = {name: f"<{name}>" for name in PLACEHOLDERS[key]}
    result = text(key, lang, **values)
    assert "{" not in result
    assert "}" not in result
    assert all(f"<{name}>" in result for name in PLACEHOLDERS[key])


@pytest.mark.parametrize("key", sorted(set(TEXTS) - {"help"}))  # the English help lists the Chinese words too
def test_english_texts_contain_no_chinese(key):
    assert not CJK.search(TEXTS[key][1])


def test_chinese_is_the_default_language():
    assert text("ticket_closed", number="20261124-0001") == "工单 20261124-0001 已关闭。"


def test_english_is_chosen_with_lang_en():
    assert text("ticket_closed", "en", number="20261124-0001") == "Ticket 20261124-0001 is closed."


def test_unknown_key_raises_key_error():
    with pytest.raises(KeyError):
        text("no_such_text")


def test_missing_value_raises_key_error():
    with pytest.raises(KeyError):
        text("ticket_created", number="20261124-0001")


def test_braces_in_values_are_kept_as_data():
    result = text("notify_reply", number="1", title="{title}", who="{0}", text="{__class__}")
    assert "「{title}」" in result
    assert "{0}：{__class__}" in result


def test_help_lists_every_customer_command():
    for word in ("/报修", "/我的工单", "/查看", "/回复", "/关闭", "/评价", "/绑定"):
        assert word in text("help")


def test_english_help_lists_every_english_customer_command():
    for word in ("/new", "/list", "/show", "/reply", "/close", "/rate", "/bind"):
        assert word in text("help", "en")


def test_agent_help_lists_every_agent_command():
    for word in ("/认领", "/指派", "/回复", "/备注", "/关闭", "/查看"):
        assert word in text("help_agent")


def test_not_agent_explains_binding_through_the_web():
    assert "POST /users/me/qq-binding" in text("not_agent")
    assert "/绑定" in text("not_agent")


def test_unknown_command_points_to_help():
    assert "/帮助" in text("unknown_command")
    assert "/help" in text("unknown_command", "en")


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "zh", "en"),
    [
        ("new", "新建", "New"),
        ("open", "处理中", "Open"),
        ("pending", "等待回复", "Pending"),
        ("resolved", "已解决", "Resolved"),
        ("closed", "已关闭", "Closed"),
    ],
)
def test_status_name_in_both_languages(status, zh, en):
    assert (status_name(status), status_name(status, "en")) == (zh, en)


@pytest.mark.parametrize(
    ("priority", "zh", "en"),
    [("low", "低", "Low"), ("normal", "普通", "Normal"), ("high", "高", "High"), ("urgent", "紧急", "Urgent")],
)
def test_priority_name_in_both_languages(priority, zh, en):
    assert (priority_name(priority), priority_name(priority, "en")) == (zh, en)


def test_names_accept_the_model_enums():
    assert (status_name(TicketStatus.pending), priority_name(Priority.urgent), channel_name(Channel.qq)) == (
        "等待回复",
        "紧急",
        "QQ",
    )


def test_every_model_status_priority_and_channel_has_a_name():
    keys = [f"status_{s}" for s in TicketStatus] + [f"priority_{p}" for p in Priority]
    keys += [f"channel_{c}" for c in Channel]
    assert all(key in TEXTS for key in keys)


def test_unknown_status_shows_as_is():
    assert status_name("archived") == "archived"


# --- split_message ------------------------------------------------------------------------------


def test_short_text_is_one_part():
    assert split_message("你好\n世界") == ["你好\n世界"]


def test_empty_text_has_no_parts():
    assert split_message("") == []


def test_blank_text_has_no_parts():
    assert split_message("\n \n\n") == []


def test_default_limit_is_1500():
    assert QQ_MESSAGE_LIMIT == 1500
    assert [len(part) for part in split_message("字" * 3000)] == [1500, 1500]


def test_long_text_splits_at_line_breaks():
    lines = [f"第{i}行" + "字" * 20 for i in range(10)]
    parts = split_message("\n".join(lines), limit=60)
    assert parts == ["\n".join(lines[i : i + 2]) for i in range(0, 10, 2)]


def test_over_long_line_is_cut_at_the_limit():
    assert split_message("a" * 25, limit=10) == ["a" * 10, "a" * 10, "a" * 5]


def test_over_long_line_after_short_lines_starts_a_new_part():
    assert split_message("短\n" + "x" * 12 + "\n尾", limit=10) == ["短", "x" * 10, "xx\n尾"]


def test_every_part_is_within_the_limit_and_none_is_empty():
    source = "\n".join(["", "a" * 7, "", "", "b" * 23, "c", "\n\n", "d" * 9] * 5)
    parts = split_message(source, limit=8)
    assert all(0 < len(part) <= 8 and part.strip() for part in parts)


def test_splitting_loses_no_text():
    source = "\n".join("行" * n for n in range(1, 40))
    assert "".join(split_message(source, limit=17)).replace("\n", "") == source.replace("\n", "")


def test_cut_never_separates_a_combining_mark_or_joined_emoji():
    family = "👨\u200d👩\u200d👧"
    parts = split_message("a" * 8 + family + "é" + "e\u0301" * 3, limit=10)
    assert "".join(parts) == "a" * 8 + family + "é" + "e\u0301" * 3
    assert all(not part.startswith(("\u200d", "\u0301")) and not part.endswith("\u200d") for part in parts)


def test_windows_line_breaks_are_split_points():
    assert split_message("aaaa\r\nbbbb", limit=5) == ["aaaa", "bbbb"]


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        split_message("x", limit=0)
