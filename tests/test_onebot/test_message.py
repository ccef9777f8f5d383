"""Messages: CQ-code strings and segment arrays parse into one model; escaping round-trips;
user text can never become a CQ code."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from app.onebot.message import Message, MessageSegment, escape, unescape

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "onebot" / "fixtures" / "events.json"
APP_ONEBOT = Path(__file__).resolve().parents[2] / "app" / "onebot"


def fixture_messages() -> list[tuple[str, object]]:
    events = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return [(name, event["message"]) for name, event in events.items() if "message" in event]


@pytest.mark.skipif(not FIXTURES.exists(), reason="shared/onebot/fixtures is beside the repository in CI")
@pytest.mark.parametrize(("name", "raw"), fixture_messages() if FIXTURES.exists() else [])
def test_every_fixture_message_parses(name, raw):
    message = Message.parse(raw)
    assert message, name
    assert all(isinstance(segment, MessageSegment) for segment in message)


def test_cq_string_with_escapes_parses_like_the_array():
    cq = "[CQ:at,qq=all] 打印机&#91;三楼&#93;坏了 &amp; 卡纸"
    message = Message.parse(cq)
    assert message.to_array() == [
        {"type": "at", "data": {"qq": "all"}},
        {"type": "text", "data": {"text": " 打印机[三楼]坏了 & 卡纸"}},
    ]
    assert str(message) == cq  # and back


def test_napcat_array_with_reply_and_image():
    message = Message.parse(
        [
            {"type": "reply", "data": {"id": "1999"}},
            {"type": "image", "data": {"file": "ab12.png", "url": "https://example.invalid/ab12.png"}},
            {"type": "text", "data": {"text": "还是不行"}},
        ]
    )
    assert [s.type for s in message] == ["reply", "image", "text"]
    assert message.plain_text() == "还是不行"
    assert next(message.of_type("reply")).data["id"] == "1999"
    assert str(message).startswith("[CQ:reply,id=1999][CQ:image,file=ab12.png,url=https://example.invalid/ab12.png]")


@pytest.mark.parametrize(
    "text", ["a & b", "[x]", "&#91;literal&#93;", "&amp;", "逗号,在文本里", "]]][[[", "[CQ:at,qq=all]", ""]
)
def test_text_round_trips_through_cq_form(text):
    message = Message([MessageSegment.text(text)])
    again = Message.parse(str(message))
    assert again.plain_text() == text
    assert all(s.type == "text" for s in again)


def test_parameter_values_escape_commas_and_brackets():
    segment = MessageSegment.image("https://example.invalid/a,b[1].png?x=1&y=2")
    cq = str(segment)
    assert cq == "[CQ:image,file=https://example.invalid/a&#44;b&#91;1&#93;.png?x=1&amp;y=2]"
    assert Message.parse(cq)[0].data["file"] == "https://example.invalid/a,b[1].png?x=1&y=2"


def test_user_text_never_becomes_a_cq_code():
    hostile = "[CQ:at,qq=all] 大家注意"
    sent = Message([MessageSegment.text(hostile)])
    assert sent.to_array() == [{"type": "text", "data": {"text": hostile}}]
    assert [s.type for s in Message.parse(str(sent))] == ["text"]  # not an @all


def test_unescape_replaces_amp_last():
    assert unescape("&amp;#91;") == "&#91;"
    assert unescape(escape("&#91;")) == "&#91;"


def test_unknown_segment_types_are_kept():
    message = Message.parse([{"type": "mface", "data": {"emoji_id": "7"}}, {"type": "text", "data": {"text": "hi"}}])
    assert message.to_array()[0] == {"type": "mface", "data": {"emoji_id": "7"}}
    assert Message.parse("[CQ:poke,qq=1]")[0] == MessageSegment("poke", {"qq": "1"})


def test_builders_send_ids_as_strings():
    message = Message([MessageSegment.reply(3425462029), MessageSegment.at(12345678), MessageSegment.face(14)])
    assert message.to_array() == [
        {"type": "reply", "data": {"id": "3425462029"}},
        {"type": "at", "data": {"qq": "12345678"}},
        {"type": "face", "data": {"id": "14"}},
    ]


@pytest.mark.parametrize("raw", [[{"data": {}}], [{"type": "text", "data": "oops"}], [42], 3.14])
def test_malformed_segments_are_errors_not_crashes(raw):
    with pytest.raises((ValueError, TypeError)):
        Message.parse(raw)


def test_empty_and_missing_messages():
    assert Message.parse(None) == Message()
    assert Message.parse("") == Message()
    assert Message.parse([]).plain_text() == ""


def test_the_protocol_library_imports_nothing_of_the_app():
    """ONEBOT.md / STYLE.md: app/onebot could be published on its own."""
    for path in APP_ONEBOT.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else ([alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            )
            for name in names:
                assert not name.startswith("app.") or name.startswith("app.onebot"), (path.name, name)
