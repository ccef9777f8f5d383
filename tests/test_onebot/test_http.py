"""The HTTP transports: the HTTP API client, and the HTTP POST event endpoint."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from app.onebot.errors import ActionFailed, ConnectionLost
from tests.onebot_sim import HttpPostSender, Implementation, Quirks, http_api_server
from tests.test_onebot.conftest import FRIEND, SELF_ID, collect, running_hub, serving_hub, wait_until


def post_url(base_url: str) -> str:
    return base_url + "/onebot/v11/http"


# --- HTTP API ----------------------------------------------------------------------------------


async def test_actions_go_over_the_http_api(impl: Implementation) -> None:
    async with http_api_server(impl) as api, running_hub(http_api_urls={SELF_ID: api}) as hub:
        message_id = await hub.bot(SELF_ID).send_private_msg(FRIEND, "您的工单已受理")
    assert message_id == impl.sent[-1]["message_id"]
    assert impl.calls[-1]["over_http"] is True


async def test_a_failed_http_action_raises_action_failed(impl: Implementation) -> None:
    async with http_api_server(impl) as api, running_hub(http_api_urls={SELF_ID: api}) as hub:
        with pytest.raises(ActionFailed) as failed:
            await hub.bot(SELF_ID).send_private_msg(999, "hi")
    assert "请先添加对方为好友" in failed.value.wording


async def test_an_unknown_action_answered_by_a_bare_404_is_action_failed() -> None:
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.gocq())
    async with http_api_server(impl) as api, running_hub(http_api_urls={SELF_ID: api}) as hub:
        with pytest.raises(ActionFailed) as failed:
            await hub.bot(SELF_ID).call("no_such_action")
    assert failed.value.retcode == 404


async def test_a_refused_token_on_the_http_api_is_action_failed() -> None:
    impl = Implementation(self_id=SELF_ID, token="right")
    async with http_api_server(impl) as api, running_hub(http_api_urls={SELF_ID: api}, access_token="wrong") as hub:
        with pytest.raises(ActionFailed) as failed:
            await hub.bot(SELF_ID).get_login_info()
    assert failed.value.retcode == 403


async def test_an_unreachable_http_api_is_connection_lost(impl: Implementation) -> None:
    async with http_api_server(impl) as api:
        pass  # the server is gone again: its port refuses connections
    async with running_hub(http_api_urls={SELF_ID: api}) as hub:
        with pytest.raises(ConnectionLost):
            await hub.bot(SELF_ID).get_login_info()


# --- HTTP POST events --------------------------------------------------------------------------


async def test_a_signed_post_is_accepted_with_204_and_published(impl: Implementation) -> None:
    async with running_hub(secret="post-secret") as hub, serving_hub(hub) as base:
        events = collect(hub, "message.private")
        async with HttpPostSender(impl, post_url(base), secret="post-secret", authorization=False) as sender:
            response = await sender.post(impl.private_message(FRIEND, "打印机卡纸"))
        assert response.status_code == 204
        await wait_until(lambda: len(events) == 1)
    assert events[0].message.plain_text() == "打印机卡纸"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("signature", "status"),
    [("sha1=" + "0" * 40, 403), ("", 401), ("sha1=not-hex", 403)],
    ids=["forged", "missing", "garbage"],
)
async def test_a_forged_or_missing_signature_is_refused(impl: Implementation, signature: str, status: int) -> None:
    async with running_hub(secret="post-secret") as hub, serving_hub(hub) as base:
        events = collect(hub)
        async with HttpPostSender(impl, post_url(base), secret="post-secret", authorization=False) as sender:
            response = await sender.post(impl.private_message(FRIEND, "伪造"), signature=signature)
        await hub.events.join()
    assert response.status_code == status
    assert events == []


async def test_a_signature_over_another_body_is_refused(impl: Implementation) -> None:
    async with (
        running_hub(secret="post-secret") as hub,
        serving_hub(hub) as base,
        HttpPostSender(impl, post_url(base), secret="post-secret", authorization=False) as sender,
    ):
        genuine = sender.headers(b'{"post_type":"meta_event"}')["X-Signature"]
        response = await sender.post(impl.private_message(FRIEND, "篡改"), signature=genuine)
    assert response.status_code == 403


async def test_napcat_signs_with_its_token_when_no_secret_is_set() -> None:
    impl = Implementation(self_id=SELF_ID, token="s3cret")
    async with (
        running_hub(access_token="s3cret") as hub,
        serving_hub(hub) as base,
        HttpPostSender(impl, post_url(base), secret="s3cret", authorization=False) as sender,
    ):
        response = await sender.post(impl.private_message(FRIEND, "你好"))
    assert response.status_code == 204


async def test_a_token_header_is_accepted_when_no_secret_is_set() -> None:
    impl = Implementation(self_id=SELF_ID, token="s3cret", quirks=Quirks.gocq())
    async with running_hub(access_token="s3cret") as hub, serving_hub(hub) as base:
        async with HttpPostSender(impl, post_url(base)) as sender:
            accepted = await sender.post(impl.private_message(FRIEND, "你好"))
        impl.token = "wrong"
        async with HttpPostSender(impl, post_url(base)) as sender:
            refused = await sender.post(impl.private_message(FRIEND, "你好"))
    assert (accepted.status_code, refused.status_code) == (204, 403)


async def test_a_retried_post_is_delivered_once(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base:
        events = collect(hub, "message")
        async with HttpPostSender(impl, post_url(base), authorization=False) as sender:
            await sender.post(impl.private_message(FRIEND, "只算一次"), repeat=2)
            assert [r.status_code for r in sender.responses] == [204, 204]
        await hub.events.join()
    assert len(events) == 1
    assert hub.metrics.get("events_duplicate") == 1


async def test_a_body_that_is_not_json_is_400_and_nothing_is_published(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base:
        events = collect(hub)
        async with HttpPostSender(impl, post_url(base), authorization=False) as sender:
            response = await sender.post(body=b"not json", signature="")
        await hub.events.join()
    assert response.status_code == 400
    assert events == []


async def test_without_a_token_a_remote_peer_is_refused(impl: Implementation) -> None:
    async with running_hub() as hub:
        transport = httpx.ASGITransport(app=Starlette(routes=hub.routes()), client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post("/onebot/v11/http", json=impl.private_message(FRIEND, "x"))
    assert response.status_code == 403
