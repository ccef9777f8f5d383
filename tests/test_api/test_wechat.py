"""WeChat mini-program login against a local fake of jscode2session over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings, WeChatSettings
from app.main import create_app
from app.models import Role
from app.models.user import ExternalIdentity, IdentityProvider, User
from tests.conftest import bearer, create_user, empty_tables, login, make_client
from tests.fakes.wechat import APP_ID, APP_SECRET, FakeWeChat, Reply, error, running_fake_wechat

WECHAT_LOGIN = "/api/v1/auth/wechat"
ME = "/api/v1/users/me"
PROBLEM_JSON = "application/problem+json"
TIMEOUT = 0.5
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
async def wechat() -> AsyncIterator[FakeWeChat]:
    async with running_fake_wechat() as fake:
        yield fake


def pointing_at(settings: Settings, fake: FakeWeChat, *, secret: str = APP_SECRET) -> Settings:
    return settings.model_copy(
        update={
            "wechat": WeChatSettings(
                app_id=APP_ID,
                secret=secret,  # type: ignore[arg-type]
                base_url=fake.base_url,
                timeout_seconds=TIMEOUT,
            )
        }
    )


@asynccontextmanager
async def running_app(settings: Settings, admin_engine: AsyncEngine) -> AsyncIterator[Any]:
    await empty_tables(admin_engine)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def app(settings: Settings, admin_engine: AsyncEngine, wechat: FakeWeChat) -> AsyncIterator[Any]:
    """The conftest app, with WeChat login pointed at the fake (conftest's `client` uses it)."""
    async with running_app(pointing_at(settings, wechat), admin_engine) as application:
        yield application


async def wechat_users(engine: AsyncEngine, openid: str) -> list[tuple[int, str | None]]:
    """(user id, unionid) of every identity row for this openid."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(ExternalIdentity.user_id, ExternalIdentity.union_id).where(
                ExternalIdentity.provider == IdentityProvider.wechat, ExternalIdentity.external_id == openid
            )
        )
        return [(row.user_id, row.union_id) for row in rows]


async def count_users(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(User))).scalar_one())


async def wechat_login(client: Any, code: str, **headers: str) -> Any:
    return await client.post(WECHAT_LOGIN, json={"code": code}, headers=headers)


async def test_first_wechat_login_creates_a_customer_with_working_tokens(client, wechat, admin_engine):
    code = wechat.issue_code("code-first-1", openid="o-alice", unionid="u-alice")

    response = await wechat_login(client, code)

    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] > 0
    me = await client.get(ME, headers=bearer(tokens))
    assert me.status_code == 200, me.text
    profile = me.json()
    assert profile["role"] == "customer"
    assert profile["display_name"] == "微信用户"
    assert profile["is_active"] is True
    assert await wechat_users(admin_engine, "o-alice") == [(profile["id"], "u-alice")]
    assert wechat.requests == [
        {"appid": APP_ID, "secret": APP_SECRET, "js_code": code, "grant_type": "authorization_code"}
    ]


async def test_new_code_for_the_same_openid_logs_into_the_same_account(client, wechat, admin_engine):
    # Before the mini-program is bound to an open-platform account WeChat sends no unionid.
    first = await wechat_login(client, wechat.issue_code("code-a", openid="o-bob"))
    assert first.status_code == 200, first.text
    user_id = (await client.get(ME, headers=bearer(first.json()))).json()["id"]
    assert await wechat_users(admin_engine, "o-bob") == [(user_id, None)]

    second = await wechat_login(client, wechat.issue_code("code-b", openid="o-bob", unionid="u-bob"))
    assert second.status_code == 200, second.text
    assert (await client.get(ME, headers=bearer(second.json()))).json()["id"] == user_id
    assert await wechat_users(admin_engine, "o-bob") == [(user_id, "u-bob")]

    # An answer without unionid does not forget the one we know.
    third = await wechat_login(client, wechat.issue_code("code-c", openid="o-bob"))
    assert third.status_code == 200, third.text
    assert await wechat_users(admin_engine, "o-bob") == [(user_id, "u-bob")]
    assert await count_users(admin_engine) == 1


async def test_reused_code_is_rejected_as_invalid(client, wechat, admin_engine):
    code = wechat.issue_code("code-once", openid="o-carol")
    assert (await wechat_login(client, code)).status_code == 200

    response = await wechat_login(client, code)

    assert response.status_code == 401
    assert response.json()["code"] == "wechat_code_invalid"
    assert await count_users(admin_engine) == 1


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        pytest.param(None, 401, "wechat_code_invalid", id="unknown-code-40029"),
        pytest.param(error(40163, "code been used"), 401, "wechat_code_invalid", id="used-code-40163"),
        pytest.param(error(40226, "high risk user"), 403, "wechat_user_blocked", id="risky-user-40226"),
        pytest.param(error(-1, "system error"), 503, "wechat_unavailable", id="busy-minus-1"),
        pytest.param(error(45011, "api minute-quota reach limit"), 503, "wechat_unavailable", id="rate-limit-45011"),
        pytest.param(Reply("Internal Server Error", status=500), 503, "wechat_unavailable", id="http-500"),
        pytest.param(Reply({"openid": "o-late"}, delay=TIMEOUT * 4), 503, "wechat_unavailable", id="timeout"),
        pytest.param(
            Reply("<html>502 Bad Gateway</html>", content_type="text/html"), 503, "wechat_unavailable", id="not-json"
        ),
        pytest.param(Reply(["not", "an", "object"]), 503, "wechat_unavailable", id="json-not-object"),
        pytest.param(Reply({"session_key": "k"}), 503, "wechat_unavailable", id="no-openid"),
        pytest.param(error(40125, "invalid appsecret"), 502, "wechat_misconfigured", id="bad-secret-40125"),
    ],
)
async def test_wechat_failures_become_problems_and_create_no_account(client, wechat, admin_engine, reply, status, code):
    if reply is not None:
        wechat.script("code-x", reply)

    response = await wechat_login(client, "code-x")

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert CJK.search(problem["detail"]), problem["detail"]
    assert wechat.codes_seen() == ["code-x"]
    assert await count_users(admin_engine) == 0


async def test_wechat_problem_detail_follows_accept_language(client, wechat):
    response = await wechat_login(client, "code-unknown", **{"Accept-Language": "en-US,en;q=0.9"})

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"] == "The WeChat login code is invalid or used"


async def test_wrong_app_secret_is_reported_as_misconfiguration(settings, admin_engine, wechat):
    wrong = pointing_at(settings, wechat, secret="not-the-app-secret-at-all")
    async with running_app(wrong, admin_engine) as application, make_client(application) as client:
        response = await wechat_login(client, wechat.issue_code("code-valid", openid="o-dave"))

    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "wechat_misconfigured"
    assert [r["secret"] for r in wechat.requests] == ["not-the-app-secret-at-all"]


async def test_wechat_login_is_disabled_without_app_id_and_secret(settings, admin_engine, wechat):
    assert not settings.wechat.enabled
    async with running_app(settings, admin_engine) as application, make_client(application) as client:
        response = await wechat_login(client, wechat.issue_code("code-valid", openid="o-erin"))

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "wechat_login_disabled"
    assert wechat.requests == []


async def test_wechat_login_logs_neither_app_secret_nor_code(client, wechat, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "app"):
        caplog.set_level(logging.DEBUG, logger=name)
    good = wechat.issue_code("js-code-0d5e7a91", openid="o-frank")
    unknown = "js-code-77c1b3e2"
    slow = wechat.script("js-code-5b90aa43", Reply({"openid": "o-frank"}, delay=TIMEOUT * 4))
    broken = wechat.script("js-code-c0ffee12", Reply("<html>oops</html>", content_type="text/html"))

    assert (await wechat_login(client, good)).status_code == 200
    assert (await wechat_login(client, good)).status_code == 401  # used
    assert (await wechat_login(client, unknown)).status_code == 401
    assert (await wechat_login(client, slow)).status_code == 503
    assert (await wechat_login(client, broken)).status_code == 503

    # The check covers httpx's request line, which carries both in its URL.
    assert any(r.name.startswith("httpx") and "jscode2session" in r.getMessage() for r in caplog.records)
    messages = [caplog.text, *(record.getMessage() for record in caplog.records)]
    for secret in (APP_SECRET, good, unknown, slow, broken):
        for message in messages:
            assert secret not in message, message


async def test_disabled_customer_cannot_log_in_with_wechat(app, client, wechat):
    first = await wechat_login(client, wechat.issue_code("code-1", openid="o-grace"))
    assert first.status_code == 200, first.text
    user_id = (await client.get(ME, headers=bearer(first.json()))).json()["id"]
    await create_user(app, "admin1", Role.admin)
    disabled = await client.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers=bearer(await login(client, "admin1"))
    )
    assert disabled.status_code == 200, disabled.text

    response = await wechat_login(client, wechat.issue_code("code-2", openid="o-grace"))

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "user_disabled"


async def test_concurrent_first_logins_share_one_account(client, wechat, admin_engine):
    # Two wx.login codes for one user; WeChat answers both only when both are asked, so the
    # two requests reach the database together.
    barrier = asyncio.Barrier(2)
    for code in ("code-left", "code-right"):
        wechat.script(code, Reply({"openid": "o-heidi", "session_key": "k"}, barrier=barrier))

    left, right = await asyncio.gather(wechat_login(client, "code-left"), wechat_login(client, "code-right"))

    assert left.status_code == 200, left.text
    assert right.status_code == 200, right.text
    ids = {(await client.get(ME, headers=bearer(r.json()))).json()["id"] for r in (left, right)}
    identities = await wechat_users(admin_engine, "o-heidi")
    assert len(identities) == 1
    assert ids == {identities[0][0]}
    assert await count_users(admin_engine) == 1


async def test_unreadable_errcode_counts_as_wechat_unavailable(client, wechat):
    wechat.script("code-odd", Reply({"errcode": "busy", "errmsg": "system busy"}))

    response = await wechat_login(client, "code-odd")

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "wechat_unavailable"
