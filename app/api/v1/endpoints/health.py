"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from app.api.v1.dependencies import Context
from app.core.errors import NotReady, problem_responses
from app.db import migrate

router = APIRouter(tags=["ops"])
log = logging.getLogger(__name__)


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (it does not touch the database)."""
    return {"status": "ok"}


@router.get("/ready", responses=problem_responses(NotReady))
async def ready(ctx: Context) -> dict[str, str]:
    """The database answers and its schema revision is one this code knows."""
    try:
        revision = await migrate.current_revision(ctx.db.engine)
    except Exception as exc:  # any database failure means "not ready", never a 500
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise NotReady from None
    if revision not in migrate.known_heads():
        raise NotReady(revision=revision)
    return {"status": "ready", "revision": revision}
