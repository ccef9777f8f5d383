"""A running app wired to the OneBot simulator: lifespan (worker included) and real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from tests.conftest import empty_tables
from tests.fakes.server import serving
from tests.onebot_sim import Implementation, Quirks, ReverseWsClient, forward_ws_server
from tests.test_onebot.conftest import wait_until

BOT = 123456789
CUSTOMER_QQ = 345678901
AGENT_QQ = 456789012
OTHER_AGENT_QQ = 456789013
STRANGER_QQ = 567890123
AGENT_GROUP = 900000001
CUSTOMER_GROUP = 900000002
SETUP_SECONDS = 30  # connecting the simulated bot; see qq_rig

Mode = Literal["forward", "reverse"]


@dataclass
class QQRig:
    app: Any
    impl: Implementation
    base_url: str

    @property
    def hub(self) -> Any:
        return self.app.state.onebot

    async def say(self, user_id: int, message: str | list[dict[str, Any]], **extra: Any) -> None:
        """A private message from `user_id` to the bot."""
        assert await self.impl.emit(self.impl.private_message(user_id, message, **extra)) >= 1

    async def say_in_group(self, group_id: int, user_id: int, message: str | list[dict[str, Any]]) -> None:
        assert await self.impl.emit(self.impl.group_message(group_id, user_id, message)) >= 1

    async def sent_where(self, predicate: Callable[[dict[str, Any]], bool], *, within: float = 10.0) -> dict[str, Any]:
        """The first message the bot sent that matches, once it has been sent."""
        return await self.impl.changed.wait_for(
            lambda: next((sent for sent in self.impl.sent if predicate(sent)), None), within
        )

    async def sent_to(self, user_id: int, containing: str, *, within: float = 10.0) -> dict[str, Any]:
        return await self.sent_where(
            lambda s: s["user_id"] == user_id and s["group_id"] is None and containing in s["text"], within=within
        )

    async def sent_to_group(self, group_id: int, containing: str, *, within: float = 10.0) -> dict[str, Any]:
        return await self.sent_where(lambda s: s["group_id"] == group_id and containing in s["text"], within=within)


async def remembered(rig: QQRig, sent: dict[str, Any]) -> None:
    """Until the app has recorded this sent message (it does so right after the send returns):
    a quote-reply to it is only understood from then on."""
    from sqlalchemy import select

    from app.models.qq import QQSentMessage

    query = select(QQSentMessage.id).where(QQSentMessage.message_id == str(sent["message_id"]))
    async with asyncio.timeout(10):
        while True:
            async with rig.app.state.ctx.db.transaction(write=False) as session:
                if (await session.execute(query)).first() is not None:
                    return
            await asyncio.sleep(0.02)  # the app has no signal for it


def qq_settings(settings: Settings, **onebot: Any) -> Settings:
    values = {
        "agent_groups": [AGENT_GROUP],
        "bot_id": BOT,
        "send_rate_per_second": 1000.0,
        "send_burst": 1000,
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.2,
        **onebot,
    }
    return settings.model_copy(
        update={
            "onebot": settings.onebot.model_copy(update=values),
            "worker": settings.worker.model_copy(update={"enabled": True, "poll_seconds": 0.05}),
        }
    )


@asynccontextmanager
async def qq_rig(
    settings: Settings,
    engine: AsyncEngine,
    *,
    mode: Mode = "reverse",
    quirks: Quirks | None = None,
    friends: set[int] | None = None,
    **onebot: Any,
) -> AsyncIterator[QQRig]:
    """The app with its worker, and the simulated bot connected in `mode`."""
    await empty_tables(engine)
    impl = Implementation(
        self_id=BOT,
        friends={CUSTOMER_QQ, AGENT_QQ, OTHER_AGENT_QQ} if friends is None else friends,
        quirks=quirks or Quirks.napcat(),
    )
    async with forward_ws_server(impl) as server:
        forward = [server.url] if mode == "forward" else []
        app = create_app(qq_settings(settings, forward_urls=forward, **onebot))
        async with app.router.lifespan_context(app), serving(app) as base_url:
            rig = QQRig(app, impl, base_url)
            client = None
            if mode == "reverse":
                client = ReverseWsClient(impl, base_url.replace("http://", "ws://") + "/onebot/v11/ws")
                # Bounds, not expectations: a loaded CI once took over 5 s, another 11 s (the
                # whole test process stalled between the server's start and the handshake).
                await client.connect(timeout=SETUP_SECONDS)
            await wait_until(lambda: rig.hub.registry.action_connection(BOT) is not None, SETUP_SECONDS)
            await impl.changed.wait_for(lambda: impl.event_links >= 1, SETUP_SECONDS)
            try:
                yield rig
            finally:
                if client is not None:
                    await client.close()
