"""The actions the simulated implementation answers, each with plausible data.

Handlers take the `Implementation` and the request's params and return the response `data`, a
`Stream` (NapCat stream actions), or raise `ActionFailure`. Parameters are coerced the way both
implementations do it (NapCat's schema validation coerces "123" to 123; go-cqhttp's gjson
`.Int()` too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.onebot_sim import cqcode
from tests.onebot_sim.responses import ActionFailure

if TYPE_CHECKING:
    from tests.onebot_sim.implementation import Implementation

Handler = Callable[["Implementation", dict[str, Any]], Any]

NOT_FRIEND = "请先添加对方为好友"


@dataclass
class Stream:
    """A NapCat stream action's answer: every item becomes one frame with the request's echo."""

    packets: list[dict[str, Any]]


def _bad(wording: str, code: str = "PARAM_ERROR") -> ActionFailure:
    return ActionFailure("bad_params", wording, code=code)


def optional_int(params: dict[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _bad(f"Key: {key}, Message: must be number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"Key: {key}, Message: must be number") from None


def int_param(params: dict[str, Any], key: str) -> int:
    value = optional_int(params, key)
    if value is None:
        raise _bad(f"Key: {key}, Message: must have required property '{key}'")
    return value


def _truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "")
    return bool(value)


def message_param(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The `message` param as segments: a CQ string (or plain text with auto_escape), an array,
    or a single segment object; all three are allowed by the spec."""
    message = params.get("message")
    if isinstance(message, str) and message:
        if _truthy(params.get("auto_escape"), False):
            return [{"type": "text", "data": {"text": message}}]
        return cqcode.from_cq(message)
    if isinstance(message, dict):
        message = [message]
    if isinstance(message, list) and message:
        if all(isinstance(segment, dict) and isinstance(segment.get("type"), str) for segment in message):
            return [dict(segment) for segment in message]
        raise _bad("Key: message, Message: invalid message segment")
    raise _bad("消息为空", "EMPTY_MSG_ERROR")


def _not_friend(impl: Implementation, user_id: int) -> ActionFailure:
    if impl.quirks.flavor == "gocq":
        # go-cqhttp logs "发送失败: 好友 %v 不存在" and answers only this.
        return ActionFailure("failed", "请参考 go-cqhttp 端输出", code="SEND_MSG_API_ERROR")
    return ActionFailure("failed", f"{NOT_FRIEND} (user_id {user_id})")


