"""Chinese full-text search: segmentation first.

Chinese has no spaces, so neither SQLite's FTS5 (`unicode61`) nor PostgreSQL's `simple`
configuration can find the word 密码 inside “提示密码错误” on their own. Text is therefore cut
into words in Python — NFKC (full-width letters and digits become ASCII), lower case, jieba's
`cut_for_search` (which also emits the shorter words inside long ones: 打印机 → 打印, 印机,
打印机), split on anything that is not a word character — and the databases index those tokens
joined by spaces. The query is segmented the same way, so both sides agree on what a word is.

A `Segmenter` owns its own jieba dictionary (never jieba's global one), loaded once at start-up
(about a second) and off the event loop; a user dictionary adds domain words (one per line, in
jieba's `word [frequency] [tag]` format), e.g. the names of a campus's buildings and systems.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jieba
from sqlalchemy import ColumnElement, Select, Subquery, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import SearchSettings
from app.crud import crud_search
from app.crud.crud_search import DocRow
from app.models.ticket import Message, Ticket

# Words of IT support that jieba's dictionary lacks (蓝屏, 闪退, 教务系统...): always loaded, so
# they are found as words, not only as substrings. A change needs `helpdesk reindex`.
HELPDESK_WORDS = Path(__file__).with_name("helpdesk_words.txt")
_NON_WORD = re.compile(r"[^\w]+")
_SPACES = re.compile(r"\s+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
INLINE_CHARS = 200  # texts up to this length are segmented on the event loop (SearchIndex._inline)

jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO on every start


class Segmenter:
    def __init__(self, user_dictionary: Path | None = None) -> None:
        self.user_dictionary = user_dictionary
        self._tokenizer = jieba.Tokenizer()
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the dictionary (blocking: call it in a thread at start-up). Idempotent."""
        with self._lock:
            if self._loaded:
                return
            self._tokenizer.initialize()
            self._tokenizer.load_userdict(str(HELPDESK_WORDS))
            if self.user_dictionary is not None:
                self._tokenizer.load_userdict(str(self.user_dictionary))
            self._loaded = True

    @property
    def loaded(self) -> bool:
        return self._loaded

    def tokens(self, text: str) -> list[str]:
        """The words of `text`, normalised, in order (repeats kept: they weigh in ranking)."""
        self.load()
        normalised = unicodedata.normalize("NFKC", text).lower()
        words: list[str] = []
        for piece in self._tokenizer.cut_for_search(normalised):
            words.extend(part for part in _NON_WORD.split(piece) if part)
        return words

    def segment(self, text: str) -> str:
        """What the index stores for `text`: its tokens joined by spaces."""
        return " ".join(self.tokens(text))

    def is_word(self, word: str) -> bool:
        """Whether `word` is in the dictionary (jieba's, or the user dictionary)."""
        self.load()
        return bool(self._tokenizer.FREQ.get(word))

    _shared: dict[Path | None, Segmenter] = {}  # noqa: RUF012  # class-level cache, see shared()
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, user_dictionary: Path | None = None) -> Segmenter:
        """One segmenter per dictionary per process: each holds jieba's dictionary (tens of MB,
        about a second to build), so the app, the worker and every test reuse one."""
        with cls._shared_lock:
            if user_dictionary not in cls._shared:
                cls._shared[user_dictionary] = cls(user_dictionary)
            return cls._shared[user_dictionary]


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


@dataclass(frozen=True)
class SearchQuery:
    """A user's query, segmented: either words for the full-text index (`terms`, all of which
    must match), or, for a single character or a 2-character query that is not a word of the
    dictionary (卡, 印机, 5g), a substring for a bounded LIKE scan (`substring`): documents hold
    words, so such a query would miss the texts that only contain it inside a word."""

    text: str
    terms: tuple[str, ...] = ()
    substring: str | None = None

    @property
    def empty(self) -> bool:
        return not self.terms and self.substring is None

    def marks(self) -> list[str]:
        """What to highlight in a snippet, longest first."""
        words = [self.substring] if self.substring else list(self.terms)
        return sorted({w for w in words if w}, key=len, reverse=True)


def parse_query(segmenter: Segmenter, text: str) -> SearchQuery:
    """Segment a query the way documents are segmented. Blocking (jieba): run it in a thread."""
    compact = "".join(normalise(text).split())
    if not compact:
        return SearchQuery(text)
    if len(compact) == 1 or (len(compact) == 2 and not segmenter.is_word(compact)):
        return SearchQuery(text, substring=compact)
    tokens = list(dict.fromkeys(segmenter.tokens(text)))
    # A single Chinese character (了, 的, 吗) next to real words is noise, not a requirement:
    # "电脑蓝屏了" must find "电脑蓝屏". Alone, it is the query.
    longer = [t for t in tokens if len(t) > 1 or not _CJK.fullmatch(t)] or tokens
    # cut_for_search also yields the words inside a long one (打印机 -> 打印, 印机); a text
    # that holds 打印机 holds them too, so asking for them adds nothing but work (and makes
    # PostgreSQL's planner underestimate the matches a hundredfold).
    return SearchQuery(text, terms=tuple(t for t in longer if not any(t != o and t in o for o in longer)))


