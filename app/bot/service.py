"""The QQ helpdesk: what the bot does with a QQ message, and what it tells people about tickets.

Inbound events arrive from the inbox (`app/bot/inbox.py`) in a job, with a database session;
every answer is queued through `app/bot/outbox.py` in the same transaction, so a handled event
and its replies commit together or not at all. A command runs inside a savepoint: a refused
command (unknown ticket, not yours, closed) leaves nothing half-written and gets a clear
Chinese reply; nothing reaches QQ users as a stack trace. Other text in a private chat goes to
the AI assistant (`app/bot/assistant.py`) when AI is on, else gets the help.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.bot import outbox
from app.bot.assistant import QQAssistant
from app.bot.commands import Command, CommandError, parse_command
from app.bot.media import image_source
from app.bot.texts import channel_name, priority_name, status_name, text
from app.core.config import OneBotSettings
from app.core.errors import AppError
from app.core.i18n import Lang, error_text
from app.crud import crud_qq, crud_ticket
from app.jobs.queue import enqueue
from app.models.ticket import Channel, Priority, Ticket, TicketEvent, TicketStatus
from app.models.user import Role, User
from app.onebot.events import Event, FriendRequestEvent, GroupMessageEvent, MessageEvent
from app.onebot.message import Message
from app.schemas.ticket import MessageCreate, RatingCreate, TicketCreate, TicketUpdate
from app.services.qq_identity import QQIdentityService
from app.services.ticket import TicketService

log = logging.getLogger(__name__)

SHOWN_MESSAGES = 3
LISTED_TICKETS = 10
QQ_FETCH_IMAGE = "qq.fetch_image"
MAX_IMAGES = 9  # what one QQ message can carry


@dataclass(frozen=True)
class Chat:
    """Where a message came from, hence where the answer goes."""

    self_id: int
    user_id: int
    group_id: int | None  # None: a private chat
    key: str  # idempotency prefix of the answers (one inbox event, one set of answers)
    lang: Lang = "zh"

    @property
    def in_group(self) -> bool:
        return self.group_id is not None


class QQHelpdesk:
    def __init__(
        self,
        settings: OneBotSettings,
        *,
        tickets: TicketService,
        identities: QQIdentityService,
        assistant: QQAssistant | None = None,
    ) -> None:
        self.settings = settings
        self.tickets = tickets
        self.identities = identities
        self.assistant = assistant  # free text in a private chat, when AI is on
        self.agent_groups = frozenset(settings.agent_groups)
        self.ignored_users = frozenset(settings.ignored_users)

    # --- inbound ----------------------------------------------------------------------------

    async def handle(self, session: AsyncSession, event: Event, *, inbox_id: int) -> None:
        key = f"in:{inbox_id}"
        if isinstance(event, FriendRequestEvent):
            await self._friend_request(session, event, key)
        elif isinstance(event, MessageEvent) and not self._from_a_bot(event):
            group_id = event.group_id if isinstance(event, GroupMessageEvent) else None
            chat = Chat(event.self_id, event.user_id, group_id, key)
            if group_id is not None and group_id in self.agent_groups:
                await self._agent_group_message(session, event, chat)
            elif group_id is None or await self._addressed_to_bot(session, event):
                await self._customer_message(session, event, chat)

    async def apologize(self, session: AsyncSession, event: Event, *, inbox_id: int) -> None:
        """Handling `event` failed for good: say so rather than stay silent."""
        if isinstance(event, MessageEvent) and not self._from_a_bot(event):
            group_id = event.group_id if isinstance(event, GroupMessageEvent) else None
            chat = Chat(event.self_id, event.user_id, group_id, f"in:{inbox_id}:failed")
            await self._reply(session, chat, text("internal_error", chat.lang))

    def _from_a_bot(self, event: MessageEvent) -> bool:
        """Our own account (some implementations report it as a message) or another bot."""
        return event.user_id == event.self_id or event.user_id in self.ignored_users

    async def _friend_request(self, session: AsyncSession, event: FriendRequestEvent, key: str) -> None:
        if self.settings.auto_approve_friends:
            params = {"flag": event.flag, "approve": True}
            await outbox.queue_action(
                session, key=key, self_id=event.self_id, action="set_friend_add_request", params=params
            )

    async def _customer_message(self, session: AsyncSession, event: MessageEvent, chat: Chat) -> None:
        user = await self.identities.user_for_qq(session, event.user_id, nickname=event.sender.nickname)
        try:
            command = parse_command(event.message, self_id=event.self_id)
        except CommandError as exc:
            await self._reply(session, chat, text(exc.code, chat.lang))
            return
        if command is not None and command.english:
            chat = replace(chat, lang="en")  # typed an English alias: answered in English
        if command is None:
            ticket_id = await self._quoted_ticket(session, event)
            if ticket_id is None:
                question = event.message.plain_text().strip()
                assistant = self.assistant
                if assistant is not None and assistant.enabled and not chat.in_group and question and user.is_active:
                    await assistant.receive(
                        session,
                        self_id=chat.self_id,
                        user=user,
                        qq_user_id=chat.user_id,
                        message=question,
                        key=chat.key,
                    )
                    return
                await self._reply(session, chat, text("help_group" if chat.in_group else "help", chat.lang))
                return
            body = event.message.plain_text().strip()
            await self._run(session, chat, lambda: self._append(session, ticket_id, user, body, internal=False))
            return
        await self._run(session, chat, lambda: self._command(session, chat, user, command, event), command.ticket)

    async def _agent_group_message(self, session: AsyncSession, event: MessageEvent, chat: Chat) -> None:
        try:
            command = parse_command(event.message, self_id=event.self_id)
        except CommandError as exc:
            await self._reply(session, chat, text(exc.code, chat.lang))
            return
        quoted = await self._quoted_ticket(session, event) if command is None else None
        if command is None and quoted is None:
            return  # agents talking among themselves
        user = await crud_qq.bound_user(session, event.user_id)
        if user is None or not user.is_active or user.role == Role.customer:
            await self._reply(session, chat, text("not_agent", chat.lang))
            return
        if command is not None:
            if command.english:
                chat = replace(chat, lang="en")
            await self._run(session, chat, lambda: self._command(session, chat, user, command, event), command.ticket)
        elif quoted is not None:
            # In the agent group a quote-reply is a note among agents; only /回复 reaches the customer.
            body = event.message.plain_text().strip()
            await self._run(session, chat, lambda: self._append(session, quoted, user, body, internal=True))

    # --- commands ---------------------------------------------------------------------------

    async def _command(
        self, session: AsyncSession, chat: Chat, user: User, command: Command, event: MessageEvent
    ) -> str:
        lang = chat.lang
        staff = user.role != Role.customer
        match command.name:
            case "help":
                return text("help_agent" if staff and chat.group_id in self.agent_groups else "help", lang)
            case "new":
                return await self._new_ticket(session, chat, user, command)
            case "list":
                return await self._list(session, user, lang)
            case "show":
                return await self._show(session, user, self._number(command), lang)
            case "reply":
                ticket = await crud_ticket.get_readable_by_number(session, self._number(command), user)
                await self.tickets.add_message(
                    session, ticket, MessageCreate(body=command.body), actor=user, channel=Channel.qq
                )
                return text("reply_added", lang, number=ticket.number)
            case "note" if staff:
                ticket = await crud_ticket.get_readable_by_number(session, self._number(command), user)
                await self.tickets.add_message(
                    session, ticket, MessageCreate(body=command.body, internal=True), actor=user, channel=Channel.qq
                )
                return text("note_added", lang, number=ticket.number)
            case "close":
                ticket = await crud_ticket.get_readable_by_number(session, self._number(command), user)
                if ticket.status == TicketStatus.closed:
                    return text("ticket_closed_already", lang, number=ticket.number)
                await self.tickets.update(session, ticket, TicketUpdate(status=TicketStatus.closed), actor=user)
                return text("ticket_closed", lang, number=ticket.number)
            case "rate":
                ticket = await crud_ticket.get_readable_by_number(session, self._number(command), user)
                body = RatingCreate(score=command.score or 0, comment=command.body or None)
                await self.tickets.rate(session, ticket, body, actor=user)
                return text("rating_saved", lang, number=ticket.number, score=body.score)
            case "bind":
                result = await self.identities.bind(
                    session,
                    qq_user_id=chat.user_id,
                    code=command.code,
                    nickname=event.sender.nickname,
                    tickets=self.tickets,
                )
                reply = text("bind_ok", lang, username=result.user.username)
                if result.moved_tickets:
                    reply += "\n" + text("bind_moved", lang, count=result.moved_tickets)
                return reply
            case "claim" if staff:
                ticket = await crud_ticket.get_readable_by_number(session, self._number(command), user)
                await self.tickets.update(session, ticket, TicketUpdate(assignee_id=user.id), actor=user)
                return text("claimed", lang, number=ticket.number, agent=user.display_name)
            case "assign" if staff:
                ticket = await crud_ticket.get_readable_by_number(session, self._number(command), user)
                agent = await crud_qq.bound_user(session, command.mentions[0])
                if agent is None or agent.role == Role.customer or not agent.is_active:
                    return text("not_agent_target", lang)
                await self.tickets.update(session, ticket, TicketUpdate(assignee_id=agent.id), actor=user)
                return text("assigned", lang, number=ticket.number, agent=agent.display_name)
            case _:
                return text("not_agent", lang)

    async def _new_ticket(self, session: AsyncSession, chat: Chat, user: User, command: Command) -> str:
        body = command.body or command.title
        ticket = await self.tickets.create(
            session, TicketCreate(title=command.title, body=body), actor=user, channel=Channel.qq
        )
        await crud_qq.set_origin(
            session, ticket_id=ticket.id, self_id=chat.self_id, qq_user_id=chat.user_id, group_id=chat.group_id
        )
        await self._fetch_images(session, ticket, user, command)
        return text("ticket_created", chat.lang, number=ticket.number, title=ticket.title)

    async def _fetch_images(self, session: AsyncSession, ticket: Ticket, user: User, command: Command) -> None:
        """Each image becomes an attachment of the first message, downloaded in a job; one
        without a usable link is noted on the ticket at once."""
        if not command.images:
            return
        first = (await crud_ticket.list_messages(session, ticket.id, include_internal=False))[0]
        for index, segment in enumerate(command.images[:MAX_IMAGES]):
            url, name = image_source(segment)
            if url is None:
                await self.tickets.record_attachment_failure(session, ticket, name=name, reason="no download link")
                continue
            payload = {
                "ticket_id": ticket.id,
                "message_id": first.id,
                "uploader_id": user.id,
                "url": url,
                "name": name,
            }
            await enqueue(
                session, QQ_FETCH_IMAGE, payload, idempotency_key=f"qq:image:{ticket.id}:{index}", max_attempts=3
            )

    async def _list(self, session: AsyncSession, user: User, lang: Lang) -> str:
        tickets = await crud_ticket.open_for(session, user, limit=LISTED_TICKETS)
        if not tickets:
            return text("ticket_list_empty", lang)
        lines = [text("ticket_list", lang)]
        lines += [
            text("ticket_list_item", lang, number=t.number, status=status_name(t.status, lang), title=t.title)
            for t in tickets
        ]
        return "\n".join(lines)

    async def _show(self, session: AsyncSession, user: User, number: str, lang: Lang) -> str:
        ticket = await crud_ticket.get_readable_by_number(session, number, user)
        messages = await crud_ticket.list_messages(session, ticket.id, include_internal=False)
        lines = [
            text(
                "ticket_show",
                lang,
                number=ticket.number,
                title=ticket.title,
                status=status_name(ticket.status, lang),
                priority=priority_name(ticket.priority, lang),
                updated=self._local_time(ticket.updated_at),
            )
        ]
        for message in messages[-SHOWN_MESSAGES:]:
            who = message.author.display_name if message.author_id != ticket.requester_id else "你"
            when = self._local_time(message.created_at)
            lines.append(text("ticket_show_message", lang, who=who, when=when, text=message.body))
        return "\n".join(lines)

    async def _append(self, session: AsyncSession, ticket_id: int, user: User, body: str, *, internal: bool) -> str:
        ticket = await crud_ticket.get_readable(session, ticket_id, user, for_update=True)
        if not body:
            return text("usage_reply", "zh")
        await self.tickets.add_message(
            session, ticket, MessageCreate(body=body, internal=internal), actor=user, channel=Channel.qq
        )
        return text("note_added" if internal else "reply_added", "zh", number=ticket.number)

    # --- outbound: notifications ------------------------------------------------------------

    async def notify(self, session: AsyncSession, event: TicketEvent) -> None:
        """Called for every timeline event (from the dispatch job): tell QQ who needs to know."""
        if event.type == "ticket.created":
            await self._post_to_agents(session, event, "notify_new_ticket_agents")
        elif event.type == "ticket.updated" and (event.data.get("priority") or [None, None])[1] == Priority.urgent:
            await self._post_to_agents(session, event, "notify_urgent_agents")
        elif event.type in ("sla.warning", "sla.breached"):
            key = "notify_sla_warning" if event.type == "sla.warning" else "notify_sla_breached"
            due = event.data.get("due_at")
            await self._post_to_agents(
                session,
                event,
                key,
                target=text(f"sla_target_{event.data.get('target')}", "zh"),
                due=self._local_time(datetime.fromisoformat(due)) if due else "—",
            )
        if event.type == "ticket.message_added":
            await self._notify_reply(session, event)
        elif event.type == "ticket.updated" and "status" in event.data:
            await self._notify_status(session, event)

    async def _notify_reply(self, session: AsyncSession, event: TicketEvent) -> None:
        message = await crud_ticket.get_message(session, event.data["message_id"])
        ticket = await crud_ticket.reload(session, event.ticket_id)
        if message.internal or message.author_id == ticket.requester_id:
            return  # the requester knows what they wrote
        body = text(
            "notify_reply",
            "zh",
            number=ticket.number,
            title=ticket.title,
            who=message.author.display_name,
            text=message.body,
        )
        await self._tell_requester(session, ticket, event, body)

    async def _notify_status(self, session: AsyncSession, event: TicketEvent) -> None:
        ticket = await crud_ticket.reload(session, event.ticket_id)
        if event.actor_id == ticket.requester_id:
            return
        status = status_name(TicketStatus(event.data["status"][1]), "zh")
        body = text("notify_status", "zh", number=ticket.number, title=ticket.title, status=status)
        await self._tell_requester(session, ticket, event, body)

    async def _tell_requester(self, session: AsyncSession, ticket: Ticket, event: TicketEvent, body: str) -> None:
        if ticket.requester.notification_preferences.get("qq") is False:
            return  # muted by the user
        # The requester's current QQ binding decides (an unbound user hears nothing in QQ); the
        # ticket's origin says which bot and which group to fall back to.
        qq_user_id = await crud_qq.qq_of_user(session, ticket.requester_id)
        if qq_user_id is None:
            return
        origin = await crud_qq.get_origin(session, ticket.id)
        if origin is not None and origin.qq_user_id == qq_user_id:
            self_id, group_id = origin.self_id, origin.group_id
        elif self.settings.bot_id is not None:
            self_id, group_id = self.settings.bot_id, None
        else:
            return  # no bot to speak for us
        await outbox.queue_text(
            session,
            key=f"notify:{event.id}:{qq_user_id}",
            self_id=self_id,
            user_id=qq_user_id,
            text=body,
            ticket_id=ticket.id,
            fallback_group_id=group_id,
            max_chars=self.settings.message_max_chars,
        )

    async def _post_to_agents(self, session: AsyncSession, event: TicketEvent, key: str, **values: str) -> None:
        if not self.agent_groups:
            return
        ticket = await crud_ticket.reload(session, event.ticket_id)
        origin = await crud_qq.get_origin(session, ticket.id)
        self_id = self.settings.bot_id or (origin.self_id if origin is not None else None)
        if self_id is None:
            return
        body = text(
            key,
            "zh",
            number=ticket.number,
            title=ticket.title,
            requester=ticket.requester.display_name,
            priority=priority_name(ticket.priority, "zh"),
            channel=channel_name(ticket.channel, "zh"),
            **values,
        )
        for group_id in sorted(self.agent_groups):
            await outbox.queue_text(
                session,
                key=f"agents:{event.id}:{group_id}",
                self_id=self_id,
                group_id=group_id,
                text=body,
                ticket_id=ticket.id,
                max_chars=self.settings.message_max_chars,
            )

    # --- helpers ----------------------------------------------------------------------------

    async def _run(
        self, session: AsyncSession, chat: Chat, action: Callable[[], Awaitable[str]], number: str | None = None
    ) -> None:
        """Run a command in a savepoint and answer: its result, or why it was refused."""
        try:
            async with session.begin_nested():
                answer = await action()
        except AppError as exc:
            answer = self._refusal(exc, chat.lang, number or "")
        await self._reply(session, chat, answer)

    def _refusal(self, exc: AppError, lang: Lang, number: str) -> str:
        mapping = {
            "ticket_not_found": "ticket_not_found",
            "ticket_closed": "ticket_closed_already",
            "rating_not_allowed": "rate_not_allowed",
        }
        key = mapping.get(exc.code)
        if key is not None:
            return text(key, lang, number=number)
        if exc.status >= 500:
            log.error("QQ command failed: %s", exc.code)
            return text("internal_error", lang)
        return error_text(exc.code, lang)

    async def _reply(self, session: AsyncSession, chat: Chat, body: str) -> None:
        await outbox.queue_text(
            session,
            key=chat.key,
            self_id=chat.self_id,
            user_id=None if chat.in_group else chat.user_id,
            group_id=chat.group_id,
            mention=chat.user_id if chat.in_group else None,
            text=body,
            max_chars=self.settings.message_max_chars,
        )

    async def _quoted_ticket(self, session: AsyncSession, event: MessageEvent) -> int | None:
        for segment in event.message.of_type("reply"):
            quoted = str(segment.data.get("id", ""))
            if quoted:
                return await crud_qq.ticket_for_sent(session, self_id=event.self_id, message_id=quoted)
        return None

    async def _addressed_to_bot(self, session: AsyncSession, event: MessageEvent) -> bool:
        """In a customer group the bot answers only when @-mentioned, or when someone
        quote-replies to one of its ticket messages."""
        message: Message = event.message
        if any(str(s.data.get("qq")) == str(event.self_id) for s in message.of_type("at")):
            return True
        return await self._quoted_ticket(session, event) is not None

    @staticmethod
    def _number(command: Command) -> str:
        return command.ticket or ""

    def _local_time(self, moment: datetime) -> str:
        return moment.astimezone(self.tickets.timezone).strftime("%m-%d %H:%M")
