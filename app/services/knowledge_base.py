"""The knowledge base: articles staff write, customers read, and the AI grounds answers in.

Articles are searched with the ticket search's machinery (app/services/search.py): the same
`Segmenter` cuts title and body into words once per change, in a worker thread, into
`kb_articles.tokens`; the title's words are stored twice, so a word in the title weighs as
much as two in the body. Two ways in:

- `search` answers a person's query (GET /kb/search): `parse_query` as for tickets, every
  term must match, ranked by occurrences; a 1-2 character query that is not a word is a
  substring scan of titles and bodies, newest first.
- `retrieve` answers a question in a customer's words ("宿舍的wifi连不上怎么办") with the
  published articles most likely to help: ANY of its words may match, since a sentence has
  many and an article rarely holds them all. Question words and particles (怎么办, 如何, 的,
  how, my...) and single Chinese characters next to real words are dropped; the smaller words
  jieba finds inside long ones are kept (打印机 also asks for 打印), so "打印机坏了" still
  finds "打印不出来", and an article holding the whole word holds more of the question's
  terms. Articles are ranked by how many distinct terms they hold, then by occurrences, then
  newest first: integer keys computed by the same SQL on SQLite and PostgreSQL, so both
  return the same articles in the same order.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidReference, VersionConflict
from app.crud import crud_kb
from app.db.base import utcnow
from app.models.kb import KbArticle
from app.models.user import User
from app.schemas.kb import KbArticleCreate, KbArticleUpdate
from app.services.search import SearchIndex, SearchQuery, Segmenter, normalise, snippet

# At most this many terms of a question are looked up: a pasted paragraph must not turn into
# a statement with hundreds of conditions.
MAX_QUESTION_TERMS = 24
_CJK_CHAR = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# Words that say how a question is asked, not what it is about. Lower case, as tokens are.
_STOP_WORDS = """
    的 了 吗 呢 吧 啊 呀 哦 嘛 么 是 在 有 和 与 或 也 都 就 还 又 要 想 会 能 把 被 让 给 对 从 到
    我 你 您 他 她 它 我们 你们 他们 自己 这 那 这个 那个 这样 那样 这里 那里 哪 哪里 哪个 哪些
    什么 怎么 怎么办 怎么样 怎样 如何 为什么 为何 是否 能否 可否 可以 可不可以 能不能 是不是 有没有
    请问 请 麻烦 谢谢 你好 您好 一下 一直 还是 应该 需要 现在 今天 已经 总是 老是 突然
    how what why when where which who whom whose do does did done doing is are am was were be been
    being can could should would will shall may might must i me my mine we us our you your he him
    his she her it its they them their this that these those a an the to of in on at for with
    from by about into and or but not no so if then than please help hi hello thanks thank there
    here get got any some
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class KbHit:
    article: KbArticle
    snippet: str


def question_terms(segmenter: Segmenter, question: str) -> list[str]:
    """The words of a free-form question worth looking up (blocking: jieba; run in a thread)."""
    tokens = list(dict.fromkeys(segmenter.tokens(question)))
    words = [t for t in tokens if t not in STOP_WORDS]
    # A single Chinese character (丢, 坏) next to real words is noise; alone, it is the question.
    longer = [t for t in words if len(t) > 1 or not _CJK_CHAR.fullmatch(t)]
    return (longer or words)[:MAX_QUESTION_TERMS]


def article_tokens(segmenter: Segmenter, title: str, body: str) -> str:
    """What `tokens` stores: the title's words twice (they weigh double), then the body's."""
    title_tokens = segmenter.segment(title)
    return " ".join(part for part in (title_tokens, title_tokens, segmenter.segment(body)) if part)


def _snippets(hits: Sequence[KbArticle], marks: Sequence[str]) -> list[str]:
    """Per article: an excerpt of the body around its first match, or the title when only the
    title matches."""
    out = []
    for article in hits:
        body = normalise(article.body)
        text = article.body if not marks or any(mark in body for mark in marks) else article.title
        out.append(snippet(text, marks))
    return out


