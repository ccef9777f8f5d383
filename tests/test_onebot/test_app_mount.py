"""The application serves the OneBot endpoints from its settings, closed to strangers by default."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from app.core.config import Settings
from app.main import create_app
from tests.conftest import make_client
from tests.fakes.server import serving
from tests.onebot_sim import Implementation, ReverseWsClient
from tests.test_onebot.conftest import FRIEND, SELF_ID, collect, wait_until


def with_onebot(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"onebot": settings.onebot.model_copy(update=changes)})


async def test_the_app_accepts_events_from_loopback_without_a_token(app: Any, impl: Implementation) -> None:
    events = collect(app.state.ctx.onebot, "message.private")
    async with make_client(app, client_ip="127.0.0.1") as client:
        response = await client.post("/onebot/v11/http", json=impl.private_message(FRIEND, "你好"))
    assert response.status_code == 204
    await wait_until(lambda: len(events) == 1)


async def test_the_app_refuses_remote_peers_without_a_token(app: Any, impl: Implementation) -> None:
    async with make_client(app, client_ip="203.0.113.9") as client:
        response = await client.post("/onebot/v11/http", json=impl.private_message(FRIEND, "伪造"))
    assert response.status_code == 403


async def test_the_app_checks_the_configured_token(settings: Settings, impl: Implementation) -> None:
    application = create_app(with_onebot(settings, access_token=SecretStr("s3cret")))
    hub = application.state.onebot
    async with serving(application) as base:  # the endpoints need no lifespan
        url = base.replace("http://", "ws://") + "/onebot/v11/ws"
        refused = ReverseWsClient(impl, url, token="wrong")
        await refused.connect()
        assert await refused.wait_closed() == 1008
        async with ReverseWsClient(impl, url, token="s3cret"):
            await wait_until(lambda: hub.registry.action_connection(SELF_ID) is not None)


async def test_inbound_endpoints_can_be_switched_off(settings: Settings) -> None:
    closed = create_app(with_onebot(settings, inbound=False))
    paths = {getattr(route, "path", "") for route in closed.routes}
    assert "/onebot/v11/ws" not in paths
    assert "/onebot/v11/http" not in paths
