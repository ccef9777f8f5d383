"""Ticket creation, numbering, idempotency, lists (filters, sorts, cursors) and input limits."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import StatementError

from app.crud import crud_ticket
from app.models import Ticket, TicketNumberCounter
from app.models.job import Job
from app.models.search import SearchDoc
from app.models.sla import SlaPolicy, TicketSla
from app.models.ticket import Message, Priority, TicketEvent
from app.models.user import Role
from app.schemas.ticket import TicketRead
from app.services.ticket import TicketService
from tests.conftest import bearer, create_user, login

TICKETS = "/api/v1/tickets"


async def new_ticket(client, tokens, **fields):
    body = {"title": "电脑蓝屏", "body": "开机就蓝屏，错误代码 0x0000007B", **fields}
    response = await client.post(TICKETS, json=body, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    return response.json()


async def test_customer_opens_a_ticket(client, customer):
    response = await client.post(
        TICKETS,
        json={"title": "  打印机卡纸  ", "body": "三楼打印机\n又卡纸了"},
        headers={**bearer(customer), "X-Client": "miniprogram"},
    )
    assert response.status_code == 201
    ticket = response.json()
    assert ticket["title"] == "打印机卡纸"
    assert ticket["status"] == "new"
    assert ticket["priority"] == "normal"
    assert ticket["channel"] == "miniprogram"
    assert ticket["requester"] == {"id": customer["id"], "display_name": "Customer1"}
    assert ticket["assignee"] is None
    assert ticket["version"] == 1
    assert re.fullmatch(r"\d{8}-\d{4}", ticket["number"])
    assert ticket["created_at"].endswith("Z")
    messages = (await client.get(f"{TICKETS}/{ticket['id']}/messages", headers=bearer(customer))).json()
    assert [m["body"] for m in messages] == ["三楼打印机\n又卡纸了"]


async def test_unknown_client_channel_counts_as_api(client, customer):
    ticket = await new_ticket(client, customer)
    assert ticket["channel"] == "api"
    response = await client.post(
        TICKETS, json={"title": "t", "body": "b"}, headers={**bearer(customer), "X-Client": "qq"}
    )
    assert response.json()["channel"] == "api"  # only the bot records qq


async def test_ticket_numbers_use_the_business_day_and_count_up(app, client, customer):
    first, second = await new_ticket(client, customer), await new_ticket(client, customer)
    day = datetime.now(app.state.settings.tz).strftime("%Y%m%d")
    assert first["number"] == f"{day}-0001"
    assert second["number"] == f"{day}-0002"


async def test_fifty_concurrent_creates_get_fifty_distinct_numbers(client, customer):
    responses = await asyncio.gather(
        *[client.post(TICKETS, json={"title": f"并发 {i}", "body": "x"}, headers=bearer(customer)) for i in range(50)]
    )
    assert [r.status_code for r in responses] == [201] * 50
    numbers = {r.json()["number"] for r in responses}
    assert len(numbers) == 50


FORMATS = ["{date:%Y%m%d}-{seq:04d}", "HD-{seq}", "{date:%y}{{x}}{seq:03d}", "T{seq:x}"]


@pytest.mark.parametrize("number_format", FORMATS)
async def test_numbers_are_what_the_format_gives_past_its_padding(app, client, customer, number_format):
    """On PostgreSQL the statement that takes the day's counter writes the number
    (app/services/numbering.py) unless the format needs Python (`{seq:x}`): both give what
    `format` gives, a counter wider than its zero padding included."""
    app.state.ctx.tickets.settings.number_format = number_format
    await new_ticket(client, customer)  # the day's counter row exists from here
    async with app.state.ctx.db.transaction() as session:
        await session.execute(update(TicketNumberCounter).values(last=10_010))
    ticket = await new_ticket(client, customer)
    day = datetime.now(app.state.settings.tz).date()
    assert ticket["number"] == number_format.format(date=day, seq=10_011)


# --- idempotency ---------------------------------------------------------------------------


async def test_idempotent_replay_returns_the_first_response(client, customer, admin_engine):
    headers = {**bearer(customer), "Idempotency-Key": "create-1", "Content-Type": "application/json"}
    first = await client.post(TICKETS, content=b'{"title": "A", "body": "B"}', headers=headers)
    # Same request with keys reordered and other whitespace: the same request.
    again = await client.post(TICKETS, content=b'{ "body":"B",\n "title":"A" }', headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    async with admin_engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Ticket))).scalar() == 1


async def test_same_key_different_request_is_422(client, customer):
    headers = {**bearer(customer), "Idempotency-Key": "create-2"}
    assert (await client.post(TICKETS, json={"title": "A", "body": "B"}, headers=headers)).status_code == 201
    response = await client.post(TICKETS, json={"title": "A", "body": "other"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


async def test_keys_are_per_user(client, customer, agent):
    one = await client.post(
        TICKETS, json={"title": "A", "body": "B"}, headers={**bearer(customer), "Idempotency-Key": "shared"}
    )
    two = await client.post(
        TICKETS, json={"title": "A", "body": "B"}, headers={**bearer(agent), "Idempotency-Key": "shared"}
    )
    assert one.json()["id"] != two.json()["id"]


async def test_failed_request_does_not_burn_the_key(client, customer):
    headers = {**bearer(customer), "Idempotency-Key": "retry-me"}
    bad = await client.post(TICKETS, json={"title": "A", "body": "B", "category_id": 999}, headers=headers)
    assert bad.status_code == 422
    good = await client.post(TICKETS, json={"title": "A", "body": "B"}, headers=headers)
    # A different body: allowed, since nothing was stored for the failed attempt.
    assert good.status_code == 201


async def test_twenty_concurrent_requests_with_one_key_create_one_ticket(client, customer, admin_engine):
    headers = {**bearer(customer), "Idempotency-Key": "storm"}
    responses = await asyncio.gather(
        *[client.post(TICKETS, json={"title": "暴风", "body": "雨"}, headers=headers) for _ in range(20)]
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [r.json() for r in responses if r.status_code == 201]
    assert created
    assert len({t["id"] for t in created}) == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["code"] == "idempotency_key_in_progress"
    async with admin_engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Ticket))).scalar() == 1


async def test_message_creation_is_idempotent_too(client, customer):
    ticket = await new_ticket(client, customer)
    headers = {**bearer(customer), "Idempotency-Key": "msg-1"}
    url = f"{TICKETS}/{ticket['id']}/messages"
    first = await client.post(url, json={"body": "补充一下"}, headers=headers)
    second = await client.post(url, json={"body": "补充一下"}, headers=headers)
    assert first.json() == second.json()
    assert len((await client.get(url, headers=bearer(customer))).json()) == 2


async def test_overlong_idempotency_key_is_refused(client, customer):
    response = await client.post(
        TICKETS, json={"title": "A", "body": "B"}, headers={**bearer(customer), "Idempotency-Key": "k" * 256}
    )
    assert response.status_code == 422


# --- lists ---------------------------------------------------------------------------------


async def test_cursor_walk_sees_every_ticket_once_while_new_ones_arrive(client, customer):
    original = {(await new_ticket(client, customer, title=f"t{i}"))["id"] for i in range(120)}
    seen: list[int] = []
    cursor, extra = None, 0
    while True:
        params = {"limit": 7, "sort": "created_at", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(TICKETS, params=params, headers=bearer(customer))).json()
        seen += [t["id"] for t in page["items"]]
        if extra < 10:
            await new_ticket(client, customer, title=f"late{extra}")
            extra += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a ticket was returned twice"
    assert original <= set(seen), "an original ticket was skipped"


@pytest.mark.parametrize("sort", ["-updated_at", "created_at", "-created_at", "-priority", "due"])
async def test_every_sort_pages_without_gaps_or_repeats(app, client, agent, sort):
    for i, priority in enumerate(["low", "urgent", "normal", "high", "urgent", "low", "normal"]):
        await new_ticket(client, agent, title=f"s{i}", priority=priority)
    await _set_due_dates(app)
    all_at_once = (await client.get(TICKETS, params={"sort": sort, "limit": 100}, headers=bearer(agent))).json()
    walked, cursor = [], None
    while True:
        params = {"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(TICKETS, params=params, headers=bearer(agent))).json()
        walked += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == [t["id"] for t in all_at_once["items"]]
    assert len(walked) == 7


async def _set_due_dates(app):
    """Give some tickets due dates (later issues compute them from SLA) and leave others without."""
    base = datetime(2026, 12, 1, tzinfo=UTC)
    async with app.state.ctx.db.transaction() as session:
        ids = (await session.execute(select(Ticket.id).order_by(Ticket.id))).scalars().all()
        for offset, ticket_id in enumerate(ids[:4]):
            due = base + timedelta(hours=(3 - offset) % 4)
            await session.execute(update(Ticket).where(Ticket.id == ticket_id).values(resolution_due_at=due))


async def test_priority_sort_is_by_rank_and_due_puts_missing_dates_last(app, client, agent):
    for priority in ["low", "urgent", "normal", "high"]:
        await new_ticket(client, agent, title=priority, priority=priority)
    by_priority = (await client.get(TICKETS, params={"sort": "-priority"}, headers=bearer(agent))).json()["items"]
    assert [t["priority"] for t in by_priority] == ["urgent", "high", "normal", "low"]
    await _set_due_dates(app)
    await new_ticket(client, agent, title="no due date")
    by_due = (await client.get(TICKETS, params={"sort": "due"}, headers=bearer(agent))).json()["items"]
    dues = [t["resolution_due_at"] for t in by_due]
    assert dues[:4] == sorted(dues[:4])
    assert dues[4:] == [None]


async def test_cursor_from_another_sort_is_refused(client, agent):
    for i in range(3):
        await new_ticket(client, agent, title=f"c{i}")
    cursor = (await client.get(TICKETS, params={"limit": 1}, headers=bearer(agent))).json()["next_cursor"]
    response = await client.get(
        TICKETS, params={"limit": 1, "sort": "-priority", "cursor": cursor}, headers=bearer(agent)
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_filters(app, client, customer, agent):
    other = await create_user(app, "agent2", Role.agent)
    a = await new_ticket(client, agent, title="网络断了", priority="high", tags=["网络"], assignee_id=agent["id"])
    b = await new_ticket(client, agent, title="邮箱满了", tags=["邮箱"], assignee_id=other)
    c = await new_ticket(client, customer, title="打印机")
    await client.patch(f"{TICKETS}/{b['id']}", json={"status": "pending"}, headers=bearer(agent))

    async def ids(**params):
        response = await client.get(TICKETS, params=params, headers=bearer(agent))
        assert response.status_code == 200, response.text
        return {t["id"] for t in response.json()["items"]}

    assert await ids(status="pending") == {b["id"]}
    assert await ids(status=["pending", "new"]) == {a["id"], b["id"], c["id"]}
    assert await ids(priority="high") == {a["id"]}
    assert await ids(assignee_id="me") == {a["id"]}
    assert await ids(assignee_id=str(other)) == {b["id"]}
    assert await ids(assignee_id="none") == {c["id"]}
    assert await ids(requester_id=customer["id"]) == {c["id"]}
    assert await ids(tag="网络") == {a["id"]}
    assert await ids(number=c["number"]) == {c["id"]}
    assert await ids(q="邮箱") == {b["id"]}
    assert await ids(q="%") == set()  # LIKE wildcards are matched literally
    assert await ids(channel="api") == {a["id"], b["id"], c["id"]}
    assert await ids(created_after="2000-01-01T00:00:00Z") == {a["id"], b["id"], c["id"]}
    assert await ids(created_before="2000-01-01T00:00:00Z") == set()
    # b was created before c but changed after it: both changed after b's creation.
    assert await ids(updated_after=b["updated_at"]) == {b["id"], c["id"]}


async def test_bad_filter_values_are_422(client, agent):
    for params in (
        {"status": "done"},
        {"priority": "meh"},
        {"assignee_id": "someone"},
        {"sort": "title"},
        {"limit": 0},
        {"created_after": "yesterday"},
    ):
        response = await client.get(TICKETS, params=params, headers=bearer(agent))
        assert response.status_code == 422, params
        assert response.json()["code"] == "validation_error"


async def test_a_list_statement_is_built_once_per_shape_and_holds_no_value_of_its_own(app, client, agent):
    """crud_ticket.list_page keeps its statement per shape: two customers, the same filters,
    pages and limits of their own, each sees their own tickets through the same statement."""
    first_id = await create_user(app, "kept-one")
    second_id = await create_user(app, "kept-two")
    first, second = await login(client, "kept-one"), await login(client, "kept-two")
    for tokens, count in ((first, 3), (second, 4)):
        for i in range(count):
            await new_ticket(client, tokens, title=f"kept {i}")
    built = crud_ticket._list_statement.cache_info().misses
    pages = {}
    for name, tokens in (("first", first), ("second", second)):
        params = {"limit": 2, "status": "new"}
        page = (await client.get(TICKETS, params=params, headers=bearer(tokens))).json()
        rest = await client.get(TICKETS, params=params | {"cursor": page["next_cursor"]}, headers=bearer(tokens))
        assert rest.status_code == 200, rest.text
        pages[name] = [item["requester"]["id"] for item in page["items"] + rest.json()["items"]]
    assert pages == {"first": [first_id] * 3, "second": [second_id] * 4}
    assert crud_ticket._list_statement.cache_info().misses - built <= 2  # the first page's shape, the next's
    statement = crud_ticket._list_statement(True, ("status",), "-updated_at", "")
    async with app.state.ctx.db.engine.connect() as conn:
        with pytest.raises(StatementError, match="user_id"):
            await conn.execute(statement, {"status": ["new"], "limit": 2})


async def test_list_runs_a_constant_number_of_statements(app, client, agent, customer):
    for i in range(12):
        await new_ticket(client, agent, title=f"n{i}", tags=["a", "b"], assignee_id=agent["id"])
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.state.ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for limit in (1, 5, 12):
            statements.clear()
            response = await client.get(TICKETS, params={"limit": limit}, headers=bearer(agent))
            assert len(response.json()["items"]) == limit
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # The page is one statement at any size: tickets with what they point at and their tags.
    # Authentication costs none: the login session was checked by new_ticket's requests and is
    # cached (app/services/auth.py PrincipalCache). SQLite's BEGIN is not a query.
    queries = [q for q in statements if not q.startswith("BEGIN")]
    assert counts == [counts[0]] * 3
    assert len(queries) == 1, statements


@pytest.mark.parametrize("policy", [False, True], ids=["no-sla-policy", "sla-policy"])
async def test_a_create_writes_its_rows_and_little_else(app, client, customer, database_url, policy):
    """A customer's ticket (docs/benchmarks.md "HTTP throughput"): the day's number, the ticket,
    its SLA row when a policy applies, its message, both search documents in one INSERT, the
    event and its job; the answer is built from the session, not read back. On PostgreSQL all of
    it is one statement (crud_ticket.insert_new_ticket): one round trip; on SQLite a Core
    statement per table. The policies and the business calendar are kept (app/services/sla.py)."""
    if policy:
        await add_policy_for_normal_tickets(app)
    await new_ticket(client, customer)  # warm: the login session and the SLA policies are cached
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.state.ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await new_ticket(client, customer)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    queries = [q for q in statements if not q.startswith("BEGIN")]
    sla = ["ticket_slas"] if policy else []
    if database_url.startswith("postgresql"):
        assert len(queries) == 1, queries
        expected = ["ticket_number_counters", "tickets", "messages", "ticket_events", "jobs", "search_docs", *sla]
        assert re.findall(r"INSERT INTO (\w+)", queries[0]) == expected, queries
    else:
        tables = [re.search(r"(?:INTO|UPDATE|FROM) (\w+)", q).group(1) for q in queries]
        assert tables == ["ticket_number_counters", "tickets", *sla, "messages", "search_docs", "ticket_events", "jobs"]


@pytest.mark.parametrize("policy", [False, True], ids=["no-sla-policy", "sla-policy"])
async def test_a_plain_create_writes_what_a_create_by_the_unit_of_work_writes(
    app, client, customer, monkeypatch, policy
):
    """The same create by both paths (a plain create by Core statements, one on PostgreSQL; one
    with tags, uploads or a chosen assignee by the unit of work): the same rows, its SLA row and
    due dates among them, the same answer, but ids, numbers and times. Both at the same instant,
    so that the due dates match too."""
    if policy:
        await add_policy_for_normal_tickets(app)
    instant = datetime.now(UTC)
    monkeypatch.setattr("app.services.ticket.utcnow", lambda: instant)
    first = await new_ticket(client, customer)
    monkeypatch.setattr(TicketService, "_plain", staticmethod(lambda body: False))
    second = await new_ticket(client, customer)
    assert first["id"] != second["id"]
    assert _without_own(first) == _without_own(second)
    assert first["number"][:-1] == second["number"][:-1]  # the day's next number
    async with app.state.ctx.db.engine.connect() as conn:
        written = [await _rows_of(conn, ticket["id"]) for ticket in (first, second)]
    assert written[0] == written[1]
    assert written[0]["ticket_events"] == [("ticket.created", customer["id"], False, ["message_id", "number", "title"])]
    assert written[0]["jobs"] == [("events.dispatch", "pending", ["event_id"], "event:")]
    title, message = written[0]["search_docs"]
    assert (title[1:3], message[1:3], message[3]) == ((False, True), (False, False), title[0])
    due = (first["first_response_due_at"], first["resolution_due_at"])
    if policy:
        assert None not in due
        assert len(written[0]["ticket_slas"]) == 1
        assert written[0]["ticket_slas"][0]["policy_id"] is not None
        assert written[0]["ticket_slas"][0]["resolution_breach_at"] is not None
    else:
        assert due == (None, None)
        assert written[0]["ticket_slas"] == []


async def add_policy_for_normal_tickets(app):
    async with app.state.ctx.db.transaction() as session:
        session.add(SlaPolicy(name="普通", priority=Priority.normal, first_response_minutes=240, resolution_minutes=90))


def _without_own(ticket):
    return {key: value for key, value in ticket.items() if key not in ("id", "number", "created_at", "updated_at")}


async def _rows_of(conn, ticket_id):
    """What a create wrote for one ticket, without its ids and times."""
    tickets, messages, docs = Ticket.__table__, Message.__table__, SearchDoc.__table__
    events, jobs = TicketEvent.__table__, Job.__table__
    own = {"id", "number", "created_at", "updated_at"}
    ticket = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).mappings().one()
    message = (await conn.execute(select(messages).where(messages.c.ticket_id == ticket_id))).mappings().all()
    doc_rows = await conn.execute(
        select(docs.c.tokens, docs.c.internal, docs.c.message_id.is_(None), docs.c.context_tokens)
        .where(docs.c.ticket_id == ticket_id)
        .order_by(docs.c.id)
    )
    event_rows = (await conn.execute(select(events).where(events.c.ticket_id == ticket_id))).mappings().all()
    slas = (await conn.execute(select(TicketSla.__table__).where(TicketSla.ticket_id == ticket_id))).mappings().all()
    event_keys = [f"event:{row['id']}" for row in event_rows]
    job_rows = (await conn.execute(select(jobs).where(jobs.c.idempotency_key.in_(event_keys)))).mappings().all()
    return {
        "tickets": {key: value for key, value in ticket.items() if key not in own},
        "messages": [{key: row[key] for key in ("author_id", "body", "internal", "channel")} for row in message],
        "search_docs": [(tokens, internal, is_title, context) for tokens, internal, is_title, context in doc_rows],
        "ticket_events": [(row["type"], row["actor_id"], row["internal"], sorted(row["data"])) for row in event_rows],
        "jobs": [(row["kind"], row["status"], sorted(row["payload"]), row["idempotency_key"][:6]) for row in job_rows],
        "ticket_slas": [{key: value for key, value in row.items() if key != "ticket_id"} for row in slas],
    }


# --- input limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"title": "x" * 201, "body": "b"}, "title", "too_long"),
        ({"title": "t", "body": "b" * 50_001}, "body", "too_long"),
        ({"title": "   ", "body": "b"}, "title", "blank"),
        ({"title": "t", "body": "\u0000\u0007 \n"}, "body", "blank"),
        ({"title": "t"}, "body", "required"),
        ({"title": "t", "body": "b", "tags": ["x" * 51]}, "tags.0", "too_long"),
        ({"title": "t", "body": "b", "tags": [f"t{i}" for i in range(21)]}, "tags", "too_long"),
        ({"title": "t", "body": "b", "priority": "asap"}, "priority", "invalid_value"),
        ({"title": "t", "body": "b", "surprise": 1}, "surprise", "unknown_field"),
    ],
)
async def test_input_limits_are_field_errors(client, agent, body, field, code):
    response = await client.post(TICKETS, json=body, headers=bearer(agent))
    assert response.status_code == 422, response.text
    errors = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert (field, code) in errors, errors


async def test_control_characters_are_stripped(client, customer):
    ticket = await new_ticket(client, customer, title="a\u0000b\u202ec", body="line1\r\nline2\u0008")
    assert ticket["title"] == "abc"
    messages = (await client.get(f"{TICKETS}/{ticket['id']}/messages", headers=bearer(customer))).json()
    assert messages[0]["body"] == "line1\r\nline2"


async def test_tags_are_normalised_and_deduplicated(client, agent):
    ticket = await new_ticket(client, agent, tags=["Printer", "printer", "ＰＲＩＮＴＥＲ", "打印机"])
    assert ticket["tags"] == ["printer", "打印机"]


async def test_agent_creates_on_behalf_of_a_customer(client, agent, customer):
    ticket = await new_ticket(client, agent, requester_id=customer["id"])
    assert ticket["requester"]["id"] == customer["id"]
    listed = (await client.get(TICKETS, headers=bearer(customer))).json()["items"]
    assert [t["id"] for t in listed] == [ticket["id"]]


async def test_assignee_must_be_an_active_agent(client, agent, customer):
    response = await client.post(
        TICKETS, json={"title": "t", "body": "b", "assignee_id": customer["id"]}, headers=bearer(agent)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "assignee_id"


async def test_concurrent_updates_never_surface_as_500(client, agent, app):
    ticket = await new_ticket(client, agent)
    url = f"{TICKETS}/{ticket['id']}"
    responses = await asyncio.gather(
        *[client.patch(url, json={"title": f"改名 {i}"}, headers=bearer(agent)) for i in range(12)]
    )
    assert {r.status_code for r in responses} <= {200, 409}
    final = (await client.get(url, headers=bearer(agent))).json()
    winners = [r.json() for r in responses if r.status_code == 200]
    assert final["version"] == 1 + len(winners)
    assert all(r.json()["code"] == "version_conflict" for r in responses if r.status_code == 409)


async def test_etag_and_if_match(client, agent):
    ticket = await new_ticket(client, agent)
    url = f"{TICKETS}/{ticket['id']}"
    read = await client.get(url, headers=bearer(agent))
    assert read.headers["etag"] == '"1"'
    changed = await client.patch(url, json={"title": "新标题"}, headers={**bearer(agent), "If-Match": '"1"'})
    assert changed.status_code == 200
    assert changed.headers["etag"] == '"2"'
    stale = await client.patch(url, json={"title": "旧的"}, headers={**bearer(agent), "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["code"] == "version_conflict"
    assert stale.json()["current_version"] == 2
    unchanged = await client.patch(url, json={"title": "新标题"}, headers=bearer(agent))
    assert unchanged.json()["version"] == 2  # nothing changed, nothing bumped


async def test_method_override_reaches_ticket_patch(client, agent):
    ticket = await new_ticket(client, agent)
    response = await client.post(
        f"{TICKETS}/{ticket['id']}",
        json={"priority": "urgent"},
        headers={**bearer(agent), "X-HTTP-Method-Override": "PATCH"},
    )
    assert response.status_code == 200
    assert response.json()["priority"] == "urgent"


async def test_ticket_json_has_the_documented_shape(client, customer):
    ticket = await new_ticket(client, customer)
    assert set(ticket) == {
        "id",
        "number",
        "title",
        "status",
        "priority",
        "channel",
        "category",
        "tags",
        "requester",
        "assignee",
        "team",
        "created_at",
        "updated_at",
        "first_response_due_at",
        "resolution_due_at",
        "first_responded_at",
        "resolved_at",
        "closed_at",
        "merged_into",
        "rating",
        "version",
    }
    json.dumps(ticket)


async def test_customer_cannot_clear_routing_fields_with_null(client, agent, customer):
    ticket = await new_ticket(client, agent, requester_id=customer["id"], assignee_id=agent["id"])
    for field in ("assignee_id", "team_id", "category_id"):
        response = await client.patch(f"{TICKETS}/{ticket['id']}", json={field: None}, headers=bearer(customer))
        assert response.status_code == 422, field
        assert response.json()["code"] == "field_not_allowed"
    assert (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()["assignee"] is not None


# --- the read model ------------------------------------------------------------------------


async def fully_routed_ticket(client, agent, customer, *, category_id: int, team_id: int):
    """An agent's ticket for `customer` with every reference set: category, team, assignee, tags."""
    return await new_ticket(
        client,
        agent,
        requester_id=customer["id"],
        category_id=category_id,
        team_id=team_id,
        assignee_id=agent["id"],
        tags=["网络", "b", "a"],
        priority="high",
    )


