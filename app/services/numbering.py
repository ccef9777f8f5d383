"""Ticket numbers: `HELPDESK_TICKETS__NUMBER_FORMAT` split around its `{seq}` field, so that
PostgreSQL can write a new ticket's number in the statement that takes the day's counter
(crud_ticket.take_number): one round trip, and the counter row locked for one statement less.
A format whose `{seq}` is not a plain or zero-padded integer is rendered in Python instead."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

_PLAIN_OR_ZERO_PADDED = re.compile(r"(0\d+)?d?")


@dataclass(frozen=True)
class NumberShape:
    prefix: str  # the format before {seq}, its {date} rendered
    width: int  # zero padding of the counter ({seq:04d}: 4); wider counters are not cut
    suffix: str

    def render(self, seq: int) -> str:
        """What `format` gives for a counter value (the SQL side writes the same)."""
        return f"{self.prefix}{str(seq).zfill(self.width)}{self.suffix}"


@lru_cache(maxsize=16)
def number_shape(number_format: str, day: date) -> NumberShape | None:
    """The format for `day` as prefix, zero padding and suffix; None when `{seq}` appears more
    than once, converted or with any other format spec."""
    parts = list(string.Formatter().parse(number_format))
    at = [index for index, (_, field, _, _) in enumerate(parts) if field == "seq"]
    if len(at) != 1:
        return None
    literal, _, spec, conversion = parts[at[0]]
    if conversion or not _PLAIN_OR_ZERO_PADDED.fullmatch(spec or ""):
        return None
    before = "".join(_source(part) for part in parts[: at[0]]) + _escaped(literal)
    after = "".join(_source(part) for part in parts[at[0] + 1 :])
    shape = NumberShape(before.format(date=day), int((spec or "").rstrip("d") or 0), after.format(date=day))
    # Belt and braces: the split must give exactly what the whole format gives.
    if any(shape.render(seq) != number_format.format(date=day, seq=seq) for seq in (1, 10**shape.width + 7)):
        return None
    return shape


def _source(part: tuple[str, str | None, str | None, str | None]) -> str:
    """A parsed piece of a format string written back as format source."""
    literal, field, spec, conversion = part
    if field is None:
        return _escaped(literal)
    return f"{_escaped(literal)}{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"


def _escaped(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")
