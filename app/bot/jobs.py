"""The QQ helpdesk's jobs: handle an inbox event, send a message, call an action.

Sends are routed (`onebot:<self_id>`): only a process holding that bot's connection claims
them, so while the bot is offline they wait, and go out when it is back. A send that failed in
a way that may still have reached QQ (the connection dropped before the answer, a timeout) is
retried, and the possible repeat is counted: delivery is at-least-once, never a silent loss.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from app.bot.assistant import QQ_ASSIST
from app.bot.inbox import QQ_EVENT
from app.bot.media import DownloadFailed, download
from app.bot.outbox import QQ_ACTION, QQ_SEND, queue_part
from app.bot.service import QQ_FETCH_IMAGE, QQHelpdesk
from app.core.config import OneBotSettings
from app.core.errors import AppError
from app.crud import crud_qq, crud_ticket
from app.db.base import utcnow
from app.jobs.worker import Handler, JobRun, PermanentJobError
from app.models.attachment import Attachment
from app.models.qq import InboxStatus
from app.models.user import User
from app.onebot.errors import ActionFailed, ActionTimeout, ConnectionLost, NotConnected
from app.onebot.events import parse_event
from app.onebot.hub import OneBotHub
from app.onebot.message import Message, MessageSegment
from app.services.attachment import AttachmentService
from app.services.ticket import TicketService

log = logging.getLogger(__name__)


def bot_job_handlers(
    settings: OneBotSettings,
    helpdesk: QQHelpdesk,
    hub: OneBotHub,
    *,
    tickets: TicketService,
    attachments: AttachmentService,
    http: httpx.AsyncClient,
) -> dict[str, Handler]:
    async def handle_event(run: JobRun) -> None:
        try:
            async with run.db.transaction() as session:
                row = await crud_qq.get_inbox(session, run.payload["inbox_id"])
                if row is None or row.status != InboxStatus.pending:
                    return  # done by an earlier run whose acknowledgement was lost
                await helpdesk.handle(session, parse_event(row.payload), inbox_id=row.id)
                row.status, row.processed_at = InboxStatus.done, utcnow()
        except Exception as exc:
            if not run.is_last_attempt:
                raise  # retried with backoff; the event waits in the inbox
            await _give_up(run, helpdesk, exc)
            raise PermanentJobError(f"gave up on inbox event {run.payload['inbox_id']}: {exc!r}") from exc

    async def send(run: JobRun) -> None:
        payload = run.payload
        bot = hub.bot(payload["self_id"])
        message = Message.parse(payload["message"])
        group_id = payload.get("group_id")
        try:
            if group_id is not None:
                message_id = await _send_group(bot, group_id, message)
            else:
                message_id = await _send_private(bot, payload, message)
        except (ConnectionLost, ActionTimeout) as exc:
            hub.metrics.inc("sends_maybe_repeated", payload["self_id"])
            log.warning("QQ send %s may have reached QQ before failing (%s); retrying", run.id, exc)
            raise
        except NotConnected:
            raise  # the bot went offline after this process claimed the job: retried later
        except _Undeliverable as exc:
            await _mark_undeliverable(run, tickets, payload, str(exc))
            raise PermanentJobError(f"undeliverable: {exc}") from None
        async with run.db.transaction() as session:
            if payload.get("ticket_id") is not None and message_id is not None:
                await crud_qq.record_sent(
                    session,
                    self_id=payload["self_id"],
                    message_id=str(message_id),
                    ticket_id=payload["ticket_id"],
                    group_id=group_id if group_id is not None else payload.get("fallback_group_id"),
                )
            if payload.get("rest"):
                target = {key: value for key, value in payload.items() if key not in ("message", "rest", "index")}
                await queue_part(session, target, payload["rest"], index=payload.get("index", 0) + 1)

    async def call(run: JobRun) -> None:
        payload = run.payload
        try:
            await hub.bot(payload["self_id"]).call(payload["action"], **payload["params"])
        except ActionFailed as exc:
            raise PermanentJobError(str(exc)) from None

    async def fetch_image(run: JobRun) -> None:
        """Download an image of a QQ ticket and attach it to the ticket's first message."""
        payload = run.payload
        try:
            data = await download(
                http, payload["url"], max_bytes=settings.image_max_bytes, seconds=settings.image_timeout_seconds
            )
        except DownloadFailed as exc:
            if exc.permanent or run.is_last_attempt:
                await _note_image_failure(run, tickets, payload, str(exc))
                raise PermanentJobError(str(exc)) from None
            raise
        async with run.db.transaction() as session:
            uploader = await session.get(User, payload["uploader_id"])
            if uploader is None:
                raise PermanentJobError("the uploader is gone")
            try:
                async with session.begin_nested():
                    attachment: Attachment = await attachments.upload(
                        session, uploader=uploader, filename=payload["name"], data=data
                    )
                    attachment.ticket_id, attachment.message_id = payload["ticket_id"], payload["message_id"]
            except AppError as exc:  # not a type we accept, or over the attachment limit
                ticket = await crud_ticket.reload(session, payload["ticket_id"])
                await tickets.record_attachment_failure(session, ticket, name=payload["name"], reason=exc.code)

    handlers: dict[str, Handler] = {QQ_EVENT: handle_event, QQ_SEND: send, QQ_ACTION: call, QQ_FETCH_IMAGE: fetch_image}
    if helpdesk.assistant is not None:
        # Registered even while the feature is off: a queued question still gets its answer
        # or, with no provider, its ticket.
        handlers[QQ_ASSIST] = helpdesk.assistant.answer
    return handlers


