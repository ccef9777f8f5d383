"""Connections by `(self_id, role)`: many bots at once, and both reverse roles of one bot.

The spec lets an implementation open an `API` and an `Event` connection for one bot; they
coexist. A new connection with the same `(self_id, role)` replaces the old one, and the old
one's cleanup must not unregister its successor: `unregister` compares the object, not the key.
"""

from __future__ import annotations

from app.onebot.connection import Connection, Role

# Which connection carries a bot's actions, best first: a socket answers faster than HTTP.
_ACTION_ORDER = (Role.API, Role.UNIVERSAL)


class BotRegistry:
    def __init__(self) -> None:
        self._sockets: dict[tuple[int, Role], Connection] = {}
        self._http: dict[int, Connection] = {}

    def register(self, connection: Connection) -> Connection | None:
        """Add a connection whose self_id is known; returns the one it replaced, if any."""
        if connection.self_id is None:
            raise ValueError("register a connection once its self_id is known")
        if not connection.uses_echo:
            previous = self._http.get(connection.self_id)
            self._http[connection.self_id] = connection
            return previous
        key = (connection.self_id, connection.role)
        previous = self._sockets.get(key)
        self._sockets[key] = connection
        return previous if previous is not connection else None

    def unregister(self, connection: Connection) -> bool:
        """Remove `connection` if it is still the registered one (not if it was replaced)."""
        if connection.self_id is None:
            return False
        if connection.uses_echo:
            key = (connection.self_id, connection.role)
            if self._sockets.get(key) is connection:
                del self._sockets[key]
                return True
        elif self._http.get(connection.self_id) is connection:
            del self._http[connection.self_id]
            return True
        return False

    def action_connection(self, self_id: int) -> Connection | None:
        for role in _ACTION_ORDER:
            connection = self._sockets.get((self_id, role))
            if connection is not None and not connection.closed:
                return connection
        return self._http.get(self_id)

    def get(self, self_id: int, role: Role) -> Connection | None:
        return self._sockets.get((self_id, role))

    def self_ids(self) -> set[int]:
        return {self_id for self_id, _ in self._sockets} | set(self._http)

    def connections(self) -> list[Connection]:
        return [*self._sockets.values(), *self._http.values()]
