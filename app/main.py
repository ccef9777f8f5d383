"""The FastAPI application factory. Nothing connects at import: the lifespan builds the
database engine, the HTTP client and Redis, and closes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio import Redis

from app.api.v1.endpoints import metrics as metrics_endpoint
from app.api.v1.router import api_router
from app.bot.election import ForwardElection
from app.bot.hub import build_hub, wire_bot
from app.core.config import Settings, load_settings
from app.core.context import AppContext
from app.core.errors import document_generic_problems, install_error_handlers
from app.core.logging import configure_logging
from app.core.metrics import AppMetrics, HttpMetricsMiddleware
from app.core.middleware import BodyLimitMiddleware, MethodOverrideMiddleware, RequestContextMiddleware
from app.core.net import TrustedProxies
from app.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from app.core.security import PasswordHasher, TokenSigner
from app.db import migrate
from app.db.session import Database
from app.jobs.handlers import build_worker
from app.jobs.wake import AUTH_CHANNEL, SLA_CHANNEL, RedisSignal, clear_everywhere
from app.jobs.worker import Worker
from app.llm.client import LlmClient
from app.llm.jobs import wire_ai
from app.llm.usage import database_sink
from app.onebot.hub import OneBotHub
from app.realtime.bus import EventBus
from app.realtime.redis_bridge import RedisBridge
from app.realtime.streams import RealtimeService
from app.services.assignment import AutoAssigner
from app.services.attachment import AttachmentLinks, AttachmentService, upload_body_limit
from app.services.auth import AUTH_MODELS, AuthService
from app.services.knowledge_base import KnowledgeBase
from app.services.qq_identity import QQIdentityService
from app.services.search import build_search_index
from app.services.sla import POLICY_MODELS, SlaService
from app.services.storage import build_storage
from app.services.ticket import TicketService
from app.services.user import UserService
from app.services.webhook import WebhookService
from app.services.wechat import WeChatClient

log = logging.getLogger(__name__)
# At shutdown, how long the job worker's loop gets to finish its turn (a claim, a schedule).
WORKER_LOOP_GRACE_SECONDS = 5.0

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; switch on `code`.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)

    app = FastAPI(
        title="Helpdesk API",
        version="0.1.0",
        description="工单系统后端 API. Errors are application/problem+json with a stable `code`.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(metrics_endpoint.router)  # /metrics: at the root, where scrapers look
    # The hub exists from here so its endpoints can be routed; it connects in the lifespan.
    app.state.onebot = build_hub(settings.onebot)
    if settings.onebot.inbound:
        app.router.routes.extend(app.state.onebot.routes())
    # One registry per app; the metrics read the hub (and, from the lifespan, the bus and jobs).
    app.state.metrics = AppMetrics()
    app.state.metrics.live.onebot = app.state.onebot
    # Innermost, next to the router: it reads the matched route from the scope.
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(MethodOverrideMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_json_body_bytes,
        limits={"/api/v1/attachments": upload_body_limit(settings.attachments)},
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["ETag", "X-Request-ID", "Retry-After"],
    )
    app.add_middleware(RequestContextMiddleware)
    _add_problem_schema(app)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
            document_generic_problems(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    url = settings.resolved_database_url
    if settings.auto_migrate:
        await migrate.upgrade(url)
    migrate.known_heads()  # read the migration scripts once, not on the request path
    db = Database(
        url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    http = httpx.AsyncClient(follow_redirects=False)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    limiter: RateLimiter = RedisRateLimiter(redis) if redis is not None else MemoryRateLimiter()
    hasher = PasswordHasher(settings.auth)
    signer = TokenSigner(settings.signing_key(), settings.auth.access_token_ttl_seconds)
    links = AttachmentLinks(settings.signing_key(), ttl_seconds=settings.attachments.url_ttl_seconds)
    auth = AuthService(settings.auth, hasher=hasher, signer=signer, limiter=limiter)
    bus = EventBus()
    metrics: AppMetrics = app.state.metrics
    metrics.live.realtime = bus
    search = build_search_index(settings.search)
    await search.load()  # jieba's dictionary, in a thread: about a second, once per process
    sla = SlaService(settings.sla, timezone=settings.tz)
    sla.load_file()  # a broken calendar file stops the start, not the first ticket
    ctx = AppContext(
        settings=settings,
        db=db,
        http=http,
        redis=redis,
        limiter=limiter,
        proxies=TrustedProxies(settings.trusted_proxies),
        auth=auth,
        users=UserService(settings.auth, hasher=hasher),
        wechat=WeChatClient(settings.wechat, http),
        tickets=TicketService(settings.tickets, timezone=settings.tz, search=search, assigner=AutoAssigner(), sla=sla),
        sla=sla,
        search=search,
        kb=KnowledgeBase(search),
        links=links,
        attachments=AttachmentService(
            settings.attachments,
            storage=build_storage(settings.attachments, data_dir=settings.data_dir, http=http),
            links=links,
        ),
        webhooks=WebhookService(settings.webhooks, http),
        realtime=RealtimeService(settings.realtime, db=db, auth=auth, bus=bus),
        onebot=app.state.onebot,
        qq_identities=QQIdentityService(settings.signing_key(), limiter=limiter),
        llm=LlmClient(settings.llm, usage=database_sink(db, observe=metrics.observe_llm)),
        metrics=metrics,
    )
    db.publishers.append(bus.publish)
    bridge = RedisBridge(redis, bus) if redis is not None else None
    bridge_task = asyncio.create_task(bridge.run(), name="realtime-redis") if bridge is not None else None
    if bridge is not None:
        db.publishers.append(bridge.publish)
    job_signal = RedisSignal(redis) if redis is not None else None
    if job_signal is not None:
        db.commit_hooks.append(job_signal.notify)  # wakes workers in other processes too
    # A commit that changed users or login sessions clears the authentication cache, here and
    # (through Redis) in every other process.
    auth_signal = clear_everywhere(db, AUTH_MODELS, auth.principals, redis, channel=AUTH_CHANNEL, what="auth change")
    app.state.auth_signal = auth_signal
    # Likewise the SLA policies each process keeps (app/services/sla.py PolicyCache).
    sla_signal = clear_everywhere(db, POLICY_MODELS, sla.policies, redis, channel=SLA_CHANNEL, what="SLA change")
    app.state.sla_signal = sla_signal
    app.state.ctx = ctx
    background: list[asyncio.Task[None]] = []
    worker = None
    worker_loop: asyncio.Task[None] | None = None
    election: ForwardElection | None = None
    try:
        await _bootstrap_admin(ctx)
        # Always a worker: with --no-worker it takes only the jobs routed to the bots this
        # process holds (QQ sends), so those are never stranded.
        worker = build_job_worker(
            settings,
            db,
            hub=ctx.onebot,
            tickets=ctx.tickets,
            webhooks=ctx.webhooks,
            identities=ctx.qq_identities,
            attachments=ctx.attachments,
            http=http,
            llm=ctx.llm,
            kb=ctx.kb,
            limiter=limiter,
            handles_unrouted=settings.worker.enabled,
        )
        ctx.onebot.on_attach(lambda _connection: worker.wake())  # a bot is back: its messages can go
        await ctx.onebot.start(connect_forward=False)
        election = ForwardElection(db, ctx.onebot, settings.onebot.forward_urls)
        election.start()  # one process per forward URL
        worker_loop = asyncio.create_task(worker.run_forever(), name="job-worker")
        background.append(worker_loop)
        if job_signal is not None:
            background.append(asyncio.create_task(job_signal.listen(worker.wake), name="job-wake"))
        if auth_signal is not None:
            background.append(asyncio.create_task(auth_signal.listen(auth.principals.forget), name="auth-changes"))
        if sla_signal is not None:
            background.append(asyncio.create_task(sla_signal.listen(sla.policies.forget), name="sla-changes"))
        yield
    finally:
        if worker is not None:
            await worker.stop()
        if worker_loop is not None:
            # The loop sees the stop at its next turn: let it get there, as `helpdesk worker`
            # does, rather than cancel it inside a statement. A cancelled rollback is logged
            # by SQLAlchemy's pool as an error with its traceback.
            await asyncio.wait([worker_loop], timeout=WORKER_LOOP_GRACE_SECONDS)
        if election is not None:
            await election.stop()
        await ctx.onebot.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for signal in (job_signal, auth_signal, sla_signal):
            if signal is not None:
                await signal.aclose()
        if bridge is not None and bridge_task is not None:
            bridge_task.cancel()
            await asyncio.gather(bridge_task, return_exceptions=True)
            await bridge.aclose()
        await ctx.llm.aclose()
        await http.aclose()
        if redis is not None:
            await redis.aclose()
        await db.dispose()


def build_job_worker(
    settings: Settings,
    db: Database,
    *,
    hub: OneBotHub,
    tickets: TicketService,
    webhooks: WebhookService,
    identities: QQIdentityService,
    attachments: AttachmentService,
    http: httpx.AsyncClient,
    llm: LlmClient,
    kb: KnowledgeBase,
    limiter: RateLimiter,
    handles_unrouted: bool,
) -> Worker:
    """The job worker with every feature's jobs and listeners: the QQ helpdesk's (its
    assistant's included) and the AI's. The API process and `helpdesk worker` both build it
    here, so a separate worker can run whatever an API process queues."""
    bot = wire_bot(
        settings.onebot,
        hub,
        db=db,
        tickets=tickets,
        identities=identities,
        attachments=attachments,
        http=http,
        llm=llm,
        kb=kb,
        limiter=limiter,
    )
    ai = wire_ai(settings, llm, tickets)  # AI triage on new tickets
    return build_worker(
        settings,
        db,
        tickets,
        webhooks,
        handles_unrouted=handles_unrouted,
        routing_keys=bot.routing_keys,
        extra_handlers=bot.handlers | ai.handlers,
        listeners=[*bot.listeners, *ai.listeners],
    )


async def _bootstrap_admin(ctx: AppContext) -> None:
    settings = ctx.settings
    if not (settings.admin_username and settings.admin_password):
        return
    async with ctx.db.transaction() as session:
        created = await ctx.users.ensure_admin(
            session, username=settings.admin_username, password=settings.admin_password.get_secret_value()
        )
    if created:
        log.info("created the bootstrap admin %s", settings.admin_username)
