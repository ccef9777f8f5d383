"""The in-process event bus: timeline events, published after their transaction commits.

A frame carries what visibility needs (the ticket's requester, whether it is internal), so one
in-memory predicate (`visible_to`) decides who receives it: the same rule as
crud_ticket.readable_by plus "customers never see internal events".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from app.models.ticket import TicketEvent
from app.models.user import Role, User


@dataclass(frozen=True)
class Frame:
    id: int
    type: str
    ticket_id: int
    data: dict[str, Any]
    created_at: str
    internal: bool
    requester_id: int

    @classmethod
    def of(cls, event: TicketEvent, *, requester_id: int) -> Frame:
        return cls(
            id=event.id,
            type=event.type,
            ticket_id=event.ticket_id,
            data=dict(event.data),
            created_at=event.created_at.isoformat().replace("+00:00", "Z"),
            internal=event.internal,
            requester_id=requester_id,
        )

    def json(self) -> str:
        """What clients receive: {id, type, ticket_id, data, created_at} (API.md)."""
        body = {
            "id": self.id,
            "type": self.type,
            "ticket_id": self.ticket_id,
            "data": self.data,
            "created_at": self.created_at,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def visible_to(frame: Frame, user: User) -> bool:
    if user.role in (Role.agent, Role.admin):
        return True
    return frame.requester_id == user.id and not frame.internal


CLOSE_SLOW = 4408  # the client fell too far behind
CLOSE_RESUME = 1012  # the fan-out broke: reconnect and resume from the timeline


@dataclass(eq=False)
class Subscription:
    user: User
    # None in the queue is a wake-up: look at close_code.
    queue: asyncio.Queue[Frame | None] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    # Set when the stream must end: the client fell so far behind that its queue overflowed
    # (4408, rather than slowing everyone down), or the cross-process fan-out broke. Either way
    # the client reconnects and resumes from the timeline.
    close_code: int | None = None

    @property
    def overflowed(self) -> bool:
        return self.close_code == CLOSE_SLOW

    def close(self, code: int) -> None:
        self.close_code = code
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def count_for(self, user_id: int) -> int:
        return sum(1 for s in self._subscriptions if s.user.id == user_id)

    def subscribe(self, user: User) -> Subscription:
        subscription = Subscription(user)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, frames: list[Frame]) -> None:
        for frame in frames:
            for subscription in list(self._subscriptions):
                if subscription.close_code is not None or not visible_to(frame, subscription.user):
                    continue
                try:
                    subscription.queue.put_nowait(frame)
                except asyncio.QueueFull:
                    subscription.close_code = CLOSE_SLOW

    def close_all(self, code: int) -> None:
        for subscription in list(self._subscriptions):
            subscription.close(code)

    @property
    def connections(self) -> int:
        return len(self._subscriptions)
