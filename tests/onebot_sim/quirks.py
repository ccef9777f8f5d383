"""How a simulated OneBot implementation differs from the spec, one switch per real-world quirk.

`Quirks()` is a NapCat-like implementation that follows the spec where NapCat does;
`Quirks.napcat()` and `Quirks.gocq()` bundle the switches the way those two ship by default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Flavor = Literal["napcat", "gocq"]


@dataclass
class Quirks:
    # How message events carry `message`: NapCat defaults to segment arrays, go-cqhttp to CQ strings.
    message_format: Literal["array", "string"] = "array"
    # The Authorization scheme it SENDS (reverse WS, HTTP POST): the spec and NapCat say Bearer,
    # go-cqhttp says Token.
    auth_scheme: Literal["Bearer", "Token"] = "Bearer"
    # Response shape, retcodes, message ids and version info (see `responses.py`).
    flavor: Flavor = "napcat"
    # Send meta_event lifecycle/connect when an event-carrying link opens (some never do).
    lifecycle: bool = True
    # Seconds between heartbeat meta events; None: off. The event's `interval` is in milliseconds.
    heartbeat_interval: float | None = None
    # Seconds before answering each action.
    reply_delay: float = 0.0
    # Answer each action twice (a duplicate echo).
    reply_twice: bool = False
    # Return the echo as a string (JSON text for non-strings).
    stringify_echo: bool = False
    # Leave `echo` out of the response when the request's echo is falsy (0, "", null).
    drop_falsy_echo: bool = False
    # NapCat's reverse WS sends "Authorization: Bearer " even when it has no token.
    empty_bearer: bool = False
    # send_private_msg to a non-friend fails (NapCat, LLOneBot; go-cqhttp without a temp session).
    friends_only: bool = True
    # Send self_id, user_id, group_id, operator_id and target_id as strings.
    ids_as_strings: bool = False
    # Report the bot's own sends back as post_type "message_sent" events (NapCat reportSelfMessage).
    report_self_message: bool = False
    # How a forward WS link with a bad token is refused: "http" answers 401/403 before the upgrade
    # (go-cqhttp); "frame" accepts, sends a failed frame with retcode 1403 and closes (NapCat).
    auth_rejection: Literal["http", "frame"] = "http"

    @classmethod
    def napcat(cls, **overrides: Any) -> Quirks:
        """NapCat's defaults: arrays, Bearer (empty when no token), large message ids."""
        return dataclasses.replace(cls(empty_bearer=True), **overrides)

    @classmethod
    def gocq(cls, **overrides: Any) -> Quirks:
        """go-cqhttp's defaults: CQ strings, `Token` auth, negative message ids, retcodes 100/404."""
        base = cls(message_format="string", auth_scheme="Token", flavor="gocq")
        return dataclasses.replace(base, **overrides)

    @property
    def user_agent(self) -> str:
        # NapCat sends "OneBot/11"; go-cqhttp still sends its coolq-http-api ancestor's name.
        return "CQHttp/4.15.0" if self.flavor == "gocq" else "OneBot/11"
