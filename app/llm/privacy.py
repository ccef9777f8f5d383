"""Personal data masked before any text leaves the process for an LLM provider.

Ticket text is full of what people type to a helpdesk: mobile numbers, ID-card numbers (to
reset a campus account), email addresses. None of it helps a model triage or summarise, and
none of it may reach a third party. `Masker.mask` replaces each with a placeholder the model
can still reason about ("[手机号]"), before the prompt is built.

Patterns err on the side of masking: an 18-character ID-card number is masked by its shape
(region, a plausible birth date, a check character) without verifying the checksum, since a
mistyped number is still someone's number. Digits that run on into longer digit strings
(order numbers, error codes such as 0x0000007B) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Not preceded or followed by another digit (or letter, for the ID's check character).
_EDGE_BEFORE = r"(?<![0-9A-Za-z])"
_EDGE_AFTER = r"(?![0-9A-Za-z])"

_ID_CARD = re.compile(
    _EDGE_BEFORE + r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]" + _EDGE_AFTER
)
# Mainland mobile numbers, with an optional +86 / 86 / 0086 and the spaces or hyphens people
# type between the groups (138 0013 8000, 138-0013-8000).
_MOBILE = re.compile(_EDGE_BEFORE + r"(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _EDGE_AFTER)
# Landlines with their area code: 010-12345678, 0755 1234 5678, (021)12345678.
_LANDLINE = re.compile(_EDGE_BEFORE + r"(?:\(0\d{2,3}\)|0\d{2,3}[ -])\d{7,8}" + _EDGE_AFTER)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    placeholder: str


# Order matters: the ID card before phone numbers (an ID contains digit runs a looser pattern
# could take), emails before anything that might match inside them.
BUILT_IN = (
    Rule(_EMAIL, "[邮箱]"),
    Rule(_ID_CARD, "[身份证号]"),
    Rule(_MOBILE, "[手机号]"),
    Rule(_LANDLINE, "[电话]"),
)


class Masker:
    """`mask` text for a provider. `extra_patterns` are an organisation's own (student numbers,
    staff ids), regular expressions compiled at start-up so a broken one stops the start."""

    def __init__(self, *, enabled: bool = True, extra_patterns: Iterable[str] = ()) -> None:
        self.enabled = enabled
        extra = []
        for source in extra_patterns:
            try:
                extra.append(Rule(re.compile(source), "[已隐藏]"))
            except re.error as exc:
                raise ValueError(f"mask pattern {source!r}: {exc}") from exc
        self.rules = (*BUILT_IN, *extra)

    def mask(self, text: str) -> str:
        if not self.enabled:
            return text
        for rule in self.rules:
            text = rule.pattern.sub(rule.placeholder, text)
        return text
