"""The QQ assistant over real sockets: the simulated OneBot implementation on one side, the
fake OpenAI-compatible provider over real HTTP on the other. A private message that is not a
command is answered from the knowledge base with the article titles cited; `转人工`, an answer
the articles do not support, too many answers, or a provider that is down open a ticket with
the transcript, and the user is told its number."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.bot.assistant import QQ_ASSIST, SYSTEM_PROMPT
from app.core.config import LlmSettings, Settings
from app.jobs.queue import enqueue
from app.models.assistant import ConversationStatus, QQAssistantConversation
from app.models.job import Job, JobStatus
from app.models.kb import KbStatus
from app.models.ticket import Channel, Message, Ticket
from app.models.user import Role, User
from app.schemas.kb import KbArticleCreate
from tests.conftest import REDIS_URL, create_user
from tests.fakes.openai_server import Fail, FakeOpenAI, Hang, Reply, Step, running_fake_openai
from tests.test_bot.conftest import BOT, CUSTOMER_GROUP, CUSTOMER_QQ, QQRig, qq_rig
from tests.test_bot.test_story import ticket_number

QUESTION = "校园网密码忘了怎么办"
ARTICLE_TITLE = "重置校园网密码"
ARTICLE_BODY = "登录自助服务平台 self.example.edu，点击“忘记密码”，用学号和身份证后六位验证后设置新密码。"
ANSWER = "请登录自助服务平台，点击“忘记密码”，验证学号后设置新密码。"
PHONE = "13812345678"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


def with_llm(settings: Settings, fake: FakeOpenAI, **llm: Any) -> Settings:
    provider = fake.provider(timeout_seconds=0.5)
    return settings.model_copy(update={"llm": LlmSettings(providers=[provider], **llm)})


def is_assistant(body: dict[str, Any]) -> bool:
    """A request of the assistant (ticket triage may call the same fake for a handed-over ticket)."""
    first = SYSTEM_PROMPT.splitlines()[0]
    return any(m.get("role") == "system" and first in str(m.get("content")) for m in body.get("messages", []))


def assistant_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [body for body in fake.requests if is_assistant(body)]


def answers(fake: FakeOpenAI, respond: Callable[[dict[str, Any]], Step]) -> None:
    """The assistant's requests get `respond(body)`; anything else an empty object."""
    fake.responder = lambda body: respond(body) if is_assistant(body) else Reply("{}")


def answer(text: str, article_ids: list[int] | None = None, *, grounded: bool = True, resolved: bool = False) -> Reply:
    value = {"answer": text, "grounded": grounded, "article_ids": article_ids or [], "resolved": resolved}
    return Reply(json.dumps(value, ensure_ascii=False))


async def publish(rig: QQRig, title: str = ARTICLE_TITLE, body: str = ARTICLE_BODY) -> int:
    ctx = rig.app.state.ctx
    author_id = await create_user(rig.app, "kbwriter", Role.agent)
    async with ctx.db.transaction() as session:
        author = await session.get(User, author_id)
        assert author is not None
        article = await ctx.kb.create(
            session, KbArticleCreate(title=title, body=body, status=KbStatus.published), actor=author
        )
        return int(article.id)


@dataclass(frozen=True)
class Opened:
    id: int
    number: str
    title: str
    channel: Channel
    requester: str  # username
    body: str  # of the first message


async def tickets(rig: QQRig) -> list[Opened]:
    async with rig.app.state.ctx.db.transaction(write=False) as session:
        query = (
            select(Ticket, User.username, Message.body)
            .join(User, User.id == Ticket.requester_id)
            .join(Message, Message.ticket_id == Ticket.id)
            .order_by(Ticket.id, Message.id)
        )
        rows = (await session.execute(query)).all()
    first: dict[int, Opened] = {}
    for ticket, username, body in rows:
        first.setdefault(ticket.id, Opened(ticket.id, ticket.number, ticket.title, ticket.channel, username, body))
    return list(first.values())


async def conversations(rig: QQRig) -> list[QQAssistantConversation]:
    async with rig.app.state.ctx.db.transaction(write=False) as session:
        query = select(QQAssistantConversation).order_by(QQAssistantConversation.id)
        return list((await session.execute(query)).scalars())


