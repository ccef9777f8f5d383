"""Parse a QQ message into a helpdesk command (`/报修 ...`, `/new ...`); pure, no I/O.

Only the text decides the command: leading `reply` and `at` segments (the quote and the `@bot`
QQ puts in front of a group message) are skipped, text segments are joined, `at` segments
elsewhere become `mentions` and `image` segments `images`. A user's "[CQ:...]" arrives as text
and stays literal text.

Decisions beyond the brief:

- Command words and structured arguments (ticket numbers, scores, binding codes) are read after
  NFKC normalisation, so `／报修`, `　` and `２０２６...` work. Free text (title, body, comment)
  keeps the user's own characters, only trimmed: NFKC would turn Chinese punctuation such as
  `，（）！` into ASCII in the ticket.
- `、` counts as a slash when a known command word follows: Chinese IMEs type `、` for the `/`
  key. Anything else after `、` is ordinary text (`None`), never an unknown-command error.
- `/报修` needs a title; images alone are `usage_new` (a ticket needs words to be triaged).
  A first line longer than `TITLE_MAX_LENGTH` is cut (with "…") and the full line is kept at
  the start of the body, so nothing the user wrote is lost.
- `/评价` accepts the score as `5`, `5分` or `5星`.
- `/指派 <编号> @某人 [附言]`: text after the ticket number is returned in `body` (the caller
  may keep it as a note); exactly one distinct mention is required.
- `/查看`, `/关闭`, `/认领` take exactly one ticket number; anything more is a usage error, so a
  typo never acts on the wrong ticket.
- `alias` is the normalised word (NFKC, English lower-cased), e.g. `new` for `/NEW`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from app.onebot.message import Message, MessageSegment

CommandName = Literal["help", "new", "list", "show", "reply", "close", "rate", "bind", "claim", "assign", "note"]

TITLE_MAX_LENGTH = 200  # tickets.title is String(200)
TICKET_NUMBER = re.compile(r"[A-Za-z0-9-]{1,32}")
BIND_CODE = re.compile(r"[A-Z0-9]{1,64}")
_SCORE = re.compile(r"([1-5])(?:分|星)?")

# (word, command, english); the longest matching word wins.
_WORDS: tuple[tuple[str, CommandName, bool], ...] = tuple(
    sorted(
        (
            ("帮助", "help", False),
            ("help", "help", True),
            ("报修", "new", False),
            ("new", "new", True),
            ("我的工单", "list", False),
            ("list", "list", True),
            ("查看", "show", False),
            ("show", "show", True),
            ("回复", "reply", False),
            ("reply", "reply", True),
            ("关闭", "close", False),
            ("close", "close", True),
            ("评价", "rate", False),
            ("rate", "rate", True),
            ("绑定", "bind", False),
            ("bind", "bind", True),
            ("认领", "claim", False),
            ("claim", "claim", True),
            ("指派", "assign", False),
            ("assign", "assign", True),
            ("备注", "note", False),
            ("note", "note", True),
        ),
        key=lambda entry: -len(entry[0]),
    )
)
_SLASH = "/"
_IME_SLASH = "、"
_SKIPPED_LEADING = frozenset({"reply", "at"})


@dataclass(frozen=True)
class Command:
    name: CommandName
    alias: str  # the word typed, normalised: "报修" or "new"
    english: bool  # typed an English alias (replies may then be in English)
    ticket: str | None = None  # as typed, NFKC, without a leading '#': "20261124-0001"
    title: str = ""  # new: the first line
    body: str = ""  # new: the following lines; reply/note: the content; rate: the comment; assign: the rest
    score: int | None = None  # rate: 1..5
    code: str = ""  # bind: upper-cased, spaces and '-' removed
    mentions: tuple[int, ...] = ()  # QQ ids of `at` segments (not the bot's own, not "all")
    images: tuple[MessageSegment, ...] = ()  # image segments (attachments for /报修)


class CommandError(Exception):
    """A command word was recognised (or looked like one) but its arguments are wrong.

    `code` is a key of `app.bot.texts.TEXTS` ("usage_new", "unknown_command", ...).
    """

    def __init__(self, code: str, command: CommandName | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.command = command


def parse_command(message: Message, *, self_id: int | None = None) -> Command | None:
    """The command in `message`, `None` when it is not one (the caller answers it otherwise).

    Raises `CommandError` (and nothing else) when it looks like a command but is not a valid one.
    """
    text, mentions, images = _split(message, self_id)
    text = text.strip()
    if not text:
        return None
    lead = _nfkc(text[0])
    if lead not in (_SLASH, _IME_SLASH):
        return None
    rest = text[1:].lstrip()
    matched = _match_word(rest)
    if matched is None:
        if lead == _IME_SLASH:
            return None
        raise CommandError("unknown_command")
    word, name, english, consumed = matched
    head = Command(name=name, alias=word, english=english, mentions=mentions, images=images)
    return _ARGUMENTS[name](head, rest[consumed:])


# --- message -> text ------------------------------------------------------------------------


def _split(message: Message, self_id: int | None) -> tuple[str, tuple[int, ...], tuple[MessageSegment, ...]]:
    parts: list[str] = []
    mentions: list[int] = []
    images: list[MessageSegment] = []
    leading = True
    for segment in message:
        if leading and (segment.type in _SKIPPED_LEADING or (segment.type == "text" and not _text(segment).strip())):
            continue
        leading = False
        if segment.type == "text":
            parts.append(_text(segment))
        elif segment.type == "at":
            qq = _qq(segment)
            if qq is not None and qq != self_id and qq not in mentions:
                mentions.append(qq)
        elif segment.type == "image":
            images.append(segment)
    return "".join(parts), tuple(mentions), tuple(images)


def _text(segment: MessageSegment) -> str:
    value = segment.data.get("text")
    return value if isinstance(value, str) else ""


def _qq(segment: MessageSegment) -> int | None:
    value = segment.data.get("qq")
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        qq = int(value)  # "all" and other junk fail here
    except ValueError:
        return None
    return qq if qq > 0 else None


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _match_word(rest: str) -> tuple[str, CommandName, bool, int] | None:
    """(word, command, english, characters of `rest` consumed) for the longest word `rest` starts with."""
    for word, name, english in _WORDS:
        consumed = _consume(rest, word)
        if consumed is None:
            continue
        if english and consumed < len(rest) and not _nfkc(rest[consumed]).isspace():
            continue  # "/newbie" is not "/new": English words need a separator
        return word, name, english, consumed
    return None


def _consume(rest: str, word: str) -> int | None:
    """How many characters of `rest` spell `word` once normalised (full-width "ｎｅｗ" is "new")."""
    spelled = ""
    for index, char in enumerate(rest):
        spelled += _nfkc(char).casefold()
        if len(spelled) >= len(word):
            return index + 1 if spelled == word else None
        if not word.startswith(spelled):
            return None
    return None


# --- arguments ------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _take_token(text: str) -> tuple[str, str]:
    """The first whitespace-separated token of `text` (as typed) and everything after it."""
    text = text.lstrip()
    for index, char in enumerate(text):
        if char.isspace():
            return text[:index], text[index:]
    return text, ""


def _ticket(token: str) -> str | None:
    number = _nfkc(token).strip().removeprefix("#")
    return number if TICKET_NUMBER.fullmatch(number) else None


def _no_arguments(head: Command, args: str) -> Command:
    return head  # /帮助 and /我的工单 ignore anything after the word


def _new(head: Command, args: str) -> Command:
    lines = _lines(args)
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise CommandError("usage_new", "new")
    title = lines[0].strip()
    body = "\n".join(lines[1:]).strip()
    if len(title) > TITLE_MAX_LENGTH:
        body = f"{title}\n\n{body}".strip()
        title = title[: TITLE_MAX_LENGTH - 1].rstrip() + "…"
    return replace(head, title=title, body=body)


def _one_ticket(head: Command, args: str) -> Command:
    token, rest = _take_token(args)
    number = _ticket(token)
    if number is None or rest.strip():
        raise CommandError(f"usage_{head.name}", head.name)
    return replace(head, ticket=number)


def _ticket_and_content(head: Command, args: str) -> Command:
    token, rest = _take_token(args)
    number = _ticket(token)
    content = rest.strip()
    if number is None or not content:
        raise CommandError(f"usage_{head.name}", head.name)
    return replace(head, ticket=number, body=content)


def _rate(head: Command, args: str) -> Command:
    token, rest = _take_token(args)
    number = _ticket(token)
    score_token, comment = _take_token(rest)
    score = _SCORE.fullmatch(_nfkc(score_token))
    if number is None or score is None:
        raise CommandError("usage_rate", "rate")
    return replace(head, ticket=number, score=int(score.group(1)), body=comment.strip())


def _bind(head: Command, args: str) -> Command:
    code = re.sub(r"[\s-]+", "", _nfkc(args)).upper()
    if not BIND_CODE.fullmatch(code):
        raise CommandError("usage_bind", "bind")
    return replace(head, code=code)


def _assign(head: Command, args: str) -> Command:
    token, rest = _take_token(args)
    number = _ticket(token)
    if number is None or len(head.mentions) != 1:
        raise CommandError("usage_assign", "assign")
    return replace(head, ticket=number, body=rest.strip())


_ARGUMENTS: dict[CommandName, Callable[[Command, str], Command]] = {
    "help": _no_arguments,
    "list": _no_arguments,
    "new": _new,
    "show": _one_ticket,
    "close": _one_ticket,
    "claim": _one_ticket,
    "reply": _ticket_and_content,
    "note": _ticket_and_content,
    "rate": _rate,
    "bind": _bind,
    "assign": _assign,
}
