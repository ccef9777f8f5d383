"""The database inbox: the OneBot hub's de-duplication store for the QQ helpdesk.

An event that carries an id (a message, a friend or group request) is written to `qq_inbox`
under its unique `(self_id, post_type, message_id | flag)` together with the job that handles
it, in one transaction, before anything else happens. A repeat delivery (NapCat's double
reports, go-cqhttp's retried POSTs, a retry landing on another process) hits the unique key and
is dropped; a crash mid-handling leaves the job to be retried. Our own `message_sent` events are
not stored: the helpdesk never handles them.
"""

from __future__ import annotations

from collections.abc import Hashable

from app.crud import crud_qq
from app.db.session import Database
from app.jobs.queue import enqueue
from app.onebot.events import Event

QQ_EVENT = "qq.event"
HANDLED_POST_TYPES = frozenset({"message", "request"})


class InboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def first_seen(self, key: Hashable, event: Event) -> bool:
        if event.post_type not in HANDLED_POST_TYPES or event.dedupe_key is None:
            return True
        self_id, post_type, event_key = event.dedupe_key
        async with self.db.transaction() as session:
            inbox_id = await crud_qq.add_inbox(
                session,
                self_id=self_id,
                post_type=post_type,
                event_key=str(event_key),
                payload=event.model_dump(mode="json"),
            )
            if inbox_id is None:
                return False
            await enqueue(session, QQ_EVENT, {"inbox_id": inbox_id}, idempotency_key=f"qq:inbox:{inbox_id}")
        return True
