"""Wiring: the OneBot hub from the application's settings (the library knows no settings), and
the QQ helpdesk plugged into it and into the job worker."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from app.bot.assistant import QQAssistant
from app.bot.inbox import InboxStore
from app.bot.jobs import bot_job_handlers
from app.bot.outbox import routing_key
from app.bot.service import QQHelpdesk
from app.core.config import OneBotSettings
from app.core.ratelimit import RateLimiter
from app.db.session import Database
from app.jobs.handlers import EventListener
from app.jobs.worker import Handler
from app.llm.client import LlmClient
from app.onebot.hub import OneBotConfig, OneBotHub
from app.services.attachment import AttachmentService
from app.services.knowledge_base import KnowledgeBase
from app.services.qq_identity import QQIdentityService
from app.services.ticket import TicketService


def onebot_config(settings: OneBotSettings) -> OneBotConfig:
    return OneBotConfig(
        access_token=settings.access_token.get_secret_value().strip(),
        secret=settings.secret.get_secret_value(),
        forward_urls=tuple(settings.forward_urls),
        http_api_urls=dict(settings.http_api),
        timeout=settings.action_timeout_seconds,
        send_rate=settings.send_rate_per_second,
        send_burst=settings.send_burst,
        event_queue_size=settings.event_queue_size,
        reconnect_min=settings.reconnect_min_seconds,
        reconnect_max=max(settings.reconnect_min_seconds, settings.reconnect_max_seconds),
    )


def build_hub(settings: OneBotSettings) -> OneBotHub:
    """No connection is opened here: `hub.start()` runs in the lifespan."""
    return OneBotHub(onebot_config(settings))


@dataclass
class BotWiring:
    hub: OneBotHub
    helpdesk: QQHelpdesk
    handlers: dict[str, Handler] = field(default_factory=dict)
    listeners: list[EventListener] = field(default_factory=list)

    def routing_keys(self) -> list[str]:
        """The bots this process can speak for: their send jobs are ours to claim."""
        registry = self.hub.registry
        return [routing_key(self_id) for self_id in registry.self_ids() if registry.action_connection(self_id)]


def wire_bot(
    settings: OneBotSettings,
    hub: OneBotHub,
    *,
    db: Database,
    tickets: TicketService,
    identities: QQIdentityService,
    attachments: AttachmentService,
    http: httpx.AsyncClient,
    llm: LlmClient | None = None,
    kb: KnowledgeBase | None = None,
    limiter: RateLimiter | None = None,
) -> BotWiring:
    """Events with an id go through the database inbox; the helpdesk's jobs and notifications
    join the worker. With `llm` and `kb`, free text in a private chat goes to the assistant."""
    hub.dedupe = InboxStore(db)
    assistant = None
    if llm is not None and kb is not None:
        assistant = QQAssistant(
            llm.settings,
            llm=llm,
            kb=kb,
            tickets=tickets,
            limiter=limiter or identities.limiter,
            max_chars=settings.message_max_chars,
        )
    helpdesk = QQHelpdesk(settings, tickets=tickets, identities=identities, assistant=assistant)
    handlers = bot_job_handlers(settings, helpdesk, hub, tickets=tickets, attachments=attachments, http=http)
    return BotWiring(hub, helpdesk, handlers, [helpdesk.notify])
