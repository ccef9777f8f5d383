"""`GET /metrics` for Prometheus. It lives beside the v1 endpoints (same dependencies) but is
served at the root, where scrapers look for it: create_app includes the router without the
/api/v1 prefix."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.v1.dependencies import Context
from app.core.errors import Forbidden, InvalidToken, NotAuthenticated, problem_responses
from app.models.user import Role

router = APIRouter(tags=["ops"])
_bearer = HTTPBearer(auto_error=False, description="HELPDESK_METRICS_TOKEN, or an admin's access token")


async def require_scraper(
    ctx: Context, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """The metrics token (compared in constant time; no database involved) or an admin's
    access token, checked in a short read session of its own."""
    if credentials is None or not credentials.credentials:
        raise NotAuthenticated
    presented = credentials.credentials
    expected = ctx.settings.metrics_token.get_secret_value() if ctx.settings.metrics_token else ""
    if expected and hmac.compare_digest(presented.encode(), expected.encode()):
        return
    async with ctx.db.session(write=False) as session:
        user, _claims = await ctx.auth.authenticate(session, presented)
    if user.role != Role.admin:
        raise Forbidden


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_scraper)],
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **problem_responses(NotAuthenticated, InvalidToken, Forbidden),
    },
)
async def metrics(ctx: Context) -> Response:
    """HTTP latency by route, job queue, OneBot links, LLM calls, realtime streams."""
    return Response(await ctx.metrics.render(ctx.db), media_type=CONTENT_TYPE_LATEST)