class KnowledgeBase:
    """Writes, searches and retrieves articles. Stateless apart from the search index whose
    segmenter it shares; segmentation and snippets run in worker threads."""

    def __init__(self, search: SearchIndex) -> None:
        self.index = search
        self.segmenter = search.segmenter

    # --- writing ---------------------------------------------------------------------------

    async def create(self, session: AsyncSession, body: KbArticleCreate, *, actor: User) -> KbArticle:
        await self._check_category(session, body.category_id)
        tokens = await asyncio.to_thread(article_tokens, self.segmenter, body.title, body.body)
        article = KbArticle(
            title=body.title,
            body=body.body,
            status=body.status,
            category_id=body.category_id,
            author_id=actor.id,
            tokens=tokens,
            version=1,
        )
        return await crud_kb.add(session, article)

    async def update(
        self, session: AsyncSession, article: KbArticle, body: KbArticleUpdate, *, expected_version: int | None = None
    ) -> KbArticle:
        """Apply the fields sent; a change bumps `version` and `updated_at` (nothing sent that
        differs: nothing changes). `expected_version` is the client's If-Match."""
        if expected_version is not None and expected_version != article.version:
            raise VersionConflict(precondition=True, current_version=article.version)
        changed = False
        if "category_id" in body.model_fields_set and body.category_id != article.category_id:
            await self._check_category(session, body.category_id)
            article.category_id = body.category_id
            changed = True
        if body.status is not None and body.status != article.status:
            article.status = body.status
            changed = True
        title = body.title if body.title is not None else article.title
        text = body.body if body.body is not None else article.body
        if title != article.title or text != article.body:
            article.tokens = await asyncio.to_thread(article_tokens, self.segmenter, title, text)
            article.title, article.body = title, text
            changed = True
        if changed:
            article.updated_at = utcnow()
            article.version = article.version + 1
            await session.flush()
        return article

    async def delete(self, session: AsyncSession, article: KbArticle) -> None:
        await crud_kb.delete_article(session, article)

    async def _check_category(self, session: AsyncSession, category_id: int | None) -> None:
        if category_id is not None and not await crud_kb.category_exists(session, category_id):
            raise InvalidReference("category_id")

    # --- finding ---------------------------------------------------------------------------

    async def search(self, session: AsyncSession, text: str, *, user: User, limit: int = 10) -> list[KbHit]:
        """The articles `user` may read that match `text` (every word), best first, each with
        an HTML-escaped snippet."""
        query = await self.index.parse(text)
        articles = crud_kb.readable_by(user)
        found: list[KbArticle]
        if query.empty:
            return []
        if query.substring is not None:
            found = await crud_kb.containing(session, articles, query.substring, limit=limit)
        else:
            found = await crud_kb.ranked(session, articles, query.terms, limit=limit)
        return await self._hits(found, query)

    async def retrieve(self, session: AsyncSession, question: str, *, limit: int = 3) -> list[KbArticle]:
        """The published articles most relevant to a free-form question, best first: any of
        its words may match; most distinct words held first, then most occurrences, then
        newest. Empty when nothing matches. Bodies are loaded (for prompts)."""
        if limit < 1:
            return []
        terms = await asyncio.to_thread(question_terms, self.segmenter, question)
        if not terms:
            return []
        return await crud_kb.best_published(session, terms, limit=limit)

    async def _hits(self, articles: list[KbArticle], query: SearchQuery) -> list[KbHit]:
        if not articles:
            return []
        snippets = await asyncio.to_thread(_snippets, articles, query.marks())
        return [KbHit(article, text) for article, text in zip(articles, snippets, strict=True)]

    # --- maintenance -----------------------------------------------------------------------

    async def reindex(self, session: AsyncSession, first_id: int, *, batch: int) -> tuple[int, int] | None:
        """Re-segment up to `batch` articles from id `first_id` on (after a dictionary change);
        returns the last id done and how many, None when none was left. Idempotent."""
        rows = await crud_kb.token_batch(session, first_id, batch=batch)
        if not rows:
            return None
        tokens = await asyncio.to_thread(
            lambda: {i: article_tokens(self.segmenter, title, body) for i, title, body in rows}
        )
        await crud_kb.set_tokens(session, tokens)
        return rows[-1][0], len(rows)
