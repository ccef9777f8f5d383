"""HTTP API: the implementation serves `POST /<action>` and our client calls it.

Params come from a JSON body, a form body (`application/x-www-form-urlencoded`) or the query
string (which wins, as in NapCat); GET works too. Token: `Authorization: <scheme> <t>` or
`?access_token=<t>`, 401 when missing, 403 when wrong (go-cqhttp; NapCat answers 403 to both).
An unknown action gets HTTP 404 with an empty body from go-cqhttp (the spec's answer) and HTTP
200 with `{"status": "failed", "retcode": 200, ...}` from NapCat. A stream action's frames are
written one after another, each followed by a blank line (`\\r\\n\\r\\n`), as NapCat does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.server import serving
from tests.onebot_sim.forward import presented_token, refusal
from tests.onebot_sim.implementation import DropConnection, Implementation, encode


class _CutOff(Response):
    """Starts a response and never finishes it: uvicorn then closes the connection, so the client
    sees the link drop mid-answer (it logs "ASGI callable returned without completing response")."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})


class _BadBody(ValueError):
    pass


async def _params(request: Request) -> Any:
    body = await request.body()
    params: Any = {}
    if body:
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        else:
            # NapCat reads any body without a content type as JSON.
            try:
                params = json.loads(body)
            except ValueError:
                raise _BadBody from None
    query = {k: v for k, v in request.query_params.items() if k != "access_token"}
    return params | query if isinstance(params, dict) else params


class _HttpApi:
    def __init__(self, impl: Implementation, closing: asyncio.Event) -> None:
        self.impl = impl
        self.closing = closing

    async def endpoint(self, request: Request) -> Response:
        presented = presented_token(request.headers.get("Authorization"), request.query_params.get("access_token"))
        status = refusal(self.impl.token, presented)
        if status:
            return Response(status_code=status)
        try:
            params = await _params(request)
        except _BadBody:
            return Response("Invalid JSON", status_code=400)
        return await self._answer(request.path_params["action"], params)

    async def _answer(self, action: str, params: Any) -> Response:
        self.impl.record_call(action, params, over_http=True)
        if not await self._delay(self.impl.reply_delay_for(action)):
            return _CutOff()
        try:
            frames = self.impl.answer(action, params, over_http=True)
        except DropConnection:
            return _CutOff()
        if not frames:  # silenced: hold the request until the server shuts down
            await self.closing.wait()
            return _CutOff()
        await self.impl.flush_followups()
        if self.impl.quirks.flavor == "gocq" and not self.impl.supports(action) and frames[0]["retcode"] == 404:
            return Response(status_code=404)
        if frames[0].get("stream") == "stream-action":
            return Response("".join(encode(frame) + "\r\n\r\n" for frame in frames))
        return JSONResponse(frames[0])

    async def _delay(self, seconds: float) -> bool:
        """Wait `seconds`; False when the server started shutting down meanwhile."""
        if not seconds:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)
        return not self.closing.is_set()


def http_api_app(impl: Implementation, closing: asyncio.Event) -> Starlette:
    api = _HttpApi(impl, closing)
    return Starlette(routes=[Route("/{action:path}", api.endpoint, methods=["GET", "POST"])])


@asynccontextmanager
async def http_api_server(impl: Implementation) -> AsyncIterator[str]:
    """The implementation's HTTP API on 127.0.0.1 for the block; yields its base URL."""
    closing = asyncio.Event()
    async with serving(http_api_app(impl, closing)) as base_url:
        try:
            yield base_url
        finally:
            closing.set()  # release held (silenced, delayed) requests so uvicorn can stop
