"""AI triage on ticket create, against a fake OpenAI-compatible server over real HTTP: the
suggestion kept for agents, the fields applied where no person set them, nothing invented,
nothing harmed when AI is off or every provider fails, and nothing done twice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.config import LlmSettings
from app.crud import crud_ticket
from app.db.base import utcnow
from app.jobs.handlers import build_handlers
from app.jobs.worker import Worker, WorkerOptions
from app.llm.jobs import TRIAGE, TRIAGE_ATTEMPTS, triage_key, wire_ai
from app.models.job import Job, JobStatus
from app.models.llm import LlmCall, TicketAi
from app.models.tag import Tag
from app.models.user import Role
from tests.conftest import bearer, create_user
from tests.fakes.openai_server import Fail, FakeOpenAI, Reply
from tests.fakes.server import serving
from tests.test_api.test_auto_assignment import new_category, new_team, new_ticket, timeline

TICKETS = "/api/v1/tickets"


class GatedFake:
    """A `FakeOpenAI` behind real HTTP whose answer can wait for `before_answer` (what a
    person does while the provider thinks)."""

    def __init__(self) -> None:
        self.fake = FakeOpenAI()
        self.before_answer: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.before_answer is not None:
            hook, self.before_answer = self.before_answer, None
            await hook()
        await self.fake.app(scope, receive, send)


@pytest.fixture
async def gate() -> AsyncIterator[GatedFake]:
    gated = GatedFake()
    async with serving(gated) as base_url:
        gated.fake.base_url = f"{base_url}/v1"
        yield gated
    gated.fake.closing.set()


@pytest.fixture
def fake(gate: GatedFake) -> FakeOpenAI:
    return gate.fake


@pytest.fixture
def triage_mode() -> str:
    return "suggest"


@pytest.fixture
def ai_on() -> bool:
    return True


@pytest.fixture
def settings(settings, fake, triage_mode, ai_on):
    llm = LlmSettings(providers=[fake.provider()] if ai_on else [], triage=triage_mode)
    return settings.model_copy(update={"llm": llm})


def answer(**fields: Any) -> Reply:
    body = {
        "category_id": None,
        "priority": "normal",
        "tags": [],
        "summary": "宿舍无法上网",
        "language": "zh",
        "sentiment": "neutral",
        **fields,
    }
    return Reply(json.dumps(body, ensure_ascii=False))


async def run_jobs(app) -> None:
    """The worker as app/main.py wires it: the dispatch job's listeners queue the triage."""
    ctx = app.state.ctx
    ai = wire_ai(ctx.settings, ctx.llm, ctx.tickets)
    handlers = build_handlers(ctx.settings, ctx.tickets, ctx.webhooks, ai.listeners) | ai.handlers
    await Worker(ctx.db, handlers, WorkerOptions(backoff_base_seconds=0)).run_until_idle()


async def existing_tags(app, *names: str) -> None:
    async with app.state.ctx.db.transaction() as session:
        await crud_ticket.get_or_create_tags(session, names)


async def tag_names(app) -> list[str]:
    async with app.state.ctx.db.transaction(write=False) as session:
        return list((await session.execute(select(Tag.name).order_by(Tag.name))).scalars())


async def ai_notes(app, ticket_id: int) -> TicketAi | None:
    async with app.state.ctx.db.transaction(write=False) as session:
        return await session.get(TicketAi, ticket_id)


async def triage_jobs(app) -> list[Job]:
    async with app.state.ctx.db.transaction(write=False) as session:
        return list((await session.execute(select(Job).where(Job.kind == TRIAGE))).scalars())


async def read(client, tokens, ticket_id: int) -> dict[str, Any]:
    response = await client.get(f"{TICKETS}/{ticket_id}", headers=bearer(tokens))
    assert response.status_code == 200, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def by_ai(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["data"].get("by") == "ai"]


# --- suggest ---------------------------------------------------------------------------------