async def test_reads_answer_what_the_orm_model_answers(app, client, admin, agent, customer):
    """GET /tickets/{id} and list pages are built by one Core statement (crud_ticket.as_views);
    writes answer from ORM objects. Both must say the same about every field."""
    staff = bearer(agent)
    category = (await client.post("/api/v1/categories", json={"name": "硬件"}, headers=bearer(admin))).json()
    team = (await client.post("/api/v1/teams", json={"name": "一线"}, headers=bearer(admin))).json()
    routed = await fully_routed_ticket(client, agent, customer, category_id=category["id"], team_id=team["id"])
    rated = await new_ticket(client, customer)
    await client.patch(f"{TICKETS}/{rated['id']}", json={"status": "resolved"}, headers=staff)
    await client.post(f"{TICKETS}/{rated['id']}/rating", json={"score": 4, "comment": "好"}, headers=bearer(customer))
    merged = await new_ticket(client, customer, title="重复的")
    await client.post(f"{TICKETS}/{merged['id']}/merge", json={"into_ticket_id": rated["id"]}, headers=staff)

    async with app.state.ctx.db.transaction(write=False) as session:
        expected = {
            ticket_id: TicketRead.model_validate(await crud_ticket.reload(session, ticket_id)).model_dump(mode="json")
            for ticket_id in (routed["id"], rated["id"], merged["id"])
        }
    assert expected[routed["id"]]["tags"] == ["a", "b", "网络"]
    assert expected[rated["id"]]["rating"]["score"] == 4
    assert expected[merged["id"]]["merged_into"]["number"] == rated["number"]
    for ticket_id, fields in expected.items():
        for tokens in (agent, customer):
            assert (await client.get(f"{TICKETS}/{ticket_id}", headers=bearer(tokens))).json() == fields
    page = (await client.get(TICKETS, headers=staff)).json()["items"]
    assert {t["id"]: {k: v for k, v in t.items() if k != "snippet"} for t in page} == expected


