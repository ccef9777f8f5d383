"""`helpdesk` command line: serve, worker, migrate, reindex, create-admin, openapi."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn

if TYPE_CHECKING:  # imported late at run time: the CLI starts fast
    from app.db.session import Database
    from app.services.knowledge_base import KnowledgeBase

app = typer.Typer(help="Helpdesk (工单系统) backend", no_args_is_help=True, add_completion=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: HELPDESK_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: HELPDESK_PORT)")] = None,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="run the job worker in this process")] = True,
) -> None:
    """Serve the API; migrations are applied on start-up."""
    from app.core.config import load_settings
    from app.main import create_app

    settings = load_settings()
    if not worker:
        settings.worker.enabled = False
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,  # our JSON logging, configured by create_app
        proxy_headers=False,  # X-Forwarded-For is believed only from HELPDESK_TRUSTED_PROXIES
        server_header=False,
        # Streams get 1001 at once (below); anything else still open is cut after 10 s.
        timeout_graceful_shutdown=10,
    )
    GoingAwayServer(config, application).run()


class GoingAwayServer(uvicorn.Server):
    """uvicorn's server, telling open realtime streams that the server is going away (1001) as
    soon as shutdown begins: streams never end by themselves, and uvicorn waits for open
    connections before the app's own shutdown runs."""

    def __init__(self, config: uvicorn.Config, application: Any) -> None:
        super().__init__(config)
        self.application = application

    async def shutdown(self, sockets: Any = None) -> None:
        ctx = getattr(self.application.state, "ctx", None)
        if ctx is not None:
            bus = ctx.realtime.bus
            bus.close_all(1001)
            # Let the streams send their 1001 before uvicorn closes what is left (with 1012).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    while bus.connections:  # noqa: ASYNC110  # streams unsubscribe as they close
                        await asyncio.sleep(0.01)
        await super().shutdown(sockets)


@app.command("worker")
def run_worker(
    once: Annotated[bool, typer.Option("--once", help="run the due jobs, then exit")] = False,
) -> None:
    """Run the job worker alone (no API); stops gracefully on SIGTERM/SIGINT."""
    asyncio.run(_run_worker(once=once))