def send_private_msg(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    user_id = int_param(params, "user_id")
    segments = message_param(params)
    temp_group = optional_int(params, "group_id")  # a temporary session via a group
    if impl.quirks.friends_only and user_id not in impl.friends and temp_group is None:
        raise _not_friend(impl, user_id)
    message_id = impl.record_send("send_private_msg", params.get("message"), segments, user_id=user_id)
    return {"message_id": message_id}


def send_group_msg(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    group_id = int_param(params, "group_id")
    segments = message_param(params)
    message_id = impl.record_send("send_group_msg", params.get("message"), segments, group_id=group_id)
    return {"message_id": message_id}


def send_msg(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    # go-cqhttp's order: message_type first, then whichever id is present (group first).
    message_type = params.get("message_type")
    if message_type == "group" or (message_type != "private" and params.get("group_id")):
        return send_group_msg(impl, params)
    if message_type == "private" or params.get("user_id"):
        return send_private_msg(impl, params)
    raise _bad("Key: message_type, Message: must be private or group")


def delete_msg(impl: Implementation, params: dict[str, Any]) -> None:
    stored = impl.messages.get(int_param(params, "message_id"))
    if stored is None or stored["deleted"]:
        raise ActionFailure("failed", "消息不存在", code="MESSAGE_NOT_FOUND")
    stored["deleted"] = True


def get_msg(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    stored = impl.messages.get(int_param(params, "message_id"))
    if stored is None:
        # NapCat keeps ~5000 messages; anything older (or never seen) is gone.
        raise ActionFailure("failed", "消息不存在", code="MSG_NOT_FOUND")
    return impl.describe_message(stored)


def get_login_info(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": impl.self_id, "nickname": impl.nickname}


def get_status(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    return {"online": impl.online, "good": True, "stat": {"packet_received": len(impl.calls)}}


def get_version_info(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    if impl.quirks.flavor == "gocq":
        return {
            "app_name": "go-cqhttp",
            "app_version": "v1.2.0",
            "app_full_name": "go-cqhttp-v1.2.0_linux_amd64-go1.20.2",
            "protocol_version": "v11",
            "coolq_edition": "pro",
            "go-cqhttp": True,
            "plugin_version": "4.15.0",
            "runtime_os": "linux",
            "version": "v1.2.0",
            "protocol_name": 6,
        }
    return {"app_name": "NapCat.Onebot", "protocol_version": "v11", "app_version": "4.8.95"}


def get_friend_list(impl: Implementation, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"user_id": uid, "nickname": impl.nickname_of(uid), "remark": ""} for uid in sorted(impl.friends)]


def get_stranger_info(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    user_id = int_param(params, "user_id")
    info: dict[str, Any] = {"user_id": user_id, "nickname": impl.nickname_of(user_id), "sex": "unknown", "age": 0}
    if impl.quirks.flavor == "napcat":
        info |= {"qid": "", "level": 1, "login_days": 0}
    return info


def get_group_info(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    group_id = int_param(params, "group_id")
    return {"group_id": group_id, "group_name": impl.group_name(group_id), "member_count": 42, "max_member_count": 500}


def get_group_member_info(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    group_id, user_id = int_param(params, "group_id"), int_param(params, "user_id")
    return {
        "group_id": group_id,
        "user_id": user_id,
        "nickname": impl.nickname_of(user_id),
        "card": "",
        "sex": "unknown",
        "age": 0,
        "area": "",
        "join_time": 1700000000,
        "last_sent_time": 1732435200,
        "level": "1",
        "role": "member",
        "unfriendly": False,
        "title": "",
    }


def set_friend_add_request(impl: Implementation, params: dict[str, Any]) -> None:
    flag = params.get("flag")
    user_id = impl.requests.pop(flag, None) if isinstance(flag, str) else None
    if user_id is None:
        raise ActionFailure("failed", "FLAG不存在", code="FLAG_NOT_FOUND")
    if _truthy(params.get("approve"), True):
        impl.friends.add(user_id)


def _file_info(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("file") or params.get("file_id")
    info = impl.files.get(name) if isinstance(name, str) else None
    if info is None:
        raise ActionFailure("failed", "file not found", code="FILE_NOT_FOUND")
    return info


def get_image(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    info = _file_info(impl, params)
    if impl.quirks.flavor == "gocq":
        return {"size": info["size"], "filename": info["name"], "url": info["url"]}
    return get_file(impl, params)


def get_file(impl: Implementation, params: dict[str, Any]) -> dict[str, Any]:
    info = _file_info(impl, params)
    # NapCat reports file_size as a string.
    path = f"/tmp/napcat/cache/{info['name']}"  # noqa: S108 - a path as NapCat reports it, never opened
    return {"file": path, "url": info["url"], "file_size": str(info["size"]), "file_name": info["name"]}


def test_download_stream(impl: Implementation, params: dict[str, Any]) -> Stream:
    """NapCat's `test_download_stream`: chunk packets, then the final `response` packet."""
    count = optional_int(params, "chunks") or 3
    packets = [
        {"type": "stream", "data_type": "data_chunk", "data": f"这是第 {i + 1} 片流数据", "index": i}
        for i in range(count)
    ]
    packets.append({"type": "response", "data_type": "file_complete", "total_chunks": count, "message": "ok"})
    return Stream(packets)


ACTIONS: dict[str, Handler] = {
    handler.__name__: handler
    for handler in (
        get_login_info,
        get_status,
        get_version_info,
        get_friend_list,
        send_private_msg,
        send_group_msg,
        send_msg,
        delete_msg,
        get_msg,
        get_stranger_info,
        get_group_info,
        get_group_member_info,
        set_friend_add_request,
        get_image,
    )
}
NAPCAT_ONLY: dict[str, Handler] = {"get_file": get_file, "test_download_stream": test_download_stream}