async def test_a_create_answers_what_a_read_answers(app, client, admin, agent, customer):
    """POST /tickets builds its answer from the session (crud_ticket.new_ticket_view), or reads
    it when auto-assignment brought in names the session does not hold: either way it is the
    read model, due dates, tags and references included."""
    admin_headers = bearer(admin)
    sla = {"name": "高", "priority": "high", "first_response_minutes": 60, "resolution_minutes": 480}
    assert (await client.post("/api/v1/sla-policies", json=sla, headers=admin_headers)).status_code == 201
    team = (await client.post("/api/v1/teams", json={"name": "一线"}, headers=admin_headers)).json()
    routing_team = {"name": "二线", "assignment": "round_robin"}
    helpers = (await client.post("/api/v1/teams", json=routing_team, headers=admin_headers)).json()
    routed_to = await create_user(app, "routed_agent", Role.agent)
    members = {"user_ids": [routed_to]}
    assert (await client.put(f"/api/v1/teams/{helpers['id']}/members", json=members, headers=admin_headers)).is_success
    plain = (await client.post("/api/v1/categories", json={"name": "硬件"}, headers=admin_headers)).json()
    routing = {"name": "网络", "team_id": helpers["id"]}
    routed = (await client.post("/api/v1/categories", json=routing, headers=admin_headers)).json()

    created = [
        (customer, await new_ticket(client, customer)),
        (customer, await new_ticket(client, customer, category_id=plain["id"])),
        (customer, await new_ticket(client, customer, category_id=routed["id"])),  # auto-assigned
        (agent, await fully_routed_ticket(client, agent, customer, category_id=plain["id"], team_id=team["id"])),
    ]
    assert created[2][1]["assignee"]["id"] == routed_to
    assert created[3][1]["first_response_due_at"] is not None
    assert created[3][1]["tags"] == ["a", "b", "网络"]
    for tokens, answer in created:
        assert (await client.get(f"{TICKETS}/{answer['id']}", headers=bearer(tokens))).json() == answer


