"""Chinese full-text search on GET /tickets?q=: the golden query set (the same result sets on
SQLite and PostgreSQL), visibility, snippets, pagination and keeping the index in step."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from app.models.user import Role
from tests.conftest import bearer, create_user, login

TICKETS = "/api/v1/tickets"

# title, first message
CORPUS = {
    "mail": ("邮箱登录失败", "邮箱登录失败，提示密码错误"),
    "printer": ("三楼打印机卡纸", "一直提示卡纸，已经重启过了"),
    "print_fail": ("打印不出来", "文档点了打印没有反应"),
    "vpn": ("VPN 连接超时", "在家用 VPN 访问教务系统一直超时"),
    "bsod": ("电脑蓝屏了", "开机就蓝屏，错误代码 0x0000007B"),
    "wifi": ("宿舍网络问题", "宿舍 wifi 一直连不上，手机也不行"),
    "card": ("校园卡丢了", "饭卡和门禁都用不了，需要挂失"),
}

GOLDEN = [
    ("密码", {"mail"}),
    ("打印机", {"printer"}),
    ("打印", {"printer", "print_fail"}),
    ("VPN", {"vpn"}),
    ("vpn", {"vpn"}),
    ("ＶＰＮ", {"vpn"}),  # full-width, as Chinese input methods type it
    ("蓝屏", {"bsod"}),
    ("电脑蓝屏了", {"bsod"}),
    ("wifi 连不上", {"wifi"}),  # 连不上 in the message, wifi too; the title has neither
    ("WiFi连不上", {"wifi"}),
    ("宿舍 连不上", {"wifi"}),  # the terms in different texts of one ticket
    ("卡", {"printer", "card"}),  # one character: a substring, not a word
    ("卡纸", {"printer"}),
    ("0x0000007b", {"bsod"}),
    ("教务系统 超时", {"vpn"}),
    ("打印机 蓝屏", set()),  # every term must match
    ("不存在的词", set()),
    ("%", set()),
    ("，。！", set()),  # punctuation only
]


@pytest.fixture
def settings(settings):
    settings.search.rank_window = 100  # the smallest allowed: one test walks past it
    return settings


@pytest.fixture
async def corpus(client, customer) -> dict[str, int]:
    ids = {}
    for key, (title, body) in CORPUS.items():
        response = await client.post(TICKETS, json={"title": title, "body": body}, headers=bearer(customer))
        assert response.status_code == 201, response.text
        ids[key] = response.json()["id"]
    return ids


async def search(client, tokens, q: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(TICKETS, params={"q": q, **params}, headers=bearer(tokens))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def found(client, tokens, q: str) -> set[int]:
    return {item["id"] for item in await search(client, tokens, q, limit=100)}


@pytest.mark.parametrize(("q", "expected"), GOLDEN, ids=[q for q, _ in GOLDEN])
async def test_golden_queries_find_the_same_tickets_on_both_databases(client, agent, corpus, q, expected):
    assert await found(client, agent, q) == {corpus[key] for key in expected}


async def test_a_customer_searches_their_own_tickets_and_never_an_internal_note(client, app, agent, customer, corpus):
    other_id = await create_user(app, "customer2")
    other = {"id": other_id, **await login(client, "customer2")}
    theirs = await client.post(TICKETS, json={"title": "打印机缺墨", "body": "打印机提示缺墨"}, headers=bearer(other))
    note = await client.post(
        f"{TICKETS}/{corpus['printer']}/messages",
        json={"body": "内部：硒鼓型号是 CF283A，库房有货", "internal": True},
        headers=bearer(agent),
    )
    assert note.status_code == 201

    assert await found(client, customer, "打印机") == {corpus["printer"]}
    assert await found(client, other, "打印机") == {theirs.json()["id"]}
    assert await found(client, customer, "硒鼓") == set()
    assert await found(client, customer, "cf283a") == set()
    assert await found(client, agent, "硒鼓") == {corpus["printer"]}
    assert await found(client, agent, "打印机") == {corpus["printer"], theirs.json()["id"]}


async def test_a_short_substring_query_respects_visibility_too(client, agent, customer, corpus):
    await client.post(
        f"{TICKETS}/{corpus['mail']}/messages", json={"body": "备注：疑似撞库", "internal": True}, headers=bearer(agent)
    )
    assert await found(client, agent, "撞") == {corpus["mail"]}
    assert await found(client, customer, "撞") == set()


async def test_results_carry_an_escaped_snippet_with_the_matches_marked(client, customer, corpus):
    await client.post(
        f"{TICKETS}/{corpus['mail']}/messages",
        json={"body": "<b>还是</b>提示密码错误 & 无法登录"},
        headers=bearer(customer),
    )
    (item,) = await search(client, customer, "密码")
    assert "<mark>密码</mark>" in item["snippet"]
    assert "<b>" not in item["snippet"]
    (vpn,) = await search(client, customer, "vpn")
    assert vpn["snippet"] == "<mark>VPN</mark> 连接超时"  # the title: what the user wrote, marked
    (card,) = [i for i in await search(client, customer, "卡") if i["id"] == corpus["card"]]
    assert card["snippet"] == "校园<mark>卡</mark>丢了"
    plain = (await client.get(TICKETS, headers=bearer(customer))).json()["items"]
    assert all(item["snippet"] is None for item in plain)


async def test_relevance_puts_a_title_match_first_and_pages_walk_every_result_once(client, customer):
    ids = []
    for n in range(23):
        title = "打印机卡纸" if n == 7 else f"第 {n} 号工单"
        response = await client.post(
            TICKETS, json={"title": title, "body": f"打印机第 {n} 次出问题"}, headers=bearer(customer)
        )
        ids.append(response.json()["id"])
    seen: list[int] = []
    cursor = None
    while True:
        params = {"q": "打印机", "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(TICKETS, params=params, headers=bearer(customer))).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[0] == ids[7]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))


async def test_search_combines_with_filters_and_other_sorts(client, agent, customer, corpus):
    await client.patch(f"{TICKETS}/{corpus['printer']}", json={"status": "resolved"}, headers=bearer(agent))
    assert await found(client, agent, "打印") == {corpus["printer"], corpus["print_fail"]}
    resolved = await search(client, agent, "打印", status="resolved")
    assert [item["id"] for item in resolved] == [corpus["printer"]]
    newest_first = await search(client, agent, "打印", sort="-created_at")
    assert [item["id"] for item in newest_first] == [corpus["print_fail"], corpus["printer"]]
    assert all(item["snippet"] for item in newest_first)


async def test_a_new_title_replaces_the_old_one_in_the_index(client, agent, corpus):
    response = await client.patch(f"{TICKETS}/{corpus['card']}", json={"title": "一卡通挂失"}, headers=bearer(agent))
    assert response.status_code == 200
    assert corpus["card"] in await found(client, agent, "挂失")
    assert await found(client, agent, "丢了") == set()


async def test_merged_messages_are_found_on_the_ticket_they_joined(client, agent, customer):
    first = await client.post(TICKETS, json={"title": "投影仪", "body": "会议室投影仪不亮"}, headers=bearer(customer))
    second = await client.post(TICKETS, json={"title": "又坏了", "body": "幕布也降不下来"}, headers=bearer(customer))
    merged = await client.post(
        f"{TICKETS}/{second.json()['id']}/merge", json={"into_ticket_id": first.json()["id"]}, headers=bearer(agent)
    )
    assert merged.status_code == 200, merged.text
    assert await found(client, agent, "幕布") == {first.json()["id"]}


async def test_a_search_page_runs_a_constant_number_of_statements(app, client, agent, customer):
    for n in range(12):
        await client.post(TICKETS, json={"title": f"密码问题 {n}", "body": "提示密码错误"}, headers=bearer(customer))
    await search(client, agent, "密码", limit=1)  # the agent's login session is checked once, then cached
    engine = app.state.ctx.db.engine.sync_engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if not statement.startswith("BEGIN"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for limit in (2, 10):
            statements.clear()
            await search(client, agent, "密码", limit=limit)
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert counts[0] == counts[1]
    assert counts[0] <= 4, statements  # the ranked hits, the page (tags included), best documents, message bodies


async def test_an_agent_also_matches_internal_notes_but_customers_get_404_for_what_is_not_theirs(
    client, app, customer, corpus
):
    await create_user(app, "agent9", Role.agent)
    agent9 = await login(client, "agent9")
    assert await found(client, agent9, "密码") == {corpus["mail"]}


async def test_relevance_ranks_the_newest_window_of_matches_after_filters_and_other_sorts_see_all(
    client, agent, customer
):
    oldest = await client.post(TICKETS, json={"title": "打印机卡纸", "body": "打印机又卡纸"}, headers=bearer(customer))
    await client.patch(f"{TICKETS}/{oldest.json()['id']}", json={"status": "pending"}, headers=bearer(agent))
    for n in range(60):  # two documents each: 120 newer matches, past the window of 100
        await client.post(TICKETS, json={"title": f"打印机 {n}", "body": "打印机没反应"}, headers=bearer(customer))

    ranked = await found(client, agent, "打印机")
    everything = {item["id"] for item in await search(client, agent, "打印机", sort="-created_at", limit=100)}
    pending = await search(client, agent, "打印机", status="pending")

    assert len(ranked) == 50  # the newest 100 texts: 50 tickets
    assert oldest.json()["id"] not in ranked
    assert len(everything) == 61  # every match, in date order
    assert [item["id"] for item in pending] == [oldest.json()["id"]]  # filters come first
    assert len(await found(client, customer, "打印机")) == 61  # a customer's own: no window


async def test_a_substring_query_pages_newest_first(client, customer):
    ids = []
    for n in range(7):
        response = await client.post(
            TICKETS, json={"title": f"第 {n} 个问题", "body": f"饭卡第 {n} 次刷不了"}, headers=bearer(customer)
        )
        ids.append(response.json()["id"])
    seen, cursor = [], None
    while True:
        params = {"q": "卡", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(TICKETS, params=params, headers=bearer(customer))).json()
        seen += [item["id"] for item in page["items"]]
        assert all("<mark>卡</mark>" in item["snippet"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