class _Undeliverable(Exception):
    pass


async def _send_group(bot: Any, group_id: int, message: Message) -> Any:
    try:
        return await bot.send_group_msg(group_id, message)
    except ActionFailed as refused:  # not in that group any more, muted...
        raise _Undeliverable(refused.wording or f"retcode {refused.retcode}") from None


async def _send_private(bot: Any, payload: dict[str, Any], message: Message) -> Any:
    """A private message; refused (NapCat and LLOneBot refuse non-friends), an @ in the group
    the ticket came from; with no such group, undeliverable."""
    try:
        return await bot.send_private_msg(payload["user_id"], message)
    except ActionFailed as refused:
        fallback = payload.get("fallback_group_id")
        if fallback is None:
            raise _Undeliverable(refused.wording or f"retcode {refused.retcode}") from None
        in_group = Message([MessageSegment.at(payload["user_id"]), MessageSegment.text(" "), *message])
        try:
            return await bot.send_group_msg(fallback, in_group)
        except ActionFailed as also_refused:
            raise _Undeliverable(also_refused.wording or f"retcode {also_refused.retcode}") from None


async def _give_up(run: JobRun, helpdesk: QQHelpdesk, exc: Exception) -> None:
    """The last attempt failed too: the inbox row says so, and the person gets an apology
    instead of silence (never the error itself)."""
    async with run.db.transaction() as session:
        row = await crud_qq.get_inbox(session, run.payload["inbox_id"])
        if row is None:
            return
        row.status, row.processed_at, row.error = InboxStatus.failed, utcnow(), repr(exc)[:2000]
        await helpdesk.apologize(session, parse_event(row.payload), inbox_id=row.id)


async def _note_image_failure(run: JobRun, tickets: TicketService, payload: dict[str, Any], reason: str) -> None:
    async with run.db.transaction() as session:
        ticket = await crud_ticket.reload(session, payload["ticket_id"])
        await tickets.record_attachment_failure(session, ticket, name=payload["name"], reason=reason)


async def _mark_undeliverable(run: JobRun, tickets: TicketService, payload: dict[str, Any], reason: str) -> None:
    """Visible to agents on the ticket, and never retried forever."""
    ticket_id = payload.get("ticket_id")
    log.warning("QQ message to %s undeliverable: %s", payload.get("user_id"), reason)
    if ticket_id is None:
        return
    async with run.db.transaction() as session:
        ticket = await crud_ticket.reload(session, ticket_id)
        recipient = str(payload.get("user_id") or payload.get("group_id"))
        await tickets.record_notification_failure(session, ticket, channel="qq", recipient=recipient, reason=reason)
