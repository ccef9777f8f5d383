"""A local stand-in for WeChat's `GET /sns/jscode2session`, served over real HTTP on 127.0.0.1.

It checks the app id, secret and grant type the way WeChat does, answers JSON labelled
`text/plain` (as WeChat does), treats issued login codes as single use (40163 on reuse) and
records every request it receives. Tests script anything else per code with `Reply`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.server import serving

APP_ID = "wx0123456789abcdef"
APP_SECRET = "fake-wechat-app-secret-3f9a1c77"


@dataclass
class Reply:
    """One scripted answer: a str is sent as it is, anything else as JSON text."""

    body: dict[str, Any] | list[Any] | str
    status: int = 200
    delay: float = 0.0
    content_type: str = "text/plain"
    # Holds the answer until this many requests wait on it (to line up concurrent logins).
    barrier: asyncio.Barrier | None = None


def error(errcode: int, errmsg: str) -> Reply:
    return Reply({"errcode": errcode, "errmsg": errmsg})


@dataclass
class FakeWeChat:
    app_id: str = APP_ID
    secret: str = APP_SECRET
    base_url: str = ""
    replies: dict[str, Reply] = field(default_factory=dict)
    # code -> (openid, unionid) for codes `issue_code` handed out and nobody used yet.
    _fresh: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    requests: list[dict[str, str]] = field(default_factory=list)
    # Set on shutdown so delayed answers stop waiting.
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def issue_code(self, code: str, openid: str, unionid: str | None = None) -> str:
        """What `wx.login` hands the mini-program: valid once, for this user."""
        self._fresh[code] = (openid, unionid)
        return code

    def script(self, code: str, reply: Reply) -> str:
        """Answer this code with `reply`, every time it is presented."""
        self.replies[code] = reply
        return code

    def codes_seen(self) -> list[str]:
        return [r.get("js_code", "") for r in self.requests]

    async def jscode2session(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append(params)
        reply = self._answer(params)
        if reply.barrier is not None:
            await reply.barrier.wait()
        if reply.delay:
            # Like a stalled upstream; released early when the fake shuts down.
            with suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), reply.delay)
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body, ensure_ascii=False)
        return Response(body, status_code=reply.status, media_type=reply.content_type)

    def _answer(self, params: dict[str, str]) -> Reply:
        # The order of WeChat's own checks: credentials first, then the code.
        if not params.get("appid"):
            return error(41002, "appid missing")
        if params["appid"] != self.app_id:
            return error(40013, "invalid appid")
        if not params.get("secret"):
            return error(41004, "appsecret missing")
        if not secrets.compare_digest(params["secret"], self.secret):
            return error(40125, "invalid appsecret")
        if params.get("grant_type") != "authorization_code":
            return error(40002, "invalid grant_type")
        code = params.get("js_code")
        if not code:
            return error(41008, "missing code")
        if code in self.replies:
            return self.replies[code]
        if code in self._used:
            return error(40163, "code been used")
        if code in self._fresh:
            openid, unionid = self._fresh.pop(code)
            self._used.add(code)
            body = {"openid": openid, "session_key": secrets.token_urlsafe(16)}
            if unionid is not None:
                body["unionid"] = unionid
            return Reply(body)
        return error(40029, "invalid code")


@asynccontextmanager
async def running_fake_wechat(app_id: str = APP_ID, secret: str = APP_SECRET) -> AsyncIterator[FakeWeChat]:
    """Serve a `FakeWeChat` with uvicorn on an ephemeral port, in the current event loop."""
    fake = FakeWeChat(app_id=app_id, secret=secret)
    app = Starlette(routes=[Route("/sns/jscode2session", fake.jscode2session, methods=["GET"])])
    async with serving(app) as base_url:
        fake.base_url = base_url
        try:
            yield fake
        finally:
            fake.closing.set()  # release delayed answers, so the server can stop at once
