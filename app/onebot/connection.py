"""A link to one OneBot implementation, whatever carries it (WebSocket either way, HTTP)."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.onebot.events import Event
    from app.onebot.frames import ActionResponse

_ids = itertools.count(1)


class Role(StrEnum):
    """`X-Client-Role` of a reverse connection; forward and HTTP links have fixed roles."""

    UNIVERSAL = "Universal"
    API = "API"
    EVENT = "Event"

    @classmethod
    def from_header(cls, value: str | None) -> Role | None:
        """A missing header means Universal (spec); an unknown value is None (refused)."""
        if not value:
            return cls.UNIVERSAL
        for role in cls:
            if role.value.lower() == value.strip().lower():
                return role
        return None


class Connection(ABC):
    """What the request manager and the registry need of a link.

    `id` is unique per connection object for this process: pending calls are keyed by it, and
    the registry compares objects, not self_ids, when a replaced link cleans up after itself.
    """

    transport: str = "?"

    def __init__(self, *, role: Role, self_id: int | None = None) -> None:
        self.id = next(_ids)
        self.role = role
        self.self_id = self_id
        self.closed = False

    @property
    def carries_actions(self) -> bool:
        return self.role in (Role.UNIVERSAL, Role.API)

    @property
    def uses_echo(self) -> bool:
        """True for sockets (responses matched by echo); False for request/response HTTP."""
        return True

    @abstractmethod
    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one action frame; raise ConnectionLost when the link is gone."""

    @abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    async def exchange(self, action: str, params: dict[str, Any], timeout: float) -> ActionResponse:
        """One request and its response, for links without echo (HTTP)."""
        raise NotImplementedError(f"{self.transport} links match responses by echo")

    def observe(self, event: Event) -> None:  # noqa: B027  (a hook; most links need nothing)
        """Called with every event read from this link (heartbeat watchdogs hook in here)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self.transport} self_id={self.self_id} role={self.role}>"