def texts_to(rig: QQRig, user_id: int) -> list[str]:
    return [s["text"] for s in rig.impl.sent if s["user_id"] == user_id and s["group_id"] is None]


# --- answers ----------------------------------------------------------------------------------


async def test_a_question_is_answered_from_an_article_with_its_title_cited(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer(ANSWER, [article_id, 999]))  # 999 was never offered
        await rig.say(CUSTOMER_QQ, QUESTION)
        sent = await rig.sent_to(CUSTOMER_QQ, ANSWER)
        assert await tickets(rig) == []

    assert f"参考：《{ARTICLE_TITLE}》" in sent["text"]
    assert "999" not in sent["text"]
    assert "回复「转人工」联系人工客服" in sent["text"]
    assert all(segment["type"] == "text" for segment in sent["segments"])
    # The article and the question went to the model as data, not as instructions.
    (request,) = assistant_requests(fake)
    users = [m["content"] for m in request["messages"] if m["role"] == "user"]
    assert users[0].startswith('<data source="kb_article">')
    assert ARTICLE_TITLE in users[0]
    assert ARTICLE_BODY in users[0]
    assert users[-1].startswith('<data source="qq_user">')
    assert QUESTION in users[-1]


async def test_a_question_in_english_is_answered_in_english(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig, "Printer jams", "Open tray 2 and pull the paper out gently.")
        answers(fake, lambda _body: answer("Open tray 2 and pull the paper out.", [article_id]))
        await rig.say(CUSTOMER_QQ, "The printer jams, what can I do?")
        sent = await rig.sent_to(CUSTOMER_QQ, "Open tray 2")
    assert 'Sources: "Printer jams"' in sent["text"]
    assert 'Reply "human" to reach a person.' in sent["text"]


async def test_a_phone_number_the_user_types_never_reaches_the_provider(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer(ANSWER, [article_id]))
        await rig.say(CUSTOMER_QQ, f"{QUESTION}，我的手机号是 {PHONE}")
        await rig.sent_to(CUSTOMER_QQ, ANSWER)
    assert assistant_requests(fake)
    assert PHONE not in fake.all_text()


async def test_a_rerun_of_the_job_does_not_answer_twice(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer(ANSWER, [article_id]))
        await rig.say(CUSTOMER_QQ, QUESTION)
        await rig.sent_to(CUSTOMER_QQ, ANSWER)
        (conversation,) = await conversations(rig)
        ctx = rig.app.state.ctx
        async with ctx.db.transaction() as session:  # at-least-once: the same job again
            await enqueue(session, QQ_ASSIST, {"conversation_id": conversation.id, "turn": 0}, idempotency_key="again")
        await wait_for_job(rig, "again")
    assert len(assistant_requests(fake)) == 1
    assert sum(ANSWER in t for t in texts_to(rig, CUSTOMER_QQ)) == 1


async def wait_for_job(rig: QQRig, idempotency_key: str) -> None:
    query = select(Job.status).where(Job.idempotency_key == idempotency_key)
    async with asyncio.timeout(10):
        while True:
            async with rig.app.state.ctx.db.transaction(write=False) as session:
                if (await session.execute(query)).scalar_one() == JobStatus.done:
                    return
            await asyncio.sleep(0.02)  # the worker has no completion signal


async def test_a_user_who_says_it_helped_ends_the_conversation(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer(ANSWER, [article_id]))
        await rig.say(CUSTOMER_QQ, QUESTION)
        await rig.sent_to(CUSTOMER_QQ, ANSWER)
        answers(fake, lambda _body: answer("不客气！", resolved=True))
        await rig.say(CUSTOMER_QQ, "好了，谢谢")
        await rig.sent_to(CUSTOMER_QQ, "不客气")
        (conversation,) = await conversations(rig)
        assert await tickets(rig) == []
    assert conversation.status == ConversationStatus.resolved


# --- handing over -----------------------------------------------------------------------------


