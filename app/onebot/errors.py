"""Typed errors of the OneBot library: callers catch these, never a transport's own errors."""

from __future__ import annotations


class OneBotError(Exception):
    """Base of every error this library raises."""


class ActionFailed(OneBotError):
    """The implementation answered `status: failed` (or an HTTP error status).

    Retcodes differ between implementations (NapCat 1400/1404/1200 over WebSocket, go-cqhttp
    100/404), so callers read `wording`, not the code."""

    def __init__(self, action: str, retcode: int, wording: str = "", data: object = None) -> None:
        self.action = action
        self.retcode = retcode
        self.wording = wording
        self.data = data
        super().__init__(f"{action} failed (retcode {retcode}){': ' + wording if wording else ''}")


class ActionTimeout(OneBotError):
    def __init__(self, action: str, timeout: float) -> None:
        self.action = action
        self.timeout = timeout
        super().__init__(f"{action} got no response within {timeout:g} s")


class ConnectionLost(OneBotError):
    """The connection that carried a call closed before its response arrived.

    The action may or may not have been carried out (at-least-once: a caller that retries can
    repeat it)."""

    def __init__(self, action: str = "", reason: str = "connection closed") -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"{action + ': ' if action else ''}{reason}")


class NotConnected(OneBotError):
    """No connection that can carry actions is known for this bot."""

    def __init__(self, self_id: int) -> None:
        self.self_id = self_id
        super().__init__(f"bot {self_id} has no API connection")


class InvalidFrame(OneBotError):
    """A frame that is not a JSON object: logged and skipped by the connection."""
