"""KnowledgeBase.retrieve: the published articles that ground an AI answer to a question in a
customer's own words. Any word of the question may match; most distinct words first, then most
occurrences, then newest; the same articles in the same order on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from app.models.kb import KbStatus
from app.models.user import Role, User
from app.schemas.kb import KbArticleCreate, KbArticleUpdate
from app.services.knowledge_base import KnowledgeBase, question_terms
from app.services.search import Segmenter
from tests.conftest import create_user

# key: (title, body, status)
ARTICLES = {
    "wifi": ("宿舍无线网络连不上", "宿舍 wifi 连不上时，先在手机上忘记网络，再重新连接。", KbStatus.published),
    "campus_net": ("校园网认证", "打开浏览器会自动跳转到认证页面，输入学号和密码。", KbStatus.published),
    "reset_en": ("How to reset your password", "Open the login page and click Forgot password.", KbStatus.published),
    "reset_zh": ("如何重置邮箱密码", "登录页面点击“忘记密码”，按提示重置。", KbStatus.published),
    "printer": ("打印机卡纸处理", "打开前盖，取出卡住的纸张，再合上前盖。", KbStatus.published),
    "print": ("打印不出来怎么办", "先检查打印队列，再重启打印服务。", KbStatus.published),
    "card": ("校园卡挂失", "校园卡丢了，请到一卡通中心挂失。", KbStatus.published),
    "secret": ("宿舍 wifi 密码（内部）", "宿舍 wifi 管理员密码：仅限值班人员。", KbStatus.draft),
}


@pytest.fixture
def kb(app) -> KnowledgeBase:
    kb: KnowledgeBase = app.state.ctx.kb
    return kb


@pytest.fixture
async def author(app) -> int:
    return await create_user(app, "writer", Role.agent)


async def add(app, author: int, title: str, body: str, status: KbStatus = KbStatus.published) -> int:
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        actor = await session.get(User, author)
        assert actor is not None
        article = await ctx.kb.create(session, KbArticleCreate(title=title, body=body, status=status), actor=actor)
        return int(article.id)


@pytest.fixture
async def articles(app, author) -> dict[str, int]:
    return {key: await add(app, author, *fields) for key, fields in ARTICLES.items()}


async def retrieve(app, question: str, **options: Any) -> list[int]:
    ctx = app.state.ctx
    async with ctx.db.transaction(write=False) as session:
        found = await ctx.kb.retrieve(session, question, **options)
        assert all(article.body for article in found)  # loaded: they go into prompts
        return [article.id for article in found]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("宿舍的wifi连不上怎么办", ["wifi"]),
        ("How do I reset my password", ["reset_en"]),
        # Both words, then one each (密码; 忘记 as in 忘记网络), the newer first.
        ("忘记密码了怎么办？", ["reset_zh", "campus_net", "wifi"]),
        ("打印机坏了", ["printer", "print"]),  # 打印机 also asks for 打印: "打印不出来" helps too
        ("我的校园卡丢了，要怎么挂失？", ["card", "campus_net"]),  # 校园网 holds 校园
        ("ＶＰＮ连不上", ["wifi"]),  # no VPN article: the best partial match
        ("今天天气怎么样", []),
        ("怎么办？", []),  # question words only
        ("", []),
    ],
)
async def test_questions_find_the_articles_that_answer_them(app, articles, question, expected):
    assert await retrieve(app, question) == [articles[key] for key in expected]


async def test_more_distinct_words_beat_more_occurrences(app, author):
    repeated = await add(app, author, "wifi 常见问题", "wifi wifi wifi wifi wifi")
    both = await add(app, author, "宿舍网络", "wifi 信号弱")
    assert await retrieve(app, "宿舍 wifi 信号") == [both, repeated]


async def test_more_occurrences_win_among_equals_and_title_words_count_double(app, author):
    body_once = await add(app, author, "网络说明", "打印机在三楼。")
    title = await add(app, author, "打印机", "在三楼。")
    body_thrice = await add(app, author, "设备说明", "打印机、打印机、打印机都在三楼。")
    assert await retrieve(app, "打印机在哪") == [body_thrice, title, body_once]


async def test_ties_are_newest_first(app, author):
    older = await add(app, author, "邮箱无法登录", "联系管理员。")
    newer = await add(app, author, "邮箱无法登录", "联系管理员。")
    assert await retrieve(app, "邮箱登录不了") == [newer, older]


async def test_limit_cuts_the_list(app, articles):
    assert len(await retrieve(app, "宿舍 wifi 密码 打印机 校园卡", limit=2)) == 2
    assert len(await retrieve(app, "宿舍 wifi 密码 打印机 校园卡")) == 3
    assert await retrieve(app, "宿舍 wifi", limit=0) == []


async def test_drafts_never_ground_an_answer(app, articles, kb):
    found = await retrieve(app, "宿舍wifi的密码是多少", limit=10)
    assert articles["secret"] not in found
    assert found[0] == articles["wifi"]


async def test_an_edited_article_is_retrieved_by_its_new_words(app, author):
    article_id = await add(app, author, "投影仪不亮", "检查电源。")
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        article = await ctx.kb.retrieve(session, "投影仪坏了")
        await ctx.kb.update(session, article[0], KbArticleUpdate(title="幕布降不下来"))
    assert await retrieve(app, "投影仪坏了") == []
    assert await retrieve(app, "幕布怎么降不下来") == [article_id]


async def test_reindex_rewrites_the_tokens_of_every_article(app, articles):
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        assert await ctx.kb.reindex(session, 1, batch=100) == (max(articles.values()), len(articles))
        assert await ctx.kb.reindex(session, max(articles.values()) + 1, batch=100) is None
    assert await retrieve(app, "宿舍的wifi连不上怎么办") == [articles["wifi"]]


# --- the words of a question (no database) --------------------------------------------------


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.shared()


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("宿舍的wifi连不上怎么办", ["宿舍", "wifi", "连不上"]),
        ("How do I reset my password?", ["reset", "password"]),
        ("我的校园卡丢了，要怎么挂失？", ["校园", "校园卡", "挂失"]),  # 丢 and 了: single characters
        ("打印机卡纸", ["打印", "印机", "打印机", "卡纸"]),
        ("怎么办", []),
        ("丢", ["丢"]),  # alone, a single character is the question
    ],
)
def test_question_terms_drop_question_words_and_single_characters(segmenter, question, terms):
    assert question_terms(segmenter, question) == terms