async def test_suggest_mode_keeps_the_suggestion_for_agents_and_leaves_the_ticket(
    app, client, fake, customer, agent, admin
):
    parent = await new_category(client, admin, None, name="IT 服务")
    category = await new_category(
        client, admin, None, name="网络故障", parent_id=parent, description="宿舍、办公室断网"
    )
    await existing_tags(app, "网络", "宿舍")
    fake.script(
        answer(
            category_id=category,
            priority="high",
            tags=["网络", "Wi-Fi"],
            summary="宿舍断网\n插好网线也不行",
            sentiment="negative",
        )
    )
    ticket = await new_ticket(client, customer)

    await run_jobs(app)

    after = await read(client, agent, ticket["id"])
    assert (after["category"], after["priority"], after["tags"], after["version"]) == (None, "normal", [], 1)
    notes = await ai_notes(app, ticket["id"])
    assert notes is not None
    assert notes.triaged_at is not None
    assert notes.triage == {
        "category_id": category,
        "priority": "high",
        "tags": ["网络"],  # Wi-Fi is no existing tag
        "summary": "宿舍断网 插好网线也不行",
        "language": "zh",
        "sentiment": "negative",
        "mode": "suggest",
        "applied": [],
        "provider": "fake",
        "model": "fake-model",
    }
    [event] = by_ai(await timeline(client, agent, ticket["id"]))
    assert (event["type"], event["internal"], event["actor"]) == ("ticket.updated", True, None)
    assert event["data"] == {"by": "ai", "triage": notes.triage}
    # One request: the closed list with parents and descriptions, the ticket as untrusted data.
    assert fake.calls == 1
    sent = fake.all_text()
    assert f"{category} | IT 服务 / 网络故障 | 宿舍、办公室断网" in sent
    assert '<data source="ticket_title">\n宿舍连不上网\n</data>' in sent
    assert '<data source="ticket_message">\n网线插好了，还是没有网络\n</data>' in sent
    assert await tag_names(app) == ["宿舍", "网络"]


async def test_internal_notes_never_reach_the_provider(app, client, fake, customer, agent):
    ticket = await new_ticket(client, customer)
    note = {"body": "内部备注：该用户上周欠费停机", "internal": True}
    response = await client.post(f"{TICKETS}/{ticket['id']}/messages", json=note, headers=bearer(agent))
    assert response.status_code == 201, response.text
    fake.script(answer())

    await run_jobs(app)

    assert fake.calls == 1
    assert "欠费停机" not in fake.all_text()


async def test_a_phone_number_in_a_ticket_never_reaches_the_provider(app, client, fake, customer):
    fake.script(answer())
    await new_ticket(client, customer, body="网线插好了还是没网，急，回电 138 0013 8000")

    await run_jobs(app)

    assert fake.calls == 1
    sent = fake.all_text()
    assert "回电" in sent
    assert "8000" not in sent


@pytest.mark.parametrize("triage_mode", ["suggest", "apply"])
async def test_a_customer_never_sees_the_suggestion(app, client, fake, customer, agent, admin):
    category = await new_category(client, admin, None)
    fake.script(answer(category_id=category, priority="urgent", sentiment="angry", summary="客户非常生气"))
    ticket = await new_ticket(client, customer)

    await run_jobs(app)

    assert [e for e in await timeline(client, agent, ticket["id"]) if "triage" in e["data"]]
    for event in await timeline(client, customer, ticket["id"]):
        assert "triage" not in event["data"]
        assert "angry" not in json.dumps(event["data"])
    assert "angry" not in json.dumps(await read(client, customer, ticket["id"]))


