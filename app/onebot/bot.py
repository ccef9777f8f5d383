"""`Bot`: one QQ account's actions, typed, over whichever connection carries them.

Messages always go out as segment arrays; a plain `str` becomes one `text` segment, so user
text can never turn into a CQ code. Ids go out as numbers where the spec says so (`user_id`,
`group_id`) and `message_id` is passed back exactly as the implementation gave it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.onebot.errors import NotConnected
from app.onebot.frames import ActionResponse
from app.onebot.message import Message, MessageSegment

if TYPE_CHECKING:
    from app.onebot.hub import OneBotHub

# Actions that put a message in front of people: these wait for the bot's token bucket.
SEND_ACTIONS = frozenset(
    {"send_private_msg", "send_group_msg", "send_msg", "send_private_forward_msg", "send_group_forward_msg"}
)

Outgoing = Message | MessageSegment | str


def to_array(message: Outgoing) -> list[dict[str, Any]]:
    if isinstance(message, str):
        return [MessageSegment.text(message).to_dict()]
    if isinstance(message, MessageSegment):
        return [message.to_dict()]
    return message.to_array()


class Bot:
    def __init__(self, hub: OneBotHub, self_id: int) -> None:
        self.hub = hub
        self.self_id = self_id

    @property
    def connected(self) -> bool:
        return self.hub.registry.action_connection(self.self_id) is not None

    async def call(self, action: str, *, timeout: float | None = None, **params: Any) -> Any:
        """Any action by name; returns its `data`. Raises ActionFailed, ActionTimeout,
        ConnectionLost or NotConnected."""
        return (await self.request(action, params, timeout=timeout)).data

    async def request(self, action: str, params: dict[str, Any], *, timeout: float | None = None) -> ActionResponse:
        """Like `call`, with the whole response (`chunks` of a NapCat stream action)."""
        if action in SEND_ACTIONS:
            await self.hub.bucket(self.self_id).acquire()
        connection = self.hub.registry.action_connection(self.self_id)
        if connection is None:
            raise NotConnected(self.self_id)
        return await self.hub.requests.send_request(connection, action, params, timeout=timeout)

    # --- messages ---------------------------------------------------------------------------

    async def send_private_msg(self, user_id: int, message: Outgoing) -> Any:
        """Returns the new message's id (opaque: may exceed int32 or be negative)."""
        data = await self.call("send_private_msg", user_id=user_id, message=to_array(message))
        return _message_id(data)

    async def send_group_msg(self, group_id: int, message: Outgoing) -> Any:
        data = await self.call("send_group_msg", group_id=group_id, message=to_array(message))
        return _message_id(data)

    async def send_msg(self, *, user_id: int | None = None, group_id: int | None = None, message: Outgoing) -> Any:
        if (user_id is None) == (group_id is None):
            raise ValueError("send_msg needs exactly one of user_id and group_id")
        target: dict[str, Any] = (
            {"message_type": "group", "group_id": group_id}
            if group_id is not None
            else {"message_type": "private", "user_id": user_id}
        )
        data = await self.call("send_msg", **target, message=to_array(message))
        return _message_id(data)

    async def delete_msg(self, message_id: int | str) -> None:
        await self.call("delete_msg", message_id=message_id)

    async def get_msg(self, message_id: int | str) -> dict[str, Any]:
        """NapCat keeps only the last few thousand messages: never rely on old ones."""
        return _object(await self.call("get_msg", message_id=message_id))

    # --- people and groups ------------------------------------------------------------------

    async def get_login_info(self) -> dict[str, Any]:
        return _object(await self.call("get_login_info"))

    async def get_stranger_info(self, user_id: int, *, no_cache: bool = False) -> dict[str, Any]:
        return _object(await self.call("get_stranger_info", user_id=user_id, no_cache=no_cache))

    async def get_group_info(self, group_id: int, *, no_cache: bool = False) -> dict[str, Any]:
        return _object(await self.call("get_group_info", group_id=group_id, no_cache=no_cache))

    async def get_group_member_info(self, group_id: int, user_id: int, *, no_cache: bool = False) -> dict[str, Any]:
        return _object(await self.call("get_group_member_info", group_id=group_id, user_id=user_id, no_cache=no_cache))

    async def set_friend_add_request(self, flag: str, *, approve: bool = True, remark: str = "") -> None:
        await self.call("set_friend_add_request", flag=flag, approve=approve, remark=remark)

    # --- files ------------------------------------------------------------------------------

    async def get_image(self, file: str) -> dict[str, Any]:
        return _object(await self.call("get_image", file=file))

    async def get_file(self, file_id: str) -> dict[str, Any]:
        return _object(await self.call("get_file", file_id=file_id))


def _message_id(data: Any) -> Any:
    return data.get("message_id") if isinstance(data, dict) else None


def _object(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}