async def test_转人工_opens_a_ticket_with_the_transcript_and_tells_the_number(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer(ANSWER, [article_id]))
        await rig.say(CUSTOMER_QQ, QUESTION)
        await rig.sent_to(CUSTOMER_QQ, ANSWER)
        await rig.say(CUSTOMER_QQ, "转人工")
        told = await rig.sent_to(CUSTOMER_QQ, "已为你转人工客服")
        (ticket,) = await tickets(rig)
        (conversation,) = await conversations(rig)

    assert ticket_number(told) == ticket.number
    assert ticket.title == QUESTION
    assert ticket.channel == Channel.qq
    assert ticket.requester == f"qq_{CUSTOMER_QQ}"
    body = ticket.body
    assert "转人工原因：用户要求人工服务" in body
    assert f"用户：{QUESTION}" in body
    assert f"助手：{ANSWER}" in body
    assert f"参考：《{ARTICLE_TITLE}》" in body
    assert "用户：转人工" in body
    assert len(assistant_requests(fake)) == 1  # asking for a person needs no model
    assert (conversation.status, conversation.ticket_id) == (ConversationStatus.handed_over, ticket.id)


async def test_after_a_handover_the_next_question_starts_a_new_conversation(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer(ANSWER, [article_id]))
        await rig.say(CUSTOMER_QQ, QUESTION)
        await rig.sent_to(CUSTOMER_QQ, ANSWER)
        await rig.say(CUSTOMER_QQ, "人工")
        await rig.sent_to(CUSTOMER_QQ, "已为你转人工客服")
        answers(fake, lambda _body: answer("请重启路由器。", [article_id]))
        await rig.say(CUSTOMER_QQ, "宿舍网络很慢")
        await rig.sent_to(CUSTOMER_QQ, "请重启路由器")
        first, second = await conversations(rig)
    assert first.status == ConversationStatus.handed_over
    assert second.status == ConversationStatus.open
    assert [t["text"] for t in second.turns] == ["宿舍网络很慢", "请重启路由器。"]