# --- apply -----------------------------------------------------------------------------------


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_apply_mode_sets_category_priority_and_tags_and_routes_the_ticket(
    app, client, fake, customer, agent, admin
):
    member = await create_user(app, "agent_net", Role.agent)
    team = await new_team(client, admin, [member])
    category = await new_category(client, admin, team)
    await existing_tags(app, "网络", "宿舍")
    fake.script(answer(category_id=category, priority="high", tags=["网络", "编造的标签"]))
    ticket = await new_ticket(client, customer)
    assert ticket["assignee"] is None

    await run_jobs(app)

    after = await read(client, agent, ticket["id"])
    assert after["category"]["id"] == category
    assert (after["priority"], after["tags"], after["version"]) == ("high", ["网络"], 2)
    assert (after["assignee"]["id"], after["team"]["id"]) == (member, team)
    events = await timeline(client, agent, ticket["id"])
    [update] = [e for e in events if e["type"] == "ticket.updated" and not e["internal"]]
    assert update["actor"] is None
    assert update["data"] == {
        "category_id": [None, category],
        "priority": ["normal", "high"],
        "tags": [[], ["网络"]],
        "by": "ai",
    }
    assert events[-1]["type"] == "ticket.assigned"
    assert events[-1]["data"] == {
        "assignee_id": [None, member],
        "team_id": [None, team],
        "automatic": True,
        "strategy": "round_robin",
    }
    notes = await ai_notes(app, ticket["id"])
    assert notes is not None
    assert notes.triage is not None
    assert (notes.triage["mode"], notes.triage["applied"]) == ("apply", ["category_id", "priority", "tags"])
    assert await tag_names(app) == ["宿舍", "网络"]  # nothing invented


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_apply_mode_never_overwrites_a_category_or_priority_a_person_chose(
    app, client, fake, customer, agent, admin
):
    chosen = await new_category(client, admin, None, name="账号密码")
    other = await new_category(client, admin, None, name="网络故障")
    await existing_tags(app, "网络")
    fake.script(answer(category_id=other, priority="urgent", tags=["网络"]))
    ticket = await new_ticket(client, customer, category_id=chosen)
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"priority": "low"}, headers=bearer(agent))
    assert response.status_code == 200, response.text

    await run_jobs(app)

    after = await read(client, agent, ticket["id"])
    assert (after["category"]["id"], after["priority"], after["tags"]) == (chosen, "low", ["网络"])
    notes = await ai_notes(app, ticket["id"])
    assert notes is not None
    assert notes.triage is not None
    assert notes.triage["applied"] == ["tags"]
    [update] = [e for e in by_ai(await timeline(client, agent, ticket["id"])) if not e["internal"]]
    assert update["data"] == {"tags": [[], ["网络"]], "by": "ai"}


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_apply_mode_keeps_the_priority_an_agent_gave_at_creation(app, client, fake, customer, agent):
    fake.script(answer(priority="low"))
    body = {"title": "机房空调漏水", "body": "服务器机柜旁边在滴水", "priority": "high", "requester_id": customer["id"]}
    response = await client.post(TICKETS, json=body, headers=bearer(agent))
    assert response.status_code == 201, response.text
    ticket = response.json()

    await run_jobs(app)

    after = await read(client, agent, ticket["id"])
    assert (after["priority"], after["version"]) == ("high", 1)
    assert not [e for e in by_ai(await timeline(client, agent, ticket["id"])) if not e["internal"]]


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_apply_mode_defers_to_a_change_made_while_the_provider_answered(
    app, client, gate, customer, agent, admin
):
    category = await new_category(client, admin, None)
    gate.fake.script(answer(category_id=category, priority="urgent"))
    ticket = await new_ticket(client, customer)

    async def agent_sets_priority() -> None:
        response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"priority": "low"}, headers=bearer(agent))
        assert response.status_code == 200, response.text

    gate.before_answer = agent_sets_priority

    await run_jobs(app)

    after = await read(client, agent, ticket["id"])
    assert (after["category"]["id"], after["priority"], after["version"]) == (category, "low", 3)


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_an_invented_category_or_tag_is_dropped(app, client, fake, customer, agent, admin):
    category = await new_category(client, admin, None)
    await existing_tags(app, "网络")
    fake.script(answer(category_id=category + 1000, tags=["编造的标签", "打印机"], priority="normal"))
    ticket = await new_ticket(client, customer)

    await run_jobs(app)

    after = await read(client, agent, ticket["id"])
    assert (after["category"], after["tags"], after["version"]) == (None, [], 1)
    notes = await ai_notes(app, ticket["id"])
    assert notes is not None
    assert notes.triage is not None
    assert (notes.triage["category_id"], notes.triage["tags"], notes.triage["applied"]) == (None, [], [])
    assert [e["internal"] for e in by_ai(await timeline(client, agent, ticket["id"]))] == [True]
    assert await tag_names(app) == ["网络"]