async def _run_worker(*, once: bool) -> None:
    import signal

    import httpx
    from redis.asyncio import Redis

    from app.bot.hub import build_hub
    from app.core.config import load_settings
    from app.core.logging import configure_logging
    from app.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
    from app.db import migrate as migrations
    from app.db.session import Database
    from app.jobs.wake import AUTH_CHANNEL, SLA_CHANNEL, RedisSignal, clear_everywhere
    from app.llm.client import LlmClient
    from app.llm.usage import database_sink
    from app.main import build_job_worker
    from app.services.assignment import AutoAssigner
    from app.services.attachment import AttachmentLinks, AttachmentService
    from app.services.auth import AUTH_MODELS
    from app.services.knowledge_base import KnowledgeBase
    from app.services.qq_identity import QQIdentityService
    from app.services.search import build_search_index
    from app.services.sla import POLICY_MODELS, SlaService
    from app.services.storage import build_storage
    from app.services.ticket import TicketService
    from app.services.webhook import WebhookService

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if settings.auto_migrate:
        await migrations.upgrade(settings.resolved_database_url)
    db = Database(
        settings.resolved_database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    http = httpx.AsyncClient()
    sla = SlaService(settings.sla, timezone=settings.tz)
    sla.load_file()
    search = build_search_index(settings.search)
    tickets = TicketService(settings.tickets, timezone=settings.tz, search=search, assigner=AutoAssigner(), sla=sla)
    # The same AI as the API processes: this worker runs the triage and QQ assistant jobs.
    llm = LlmClient(settings.llm, usage=database_sink(db))
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    limiter: RateLimiter = RedisRateLimiter(redis) if redis is not None else MemoryRateLimiter()
    links = AttachmentLinks(settings.signing_key(), ttl_seconds=settings.attachments.url_ttl_seconds)
    attachments = AttachmentService(
        settings.attachments,
        storage=build_storage(settings.attachments, data_dir=settings.data_dir, http=http),
        links=links,
    )
    # This process holds no bot: it handles QQ events and notifications, and the AI's jobs; the
    # sends are routed to the API processes that hold the bots' connections.
    worker = build_job_worker(
        settings,
        db,
        hub=build_hub(settings.onebot),
        tickets=tickets,
        webhooks=WebhookService(settings.webhooks, http),
        identities=QQIdentityService(settings.signing_key(), limiter=limiter),
        attachments=attachments,
        http=http,
        llm=llm,
        kb=KnowledgeBase(search),
        limiter=limiter,
        handles_unrouted=True,
    )
    signal_ = RedisSignal(redis) if redis is not None else None
    # This worker creates tickets too (QQ): its SLA policies hear the API processes' changes.
    sla_signal = clear_everywhere(db, POLICY_MODELS, sla.policies, redis, channel=SLA_CHANNEL, what="SLA change")
    listeners: list[asyncio.Task[None]] = []
    try:
        if once:
            count = await worker.run_until_idle()
            typer.echo(f"ran {count} job(s)")
            return
        if sla_signal is not None:
            listeners.append(asyncio.create_task(sla_signal.listen(sla.policies.forget)))
        if signal_ is not None:  # enqueues in the API processes wake this worker at once
            db.commit_hooks.append(signal_.notify)
            listeners.append(asyncio.create_task(signal_.listen(worker.wake)))
            # Jobs change users too (a QQ binding moved): the API processes' caches must hear it.
            auth_signal = RedisSignal(signal_.redis, channel=AUTH_CHANNEL, what="auth change")
            db.on_commit_changing(AUTH_MODELS, auth_signal.notify)
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(worker.run_forever())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
        await task
    finally:
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        if redis is not None:
            await redis.aclose()
        await llm.aclose()
        await http.aclose()
        await db.dispose()


@app.command()
def migrate() -> None:
    """Apply database migrations and exit."""
    from app.core.config import load_settings
    from app.db import migrate as migrations

    settings = load_settings()
    asyncio.run(migrations.upgrade(settings.resolved_database_url))
    typer.echo(f"database at {', '.join(sorted(migrations.known_heads()))}")


@app.command()
def reindex(
    batch: Annotated[int, typer.Option(min=1, max=5000, help="tickets per transaction")] = 200,
) -> None:
    """Rebuild the search index from the tickets and messages, and re-segment the knowledge
    base's articles (after an upgrade or a user-dictionary change; safe while the API serves)."""
    written, articles = asyncio.run(_reindex(batch))
    typer.echo(f"{written} search document(s) written, {articles} knowledge-base article(s) re-segmented")


async def _reindex(batch: int) -> tuple[int, int]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from sqlalchemy import func, select

    from app.core.config import load_settings
    from app.db import migrate as migrations
    from app.db.session import Database
    from app.models.ticket import Ticket
    from app.services.knowledge_base import KnowledgeBase
    from app.services.search import build_search_index

    settings = load_settings()
    await migrations.upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    search = build_search_index(settings.search)
    columns = (TextColumn("重建索引 reindexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        await search.load()
        async with db.transaction(write=False) as session:
            total = (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        written, next_id = 0, 1
        with Progress(*columns) as progress:
            task = progress.add_task("reindex", total=total)
            while True:
                # One short transaction per batch: the app's own writes interleave; each
                # document is upserted from the text as it is now, so neither side loses.
                async with db.transaction() as session:
                    done = await search.reindex_tickets(session, next_id, batch=batch)
                if done.last_id is None:
                    break
                written += done.documents
                progress.update(task, advance=done.tickets)
                next_id = done.last_id + 1
        return written, await _resegment_articles(db, KnowledgeBase(search), batch)
    finally:
        await db.dispose()


async def _resegment_articles(db: Database, kb: KnowledgeBase, batch: int) -> int:
    articles, next_id = 0, 1
    while True:
        async with db.transaction() as session:
            done = await kb.reindex(session, next_id, batch=batch)
        if done is None:
            return articles
        next_id, articles = done[0] + 1, articles + done[1]


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    display_name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create an admin account (migrating first); does nothing if the username exists."""
    created = asyncio.run(_create_admin(username, password, display_name))
    typer.echo("admin created" if created else "username already exists; nothing changed")
    if not created:
        raise typer.Exit(code=1)


async def _create_admin(username: str, password: str, display_name: str | None) -> bool:
    from pydantic import ValidationError

    from app.core.config import load_settings
    from app.core.security import PasswordHasher
    from app.db import migrate as migrations
    from app.db.session import Database
    from app.services.user import UserService

    settings = load_settings()
    await migrations.upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    try:
        service = UserService(settings.auth, hasher=PasswordHasher(settings.auth))
        async with db.transaction() as session:
            return await service.ensure_admin(session, username=username, password=password, display_name=display_name)
    except ValidationError as exc:
        # Never echo the rejected input: it may be the password.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False, include_url=False)
        )
        raise typer.BadParameter(problems) from None
    finally:
        await db.dispose()


@app.command()
def openapi() -> None:
    """Print the OpenAPI document (JSON)."""
    import secrets

    from pydantic import SecretStr

    from app.core.config import Settings
    from app.main import create_app

    # The document needs no real key and no data directory: build the app with a throwaway one.
    settings = Settings(env="development", log_level="WARNING", secret_key=SecretStr(secrets.token_urlsafe(48)))
    typer.echo(json.dumps(create_app(settings).openapi(), ensure_ascii=False, indent=2))


def main() -> None:
    app()