async def test_asking_for_a_person_before_any_question_asks_for_the_problem_first(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        await rig.say(CUSTOMER_QQ, "转人工")
        await rig.sent_to(CUSTOMER_QQ, "请先用一两句话描述你遇到的问题")
        assert await tickets(rig) == []


async def test_an_english_request_for_a_person_is_answered_in_english(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        article_id = await publish(rig)
        answers(fake, lambda _body: answer("Reset it on the self-service site.", [article_id]))
        await rig.say(CUSTOMER_QQ, "I forgot my campus network password")
        await rig.sent_to(CUSTOMER_QQ, "self-service")
        await rig.say(CUSTOMER_QQ, "Human!")
        told = await rig.sent_to(CUSTOMER_QQ, "a person will take it from here")
        (ticket,) = await tickets(rig)
    assert ticket_number(told) == ticket.number


@pytest.mark.parametrize("failure", [Fail(500), Hang(5)], ids=["http-500", "timeout"])
async def test_a_provider_that_is_down_opens_a_ticket(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI, failure: Step
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        await publish(rig)
        answers(fake, lambda _body: failure)
        await rig.say(CUSTOMER_QQ, QUESTION)
        told = await rig.sent_to(CUSTOMER_QQ, "智能助手暂时无法回答")
        (ticket,) = await tickets(rig)
    assert ticket_number(told) == ticket.number
    assert "转人工原因：AI 服务不可用" in ticket.body
    assert f"用户：{QUESTION}" in ticket.body


async def test_an_answer_the_articles_do_not_support_is_handed_over(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        await publish(rig)
        answers(fake, lambda _body: answer("大概是服务器坏了吧", grounded=False))
        await rig.say(CUSTOMER_QQ, "教务系统登不上去")
        told = await rig.sent_to(CUSTOMER_QQ, "没有找到可靠的答案")
        (ticket,) = await tickets(rig)
    assert ticket_number(told) == ticket.number
    assert ticket.title == "教务系统登不上去"
    assert "大概是服务器坏了吧" not in told["text"]
    assert "大概是服务器坏了吧" not in ticket.body


async def test_after_max_turns_answers_without_resolution_it_hands_over(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake, assistant_max_turns=2), admin_engine) as rig:
        article_id = await publish(rig)
        replies = iter(["第一步：重启电脑。", "第二步：重新插网线。", "第三步：……"])
        answers(fake, lambda _body: answer(next(replies), [article_id]))
        await rig.say(CUSTOMER_QQ, "宿舍有线网连不上")
        await rig.sent_to(CUSTOMER_QQ, "第一步")
        await rig.say(CUSTOMER_QQ, "还是不行")
        await rig.sent_to(CUSTOMER_QQ, "第二步")
        await rig.say(CUSTOMER_QQ, "还是连不上")
        told = await rig.sent_to(CUSTOMER_QQ, "看来问题还没有解决")
        (ticket,) = await tickets(rig)
    assert ticket_number(told) == ticket.number
    assert ticket.title == "宿舍有线网连不上"
    assert "第三步" not in " ".join(texts_to(rig, CUSTOMER_QQ))
    body = ticket.body
    assert body.index("宿舍有线网连不上") < body.index("第一步") < body.index("还是不行") < body.index("还是连不上")


# --- limits and switches ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "redis_url",
    [None, pytest.param(REDIS_URL, marks=pytest.mark.skipif(not REDIS_URL, reason="HELPDESK_TEST_REDIS_URL not set"))],
    ids=["memory", "redis"],
)
async def test_questions_over_the_rate_limit_get_a_polite_wait_and_no_call(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI, redis_url: str | None
) -> None:
    settings = with_llm(settings.model_copy(update={"redis_url": redis_url}), fake, assistant_rate_per_minute=2)
    async with qq_rig(settings, admin_engine) as rig:
        await rig.app.state.ctx.limiter.reset(f"qq-assistant:{CUSTOMER_QQ}")  # Redis outlives test runs
        article_id = await publish(rig)
        replies = iter(["第一个回答", "第二个回答", "第三个回答"])
        answers(fake, lambda _body: answer(next(replies), [article_id]))
        await rig.say(CUSTOMER_QQ, "打印机卡纸")
        await rig.sent_to(CUSTOMER_QQ, "第一个回答")
        await rig.say(CUSTOMER_QQ, "还是卡纸")
        await rig.sent_to(CUSTOMER_QQ, "第二个回答")
        await rig.say(CUSTOMER_QQ, "换了纸也卡")
        await rig.sent_to(CUSTOMER_QQ, "秒后再问我")
        (conversation,) = await conversations(rig)
    assert len(assistant_requests(fake)) == 2
    assert conversation.turns[-1]["text"] == "换了纸也卡"  # kept: context for the next answer


@pytest.mark.parametrize("llm", ["no_provider", "assistant_off"])
async def test_with_the_assistant_off_free_text_gets_the_help(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI, llm: str
) -> None:
    configured = settings if llm == "no_provider" else with_llm(settings, fake, assistant=False)
    async with qq_rig(configured, admin_engine) as rig:
        await rig.say(CUSTOMER_QQ, QUESTION)
        await rig.sent_to(CUSTOMER_QQ, "IT 服务台可用命令")
        await rig.say(CUSTOMER_QQ, "转人工")
        await rig.impl.changed.wait_for(lambda: len(texts_to(rig, CUSTOMER_QQ)) >= 2, 10)
        assert await tickets(rig) == []
        assert await conversations(rig) == []
    assert all("IT 服务台可用命令" in t for t in texts_to(rig, CUSTOMER_QQ))
    assert fake.calls == 0


async def test_free_text_in_a_group_keeps_the_group_help(
    settings: Settings, admin_engine: AsyncEngine, fake: FakeOpenAI
) -> None:
    async with qq_rig(with_llm(settings, fake), admin_engine) as rig:
        mention = [{"type": "at", "data": {"qq": str(BOT)}}, {"type": "text", "data": {"text": QUESTION}}]
        await rig.say_in_group(CUSTOMER_GROUP, CUSTOMER_QQ, mention)
        await rig.sent_to_group(CUSTOMER_GROUP, "在群里请先 @我 再发命令")
    assert fake.calls == 0
