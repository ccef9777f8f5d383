"""Realtime: single-use tokens for browsers, the SSE stream and the WebSocket.

Frames are timeline events `{id, type, ticket_id, data, created_at}` the caller may see.
Resume: SSE `Last-Event-ID`, WebSocket `{"type": "resume", "since": <id>}`; the server replays
from the timeline with a small overlap and clients de-duplicate by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.api.v1.dependencies import Context, CurrentPrincipal, SessionDep
from app.core.errors import AppError, InvalidToken, NotAuthenticated, TooManyStreams, problem_responses
from app.realtime.bus import Frame
from app.realtime.streams import CLOSE_AUTH, CLOSE_TOO_MANY, StreamAuth, StreamClosed

router = APIRouter(tags=["realtime"])

TokenQuery = Annotated[str | None, Query(max_length=128, description="single-use token from POST /realtime/token")]


class RealtimeToken(BaseModel):
    token: str
    expires_at: datetime


@router.post("/realtime/token", response_model=RealtimeToken, responses=problem_responses(NotAuthenticated))
async def create_realtime_token(principal: CurrentPrincipal, ctx: Context, session: SessionDep) -> RealtimeToken:
    """For browsers, whose EventSource and WebSocket cannot send headers: valid once, 60 s."""
    token, expires_at = await ctx.realtime.issue_token(session, user=principal.user, session_id=principal.session_id)
    return RealtimeToken(token=token, expires_at=expires_at)


def _sse(frame: Frame) -> str:
    return f"id: {frame.id}\nevent: {frame.type}\ndata: {frame.json()}\n\n"


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        **problem_responses(NotAuthenticated, InvalidToken, TooManyStreams),
    },
)
async def event_stream(
    request: Request,
    ctx: Context,
    token: TokenQuery = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    auth = await ctx.realtime.authenticate(authorization=request.headers.get("authorization"), token=token)
    subscription = ctx.realtime.subscribe(auth)  # before the replay: nothing falls between
    since = int(last_event_id) if last_event_id and last_event_id.isdigit() else None

    async def body() -> AsyncIterator[str]:
        try:
            yield "retry: 3000\n\n"
            if since is not None:
                for frame in await ctx.realtime.replay(auth.user, since):
                    yield _sse(frame)
            async for live in ctx.realtime.follow(subscription, auth):
                yield _sse(live) if live is not None else ": keep-alive\n\n"
        except StreamClosed as closed:
            yield f"event: closed\ndata: {json.dumps({'code': closed.code})}\n\n"
        finally:
            ctx.realtime.bus.unsubscribe(subscription)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


@router.websocket("/ws")
async def websocket_stream(websocket: WebSocket, token: TokenQuery = None) -> None:
    ctx = websocket.app.state.ctx
    try:
        auth: StreamAuth = await ctx.realtime.authenticate(
            authorization=websocket.headers.get("authorization"), token=token
        )
    except AppError:
        # Accept first: a close before the handshake completes reaches the client as HTTP 403,
        # and API.md promises the close code 4401.
        await websocket.accept()
        await websocket.close(code=CLOSE_AUTH)
        return
    await websocket.accept()
    try:
        subscription = ctx.realtime.subscribe(auth)
    except TooManyStreams:
        await websocket.close(code=CLOSE_TOO_MANY)
        return
    sending = asyncio.Lock()

    async def send(message: dict[str, Any] | str) -> None:
        async with sending:
            await websocket.send_text(message if isinstance(message, str) else json.dumps(message))

    async def receive() -> None:
        while True:
            try:
                message = json.loads(await websocket.receive_text())
            except ValueError:
                continue  # not JSON: ignored, the connection stays
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "ping":
                await send({"type": "pong"})
            elif kind == "resume" and isinstance(message.get("since"), int):
                for frame in await ctx.realtime.replay(auth.user, message["since"]):
                    await send(frame.json())

    async def forward() -> None:
        async for live in ctx.realtime.follow(subscription, auth):
            if live is not None:
                await send(live.json())

    tasks = [asyncio.create_task(receive()), asyncio.create_task(forward())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if isinstance(error, StreamClosed):
                await websocket.close(code=error.code)
            elif error is not None and not isinstance(error, WebSocketDisconnect):
                raise error
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks)
        ctx.realtime.bus.unsubscribe(subscription)
