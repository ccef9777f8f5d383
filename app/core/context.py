"""What the lifespan builds and the request handlers share: one object on app.state."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from app.core.config import Settings
from app.core.metrics import AppMetrics
from app.core.net import TrustedProxies
from app.core.ratelimit import RateLimiter
from app.db.session import Database
from app.llm.client import LlmClient
from app.onebot.hub import OneBotHub
from app.realtime.streams import RealtimeService
from app.services.attachment import AttachmentLinks, AttachmentService
from app.services.auth import AuthService
from app.services.knowledge_base import KnowledgeBase
from app.services.qq_identity import QQIdentityService
from app.services.search import SearchIndex
from app.services.sla import SlaService
from app.services.ticket import TicketService
from app.services.user import UserService
from app.services.webhook import WebhookService
from app.services.wechat import WeChatClient


@dataclass
class AppContext:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    redis: Redis | None
    limiter: RateLimiter
    proxies: TrustedProxies
    auth: AuthService
    users: UserService
    wechat: WeChatClient
    tickets: TicketService
    sla: SlaService
    search: SearchIndex
    kb: KnowledgeBase
    links: AttachmentLinks
    webhooks: WebhookService
    realtime: RealtimeService
    attachments: AttachmentService
    onebot: OneBotHub
    qq_identities: QQIdentityService
    llm: LlmClient
    metrics: AppMetrics