def snippet(text: str, marks: Sequence[str], *, width: int = 80) -> str:
    """An HTML-escaped excerpt of `text` around the first match, every match wrapped in <mark>.
    Matching runs on the normalised text (full-width letters, case), mapped back to the
    original characters, so what is marked is what the user wrote."""
    folded, origin = _folded(text)
    spans = _match_spans(folded, marks)
    original_spans = [(origin[a], origin[b - 1] + 1) for a, b in spans]
    first = original_spans[0][0] if original_spans else 0
    start = max(0, min(first - width // 4, len(text) - width))
    end = min(len(text), start + width)
    parts: list[str] = ["…" if start > 0 else ""]
    cursor = start
    for a, b in original_spans:
        if a < start or b > end:
            continue
        parts += [html.escape(text[cursor:a]), "<mark>", html.escape(text[a:b]), "</mark>"]
        cursor = b
    parts += [html.escape(text[cursor:end]), "…" if end < len(text) else ""]
    return _SPACES.sub(" ", "".join(parts))  # one line: newlines and runs of spaces become one


def _folded(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index of the original one."""
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for out in normalise(char):
            chars.append(out)
            origin.append(index)
    return "".join(chars), origin


def _match_spans(folded: str, marks: Sequence[str]) -> list[tuple[int, int]]:
    taken = [False] * len(folded)
    spans: list[tuple[int, int]] = []
    for mark in marks:  # longest first: 打印机 is marked whole, not as 打印 + 机
        for found in re.finditer(re.escape(mark), folded):
            a, b = found.span()
            if not any(taken[a:b]):
                taken[a:b] = [True] * (b - a)
                spans.append((a, b))
    return sorted(spans)


class SearchIndex:
    """Keeps `search_docs` in step with titles and messages, and parses queries. Segmentation
    runs in a worker thread, never on the event loop; each new text is segmented once."""

    def __init__(self, segmenter: Segmenter, *, like_window: int = 200_000, rank_window: int = 1000) -> None:
        self.segmenter = segmenter
        self.like_window = like_window
        self.rank_window = rank_window

    async def load(self) -> None:
        await asyncio.to_thread(self.segmenter.load)

    async def parse(self, text: str) -> SearchQuery:
        if self._inline(text):
            return parse_query(self.segmenter, text)
        return await asyncio.to_thread(parse_query, self.segmenter, text)

    async def segment(self, text: str) -> str:
        """The text's tokens (off the event loop, unless short). Callers that segment before their
        transaction's first statement keep the work out of SQLite's write lock (a new ticket does)."""
        return (await self.segment_all(text))[0]

    async def segment_all(self, *texts: str) -> list[str]:
        """Each text's tokens: on the event loop if they are short, else in one trip to a worker
        thread."""
        if self._inline(*texts):
            return [self.segmenter.segment(text) for text in texts]
        return await asyncio.to_thread(lambda: [self.segmenter.segment(text) for text in texts])

    def _inline(self, *texts: str) -> bool:
        """Whether segmenting `texts` costs less than a trip to a worker thread: jieba takes about
        1.3 µs a character here, a trip 0.2–0.5 ms under load (docs/benchmarks.md, session 11).
        Never before the dictionary is built, which takes seconds."""
        return self.segmenter.loaded and sum(map(len, texts)) <= INLINE_CHARS

    async def index_new_ticket(
        self, session: AsyncSession, message: Message, *, title_tokens: str, tokens: str
    ) -> None:
        """A new ticket's title and first message (already segmented): one INSERT."""
        title = DocRow(message.ticket_id, None, False, title_tokens)
        first = DocRow(message.ticket_id, message.id, message.internal, tokens, title_tokens)
        await crud_search.insert_new_docs(session, [title, first])

    async def index_title(
        self, session: AsyncSession, ticket: Ticket, *, renamed: bool = False, tokens: str | None = None
    ) -> None:
        """The title's document (`tokens`: the title already segmented); after a rename, also
        the context of the ticket's messages."""
        if tokens is None:
            tokens = await self.segment(ticket.title)
        await crud_search.upsert_docs(session, [DocRow(ticket.id, None, False, tokens)])
        if renamed:
            await crud_search.set_context(session, ticket.id)

    async def index_message(
        self, session: AsyncSession, message: Message, *, tokens: str | None = None, context: str | None = None
    ) -> None:
        """Only the new text is segmented (unless given); the title's tokens are read from its
        document (unless given as `context`)."""
        if tokens is None:
            tokens = await self.segment(message.body)
        if context is None:
            context = await crud_search.title_tokens(session, message.ticket_id)
        row = DocRow(message.ticket_id, message.id, message.internal, tokens, context)
        await crud_search.upsert_docs(session, [row])

    async def ranked(self, session: AsyncSession, query: SearchQuery, *, tickets: Select[Any], staff: bool) -> Subquery:
        """(ticket_id, score) of the tickets of `tickets` (readable, filtered) whose texts hold
        every word of `query`: the newest `rank_window` matching texts, ranked."""
        return await crud_search.ranked_hits(
            session, query.terms, tickets=tickets, include_internal=staff, window=self.rank_window
        )

    def condition(self, session: AsyncSession, query: SearchQuery, *, staff: bool) -> ColumnElement[bool]:
        """ "The ticket matches `query`", for sorts other than relevance and for substrings."""
        if query.substring is not None:
            return crud_search.like_condition(query.substring, include_internal=staff, newest_tickets=self.like_window)
        return Ticket.id.in_(crud_search.all_hits(session, query.terms, include_internal=staff))

    async def snippets(
        self, session: AsyncSession, query: SearchQuery, titles: Mapping[int, str], *, include_internal: bool
    ) -> dict[int, str]:
        """A highlighted excerpt per ticket of a result page (`titles`: id → title, in page
        order), from its best matching text (two statements for the whole page)."""
        ids = list(titles)
        texts: dict[int, str] = {}
        if query.substring is not None:
            texts = {i: title for i, title in titles.items() if query.substring in normalise(title)}
            others = [i for i in ids if i not in texts]
            texts |= await crud_search.first_bodies_containing(
                session, query.substring, others, include_internal=include_internal
            )
        elif query.terms:
            docs = await crud_search.page_docs(session, ids, include_internal=include_internal)
            best = _best_documents(docs, query.terms)
            bodies = await crud_search.message_bodies(session, [m for m in best.values() if m is not None])
            texts = {i: titles[i] if m is None else bodies.get(m, "") for i, m in best.items()}
        marks = query.marks()
        return {ticket_id: snippet(text, marks) for ticket_id, text in texts.items()}

    async def reindex_tickets(self, session: AsyncSession, first_id: int, *, batch: int) -> ReindexedBatch:
        """Re-segment up to `batch` tickets from id `first_id` on, titles and messages, and
        upsert their documents (idempotent: safe beside the app's own indexing)."""
        tickets = (
            await session.execute(
                select(Ticket.id, Ticket.title).where(Ticket.id >= first_id).order_by(Ticket.id).limit(batch)
            )
        ).all()
        if not tickets:
            return ReindexedBatch(last_id=None, tickets=0, documents=0)
        last_id = tickets[-1].id
        messages = (
            await session.execute(
                select(Message.id, Message.ticket_id, Message.internal, Message.body).where(
                    Message.ticket_id >= first_id, Message.ticket_id <= last_id
                )
            )
        ).all()
        texts = [t.title for t in tickets] + [m.body for m in messages]
        segmented = await self.segment_all(*texts)
        title_tokens = {t.id: tokens for t, tokens in zip(tickets, segmented, strict=False)}
        rows = [DocRow(ticket_id, None, False, tokens) for ticket_id, tokens in title_tokens.items()]
        rows += [
            DocRow(m.ticket_id, m.id, m.internal, tokens, title_tokens[m.ticket_id])
            for m, tokens in zip(messages, segmented[len(tickets) :], strict=True)
        ]
        await crud_search.upsert_docs(session, rows)
        return ReindexedBatch(last_id=last_id, tickets=len(tickets), documents=len(rows))


@dataclass(frozen=True)
class ReindexedBatch:
    last_id: int | None  # None: no ticket from that id on
    tickets: int
    documents: int


def _best_documents(docs: Sequence[tuple[int, int | None, str]], terms: Sequence[str]) -> dict[int, int | None]:
    """Per ticket, the document (message id, None for the title) holding the most query
    terms, then the most occurrences; the title wins ties."""
    best: dict[int, tuple[tuple[int, int, int], int | None]] = {}
    for ticket_id, message_id, tokens in docs:
        words = tokens.split()
        key = (sum(term in words for term in terms), sum(words.count(term) for term in terms), message_id is None)
        if key[0] and (ticket_id not in best or key > best[ticket_id][0]):
            best[ticket_id] = ((key[0], key[1], int(key[2])), message_id)
    return {ticket_id: message_id for ticket_id, (_, message_id) in best.items()}


def build_search_index(settings: SearchSettings) -> SearchIndex:
    return SearchIndex(
        Segmenter.shared(settings.user_dictionary), like_window=settings.like_window, rank_window=settings.rank_window
    )
