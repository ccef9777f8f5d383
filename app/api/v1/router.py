"""All v1 routes under /api/v1."""

from fastapi import APIRouter

from app.api.v1.endpoints import (
    ai,
    attachments,
    auth,
    canned_responses,
    categories,
    health,
    jobs,
    kb,
    realtime,
    sla,
    stats,
    tags,
    teams,
    tickets,
    users,
    webhooks,
)

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(health.router)
api_router.include_router(auth.router)
api_router.include_router(users.router)
api_router.include_router(tickets.router)
api_router.include_router(ai.router)
api_router.include_router(attachments.router)
api_router.include_router(categories.router)
api_router.include_router(teams.router)
api_router.include_router(tags.router)
api_router.include_router(canned_responses.router)
api_router.include_router(kb.router)
api_router.include_router(sla.policies)
api_router.include_router(sla.calendar)
api_router.include_router(stats.router)
api_router.include_router(jobs.router)
api_router.include_router(webhooks.router)
api_router.include_router(realtime.router)
