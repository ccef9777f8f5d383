"""HTTP POST events: the implementation posts each event to `/onebot/v11/http`.

Authentication is `X-Signature: sha1=<hex HMAC-SHA1(key, raw body)>`, compared in constant
time (see `_refusal` for which key and when a token does instead). The event is
de-duplicated (go-cqhttp retries posts) and queued before the answer, 204 with no quick
operation. When the dedupe store fails the answer is 503 so the implementation may retry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from app.onebot.auth import inbound_refusal, signature_matches
from app.onebot.errors import InvalidFrame
from app.onebot.frames import decode, is_event

if TYPE_CHECKING:
    from app.onebot.hub import OneBotHub

log = logging.getLogger(__name__)


async def receive_http_post(hub: OneBotHub, request: Request) -> Response:
    body = await request.body()
    refusal = _refusal(hub, request, body)
    if refusal:
        log.warning("onebot HTTP POST from %s refused (%d)", _peer(request), refusal)
        return Response(status_code=refusal)
    try:
        frame = decode(body)
    except InvalidFrame as exc:
        hub.metrics.inc("frames_invalid")
        log.warning("onebot HTTP POST skipped (%d bytes): %s", len(body), exc)
        return Response(status_code=400)
    if not is_event(frame):
        hub.metrics.inc("frames_invalid")
        return Response(status_code=400)
    hub.metrics.inc("frames_in")
    try:
        await hub.ingest(frame, self_id=_self_id(request))
    except Exception:
        hub.metrics.inc("events_failed")
        log.exception("onebot could not ingest an HTTP POST event")
        return Response(status_code=503)
    return Response(status_code=204)


def _refusal(hub: OneBotHub, request: Request, body: bytes) -> int:
    """0, or the status to refuse with.

    Real implementations authenticate a post by its signature, not by a token header:
    go-cqhttp signs with its `secret`, NapCat with its token. So the signing key is the
    `secret`, or the access token when no secret is set; a valid signature is enough, and a
    configured secret makes it required. A sender that presents the access token instead
    (`Authorization` or `?access_token=`) is accepted while no secret is set.
    """
    config = hub.config
    key = config.secret or config.access_token
    signature = request.headers.get("x-signature")
    if key and signature_matches(key, body, signature):
        return 0
    if config.secret:
        return 403 if signature else 401
    return inbound_refusal(
        expected_token=config.access_token,
        authorization=request.headers.get("authorization"),
        query_token=request.query_params.get("access_token"),
        peer=_peer(request),
    )


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


def _self_id(request: Request) -> int | None:
    value = (request.headers.get("x-self-id") or "").strip()
    return int(value) if value.isdigit() else None
