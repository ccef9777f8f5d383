"""Frames: what is an event, what is a response, and what counts as success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.onebot.errors import ActionFailed, InvalidFrame
from app.onebot.frames import ActionResponse, decode, is_event

RESPONSES = Path(__file__).resolve().parents[2].parent / "shared" / "onebot" / "fixtures" / "responses.json"


def fixture(name: str) -> dict[str, object]:
    frames: dict[str, dict[str, object]] = json.loads(RESPONSES.read_text(encoding="utf-8"))
    return frames[name]


pytestmark = pytest.mark.skipif(not RESPONSES.exists(), reason="shared/onebot/fixtures is beside the repository")


def test_ok_and_async_are_success() -> None:
    assert ActionResponse.from_frame(fixture("ok_send")).result("send_msg") == {"message_id": 5678}
    assert ActionResponse.from_frame(fixture("async_accepted")).ok


def test_failed_raises_whatever_the_retcode() -> None:
    with pytest.raises(ActionFailed) as failed:
        ActionResponse.from_frame(fixture("failed_unknown_action_ws")).result("no_such_action")
    assert (failed.value.action, failed.value.retcode) == ("no_such_action", 1404)


def test_napcat_extras_are_tolerated() -> None:
    response = ActionResponse.from_frame(fixture("napcat_extras"))
    assert response.ok
    assert response.stream == "normal-action"
    assert response.stream_phase is None  # a normal action, not a stream
    assert response.echo == "a1b5"


@pytest.mark.parametrize("key", ["wording", "message", "msg"])
def test_the_reason_is_taken_from_any_of_the_implementations_fields(key: str) -> None:
    response = ActionResponse.from_frame({"status": "failed", "retcode": 100, key: "参数错误", "echo": 7})
    assert response.wording == "参数错误"
    assert response.echo == "7"  # compared as text


def test_events_and_responses_are_told_apart_by_post_type() -> None:
    assert is_event(decode('{"post_type": "notice", "notice_type": "x"}'))
    assert not is_event(decode('{"status": "ok", "retcode": 0, "echo": "1"}'))


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "42", b"\xff\xfe"])
def test_a_frame_that_is_not_a_json_object_is_invalid(raw: str | bytes) -> None:
    with pytest.raises(InvalidFrame):
        decode(raw)
