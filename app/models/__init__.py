"""All tables, imported here so that one metadata serves the app and Alembic."""

from app.db.base import Base
from app.models.assistant import ConversationStatus, QQAssistantConversation
from app.models.attachment import Attachment
from app.models.auth_session import AuthSession, RefreshToken
from app.models.canned_response import CannedResponse
from app.models.category import Category
from app.models.idempotency import IdempotencyRecord
from app.models.job import Job, JobStatus
from app.models.kb import KbArticle, KbStatus
from app.models.llm import LlmCall, TicketAi
from app.models.qq import InboxStatus, QQBindingCode, QQInboxEvent, QQSentMessage, QQTicketOrigin
from app.models.realtime_token import RealtimeToken
from app.models.search import SearchDoc
from app.models.sla import BusinessCalendarRow, SlaPolicy, TicketSla
from app.models.tag import Tag, ticket_tags
from app.models.team import Team, team_members
from app.models.ticket import (
    Channel,
    Message,
    Priority,
    Rating,
    Ticket,
    TicketEvent,
    TicketNumberCounter,
    TicketStatus,
    ticket_watchers,
)
from app.models.user import ExternalIdentity, IdentityProvider, Role, User
from app.models.webhook import DeliveryStatus, Webhook, WebhookDelivery

__all__ = [
    "Attachment",
    "AuthSession",
    "Base",
    "BusinessCalendarRow",
    "CannedResponse",
    "Category",
    "Channel",
    "ConversationStatus",
    "DeliveryStatus",
    "ExternalIdentity",
    "IdempotencyRecord",
    "IdentityProvider",
    "InboxStatus",
    "Job",
    "JobStatus",
    "KbArticle",
    "KbStatus",
    "LlmCall",
    "Message",
    "Priority",
    "QQAssistantConversation",
    "QQBindingCode",
    "QQInboxEvent",
    "QQSentMessage",
    "QQTicketOrigin",
    "Rating",
    "RealtimeToken",
    "RefreshToken",
    "Role",
    "SearchDoc",
    "SlaPolicy",
    "Tag",
    "Team",
    "Ticket",
    "TicketAi",
    "TicketEvent",
    "TicketNumberCounter",
    "TicketSla",
    "TicketStatus",
    "User",
    "Webhook",
    "WebhookDelivery",
    "team_members",
    "ticket_tags",
    "ticket_watchers",
]