async def test_concurrent_writes_without_if_match_all_succeed(client, agent, customer):
    """API.md: without If-Match the write is accepted, last writer wins. On PostgreSQL the
    writers take the ticket's row lock in turn instead of failing the version check (409)."""
    ticket = await new_ticket(client, customer)
    url = f"{TICKETS}/{ticket['id']}"
    replies = [client.post(f"{url}/messages", json={"body": f"回复 {n}"}, headers=bearer(agent)) for n in range(8)]
    patches = [client.patch(url, json={"priority": p}, headers=bearer(agent)) for p in ("low", "high", "urgent")]
    responses = await asyncio.gather(*replies, *patches)
    assert [r.status_code for r in responses] == [201] * 8 + [200] * 3, [r.text for r in responses]
    messages = (await client.get(f"{url}/messages", headers=bearer(agent))).json()
    assert len(messages) == 9


async def test_ratings_and_merges_wait_for_concurrent_writers_instead_of_failing(client, agent, customer):
    """Rating and merging change a ticket's version, as PATCH does: they take its row lock
    first, so writers without If-Match that meet them follow one another (no 409). Two merges of
    one pair in opposite directions lock in id order: one merges, the other is refused, and
    neither deadlocks."""
    staff = bearer(agent)
    rated, source, target, other = [await new_ticket(client, customer) for _ in range(4)]
    assert (await client.patch(f"{TICKETS}/{rated['id']}", json={"status": "resolved"}, headers=staff)).is_success
    ratings = [
        client.post(f"{TICKETS}/{rated['id']}/rating", json={"score": score}, headers=bearer(customer))
        for score in (3, 4, 5)
    ]
    merge = client.post(f"{TICKETS}/{source['id']}/merge", json={"into_ticket_id": target["id"]}, headers=staff)
    patches = [
        client.patch(f"{TICKETS}/{ticket['id']}", json={"priority": priority}, headers=staff)
        for ticket in (rated, target)
        for priority in ("low", "high", "urgent")
    ]
    responses = await asyncio.gather(*ratings, merge, *patches)
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]

    crossing = [
        client.post(f"{TICKETS}/{one['id']}/merge", json={"into_ticket_id": two["id"]}, headers=staff)
        for one, two in ((target, other), (other, target))
    ]
    answers = await asyncio.gather(*crossing)
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