# --- degrading -------------------------------------------------------------------------------


@pytest.mark.parametrize(("ai_on", "triage_mode"), [(False, "apply"), (True, "off")])
async def test_with_ai_off_no_triage_is_queued_and_tickets_are_untouched(app, client, fake, customer, agent):
    ticket = await new_ticket(client, customer)

    await run_jobs(app)

    assert await triage_jobs(app) == []
    assert fake.calls == 0
    assert await ai_notes(app, ticket["id"]) is None
    assert by_ai(await timeline(client, agent, ticket["id"])) == []
    assert (await read(client, agent, ticket["id"]))["version"] == 1


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_every_provider_failing_leaves_the_ticket_alone_and_ends_the_job(app, client, fake, customer, agent):
    fake.default = Fail(500)
    ticket = await new_ticket(client, customer)
    events = await timeline(client, agent, ticket["id"])

    await run_jobs(app)

    [job] = await triage_jobs(app)
    assert (job.status, job.attempts) == (JobStatus.failed, TRIAGE_ATTEMPTS)
    assert fake.calls == TRIAGE_ATTEMPTS
    assert await timeline(client, agent, ticket["id"]) == events
    assert (await read(client, agent, ticket["id"]))["version"] == 1
    assert await ai_notes(app, ticket["id"]) is None
    async with app.state.ctx.db.transaction(write=False) as session:
        calls = (await session.execute(select(LlmCall))).scalars().all()
    assert [(c.feature, c.ticket_id, c.outcome) for c in calls] == [("triage", ticket["id"], "server_error")] * 3


async def test_a_ticket_closed_before_triage_is_left_alone(app, client, fake, customer, agent):
    ticket = await new_ticket(client, customer)
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "closed"}, headers=bearer(customer))
    assert response.status_code == 200, response.text

    await run_jobs(app)

    assert fake.calls == 0
    assert await ai_notes(app, ticket["id"]) is None
    assert [job.status for job in await triage_jobs(app)] == [JobStatus.done]


# --- at least once ---------------------------------------------------------------------------


@pytest.mark.parametrize("triage_mode", ["apply"])
async def test_running_the_jobs_again_changes_nothing(app, client, fake, customer, agent):
    await existing_tags(app, "网络")
    fake.script(answer(priority="high", tags=["网络"]))
    ticket = await new_ticket(client, customer)
    await run_jobs(app)
    events = await timeline(client, agent, ticket["id"])
    first = await ai_notes(app, ticket["id"])
    [job] = await triage_jobs(app)
    assert job.idempotency_key == triage_key(ticket["id"])

    # Every job's worker died after its commit, before marking it done: all run again.
    async with app.state.ctx.db.transaction() as session:
        await session.execute(
            update(Job).values(status=JobStatus.running, locked_until=utcnow() - timedelta(seconds=1))
        )
    fake.script(answer(priority="low", tags=[]))
    await run_jobs(app)

    assert fake.calls == 1
    assert await timeline(client, agent, ticket["id"]) == events
    again = await ai_notes(app, ticket["id"])
    assert again is not None
    assert first is not None
    assert (again.triage, again.triaged_at) == (first.triage, first.triaged_at)
    assert (await read(client, agent, ticket["id"]))["priority"] == "high"
    assert [j.status for j in await triage_jobs(app)] == [JobStatus.done]
