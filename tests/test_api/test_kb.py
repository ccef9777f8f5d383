"""Knowledge base over /kb: staff write articles, customers read published ones (a draft is 404
to them and never appears in a list or a search), Chinese search with the ticket search's
machinery (the same result sets on SQLite and PostgreSQL), snippets, paging, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import bearer

ARTICLES = "/api/v1/kb/articles"
SEARCH = "/api/v1/kb/search"
ROLES = ("anonymous", "customer", "agent", "admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #  route                        anonymous customer agent admin
    "GET /kb/articles":             (401,      200,     200,  200),
    "GET /kb/articles/{id}":        (401,      200,     200,  200),
    "POST /kb/articles":            (401,      403,     201,  201),
    "PATCH /kb/articles/{id}":      (401,      403,     200,  200),
    "DELETE /kb/articles/{id}":     (401,      403,     204,  204),
    "GET /kb/search":               (401,      200,     200,  200),
}
# fmt: on

# key: (title, body, status)
CORPUS = {
    "password": ("如何重置邮箱密码", "登录页面点击“忘记密码”，按提示重置。", "published"),
    "printer": ("打印机卡纸处理", "打开前盖，取出卡住的纸张，再合上前盖。", "published"),
    "print": ("打印不出来怎么办", "先检查打印队列，再重启打印服务。", "published"),
    "vpn": ("VPN 使用指南", "在校外访问教务系统，需要先连接 VPN。", "published"),
    "wifi": ("宿舍无线网络连不上", "宿舍 wifi 连不上时，先忘记网络，再重新连接。", "published"),
    "card": ("校园卡挂失", "校园卡丢了，请到一卡通中心挂失。", "published"),
    "draft": ("新的密码策略（草稿）", "密码至少 12 位，尚未发布。", "draft"),
}

GOLDEN = [
    ("密码", {"password"}),
    ("打印机", {"printer"}),
    ("打印", {"printer", "print"}),
    ("VPN", {"vpn"}),
    ("vpn", {"vpn"}),
    ("ＶＰＮ", {"vpn"}),  # full-width, as Chinese input methods type it
    ("卡纸", {"printer"}),  # a 2-character word
    ("挂失", {"card"}),
    ("园卡", {"card"}),  # 2 characters, not a word: a substring of 校园卡
    ("前盖", {"printer"}),  # likewise
    ("卡", {"printer", "card"}),  # one character: a substring
    ("wifi 连不上", {"wifi"}),
    ("教务系统 VPN", {"vpn"}),
    ("打印机 密码", set()),  # every word must match
    ("不存在的词", set()),
    ("%", set()),
    ("，。！", set()),
]


@pytest.fixture
def callers(customer, agent, admin) -> dict[str, dict[str, str]]:
    return {"anonymous": {}, "customer": bearer(customer), "agent": bearer(agent), "admin": bearer(admin)}


async def new_article(client, tokens, **fields) -> dict[str, Any]:
    body = {"title": "如何重置密码", "body": "登录页面点击忘记密码。", "status": "published", **fields}
    response = await client.post(ARTICLES, json=body, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def corpus(client, agent) -> dict[str, int]:
    ids = {}
    for key, (title, body, status) in CORPUS.items():
        ids[key] = (await new_article(client, agent, title=title, body=body, status=status))["id"]
    return ids


async def search(client, tokens, q: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(SEARCH, params={"q": q, **params}, headers=bearer(tokens))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def found(client, tokens, q: str) -> set[int]:
    return {item["id"] for item in await search(client, tokens, q, limit=50)}


async def listed(client, tokens, **params: Any) -> list[int]:
    response = await client.get(ARTICLES, params={"limit": 100, **params}, headers=bearer(tokens))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "role", "expected"),
    [
        pytest.param(route, role, expected, id=f"{route} as {role}")
        for route, codes in MATRIX.items()
        for role, expected in zip(ROLES, codes, strict=True)
    ],
)
async def test_permission_matrix(client, agent, callers, route, role, expected):
    article = await new_article(client, agent)
    bodies: dict[str, Any] = {
        "POST /kb/articles": {"title": "打印机", "body": "卡纸"},
        "PATCH /kb/articles/{id}": {"title": "重置密码"},
    }
    method, path = route.split(" ")
    url = "/api/v1" + path.replace("{id}", str(article["id"]))
    params = {"q": "密码"} if route == "GET /kb/search" else None
    response = await client.request(method, url, json=bodies.get(route), params=params, headers=callers[role])
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["code"] == {401: "not_authenticated", 403: "forbidden"}[expected]


async def test_a_customer_gets_404_for_a_draft_and_agents_read_it(client, agent, customer):
    draft = await new_article(client, agent, status="draft")
    response = await client.get(f"{ARTICLES}/{draft['id']}", headers=bearer(customer))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "kb_article_not_found"
    assert response.json()["detail"] == "知识库文章不存在"
    english = await client.get(f"{ARTICLES}/{draft['id']}", headers={**bearer(customer), "Accept-Language": "en"})
    assert english.json()["detail"] == "Knowledge-base article not found"
    assert (await client.get(f"{ARTICLES}/{draft['id']}", headers=bearer(agent))).json() == draft


async def test_customers_never_see_drafts_in_lists_or_searches(client, agent, customer, corpus):
    published = [corpus[k] for k, (_, _, status) in CORPUS.items() if status == "published"]
    assert await listed(client, customer) == sorted(published, reverse=True)
    assert await listed(client, customer, status="draft") == []
    assert await found(client, customer, "密码") == {corpus["password"]}
    assert await found(client, customer, "策略") == set()
    assert await found(client, customer, "草") == set()  # a substring scan respects it too


async def test_agents_see_drafts_everywhere(client, agent, corpus):
    assert corpus["draft"] in await listed(client, agent)
    assert await listed(client, agent, status="draft") == [corpus["draft"]]
    assert corpus["draft"] not in await listed(client, agent, status="published")
    assert await found(client, agent, "密码") == {corpus["password"], corpus["draft"]}
    assert await found(client, agent, "草") == {corpus["draft"]}


# --- writing -------------------------------------------------------------------------------


async def test_agents_create_read_change_and_delete_articles(client, agent, admin, customer):
    category = (await client.post("/api/v1/categories", json={"name": "网络"}, headers=bearer(admin))).json()
    article = await new_article(
        client,
        agent,
        title=" 校园网\n登录 ",
        body="# 步骤\n\n1. 打开浏览器",
        status="draft",
        category_id=category["id"],
    )
    assert article["title"] == "校园网 登录"
    assert article["body"] == "# 步骤\n\n1. 打开浏览器"  # markdown as written
    assert (article["status"], article["category_id"], article["author_id"]) == ("draft", category["id"], agent["id"])
    assert article["version"] == 1

    response = await client.get(f"{ARTICLES}/{article['id']}", headers=bearer(agent))
    assert response.headers["etag"] == '"1"'

    response = await client.patch(
        f"{ARTICLES}/{article['id']}", json={"status": "published", "category_id": None}, headers=bearer(admin)
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["status"], changed["category_id"], changed["version"]) == ("published", None, 2)
    assert changed["title"] == "校园网 登录"
    assert changed["updated_at"] > article["updated_at"]
    assert response.headers["etag"] == '"2"'
    assert (await client.get(f"{ARTICLES}/{article['id']}", headers=bearer(customer))).json() == changed

    assert (await client.delete(f"{ARTICLES}/{article['id']}", headers=bearer(agent))).status_code == 204
    response = await client.get(f"{ARTICLES}/{article['id']}", headers=bearer(agent))
    assert response.status_code == 404
    assert response.json()["code"] == "kb_article_not_found"


async def test_a_patch_that_changes_nothing_keeps_the_version(client, agent):
    article = await new_article(client, agent)
    response = await client.patch(
        f"{ARTICLES}/{article['id']}", json={"title": article["title"]}, headers=bearer(agent)
    )
    assert response.json()["version"] == 1


async def test_a_stale_if_match_is_412(client, agent):
    article = await new_article(client, agent)
    url = f"{ARTICLES}/{article['id']}"
    first = await client.patch(url, json={"title": "甲"}, headers={**bearer(agent), "If-Match": '"1"'})
    assert first.status_code == 200
    stale = await client.patch(url, json={"title": "乙"}, headers={**bearer(agent), "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["code"] == "version_conflict"
    assert (await client.get(url, headers=bearer(agent))).json()["title"] == "甲"


async def test_create_with_an_idempotency_key_is_replayed(client, agent):
    headers = {**bearer(agent), "Idempotency-Key": "kb-1"}
    body = {"title": "VPN", "body": "连接 VPN"}
    first = await client.post(ARTICLES, json=body, headers=headers)
    again = await client.post(ARTICLES, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await listed(client, agent) == [first.json()["id"]]


@pytest.mark.parametrize(
    ("method", "path", "body"), [("GET", "", None), ("PATCH", "", {"title": "x"}), ("DELETE", "", None)]
)
async def test_a_missing_article_is_kb_article_not_found(client, agent, method, path, body):
    response = await client.request(method, f"{ARTICLES}/999{path}", json=body, headers=bearer(agent))
    assert response.status_code == 404
    assert response.json()["code"] == "kb_article_not_found"


async def test_an_unknown_category_is_refused(client, agent):
    response = await client.post(ARTICLES, json={"title": "t", "body": "b", "category_id": 999}, headers=bearer(agent))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "category_id"
    article = await new_article(client, agent)
    response = await client.patch(f"{ARTICLES}/{article['id']}", json={"category_id": 999}, headers=bearer(agent))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "category_id"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"title": "x" * 201, "body": "b"}, "title", "too_long"),
        ({"title": "  ", "body": "b"}, "title", "blank"),
        ({"title": "t", "body": "\u0000 \n"}, "body", "blank"),
        ({"title": "t", "body": "b" * 100_001}, "body", "too_long"),
        ({"title": "t"}, "body", "required"),
        ({"title": "t", "body": "b", "status": "archived"}, "status", "invalid_value"),
        ({"title": "t", "body": "b", "author_id": 1}, "author_id", "unknown_field"),
        ({"title": "t", "body": "b", "category_id": "网络"}, "category_id", "invalid_type"),
    ],
)
async def test_invalid_input_is_a_problem_with_a_code(client, agent, body, field, code):
    response = await client.post(ARTICLES, json=body, headers=bearer(agent))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({}, "q", "required"),
        ({"q": ""}, "q", "too_short"),
        ({"q": "x" * 201}, "q", "too_long"),
        ({"q": "密码", "limit": 0}, "limit", "too_small"),
        ({"q": "密码", "limit": 51}, "limit", "too_large"),
    ],
)
async def test_invalid_search_parameters_are_refused(client, customer, params, field, code):
    response = await client.get(SEARCH, params=params, headers=bearer(customer))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)


# --- lists ---------------------------------------------------------------------------------


async def test_walking_the_cursors_returns_every_article_once_newest_first(client, agent, customer):
    created = [(await new_article(client, agent, title=f"文章{i}"))["id"] for i in range(5)]
    await new_article(client, agent, title="草稿", status="draft")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(ARTICLES, params=params, headers=bearer(customer))).json()
        assert "body" not in page["items"][0]
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created[::-1]


async def test_a_forged_cursor_is_invalid_cursor(client, agent):
    response = await client.get(ARTICLES, params={"cursor": "not-a-cursor"}, headers=bearer(agent))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_the_list_filters_by_category(client, agent, admin):
    category = (await client.post("/api/v1/categories", json={"name": "硬件"}, headers=bearer(admin))).json()
    inside = await new_article(client, agent, category_id=category["id"])
    await new_article(client, agent)
    assert await listed(client, agent, category_id=category["id"]) == [inside["id"]]


async def test_the_list_runs_a_constant_number_of_statements(app, client, agent):
    for i in range(6):
        await new_article(client, agent, title=f"文章{i}", body="正文" * 1000)
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.state.ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for limit in (1, 3, 6):
            statements.clear()
            response = await client.get(ARTICLES, params={"limit": limit}, headers=bearer(agent))
            assert len(response.json()["items"]) == limit
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert counts == [counts[0]] * 3
    assert counts[0] <= 3, statements  # authentication, the page
    page = next(s for s in statements if "kb_articles" in s)
    assert "tokens" not in page
    assert "body" not in page


# --- search --------------------------------------------------------------------------------


@pytest.mark.parametrize(("q", "expected"), GOLDEN, ids=[q for q, _ in GOLDEN])
async def test_golden_queries_find_the_same_articles_on_both_databases(client, customer, corpus, q, expected):
    assert await found(client, customer, q) == {corpus[key] for key in expected}


async def test_title_words_weigh_more_than_body_words(client, agent, customer):
    in_body = await new_article(client, agent, title="账号常见问题", body="忘记密码时可以自助找回。")
    in_title = await new_article(client, agent, title="密码找回", body="在登录页自助找回。")
    often = await new_article(client, agent, title="账号安全", body="密码要复杂；密码要定期更换；不要共用密码。")
    items = await search(client, customer, "密码")
    assert [i["id"] for i in items] == [often["id"], in_title["id"], in_body["id"]]


async def test_ties_are_newest_first_and_limit_cuts(client, agent, customer):
    ids = [(await new_article(client, agent, title=f"打印机 {n}", body="同样的正文"))["id"] for n in range(4)]
    items = await search(client, customer, "打印机", limit=3)
    assert [i["id"] for i in items] == ids[::-1][:3]


async def test_results_carry_an_escaped_snippet_with_the_matches_marked(client, agent, customer):
    await new_article(client, agent, title="登录问题", body="<script>alert(1)</script> 提示密码错误 & 无法登录")
    (item,) = await search(client, customer, "密码")
    assert "<script>" not in item["snippet"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in item["snippet"]
    assert "<mark>密码</mark>" in item["snippet"]
    assert "&amp;" in item["snippet"]
    assert set(item) == {"id", "title", "status", "category_id", "updated_at", "snippet"}


async def test_a_match_in_the_title_only_marks_the_title(client, agent, customer):
    await new_article(client, agent, title="ＶＰＮ 客户端下载", body="见附件。")
    (item,) = await search(client, customer, "vpn")
    assert item["snippet"] == "<mark>ＶＰＮ</mark> 客户端下载"  # what the author wrote, marked


async def test_a_substring_snippet_marks_the_substring(client, agent, customer, corpus):
    items = {item["id"]: item for item in await search(client, customer, "园卡")}
    assert "校<mark>园卡</mark>丢了" in items[corpus["card"]]["snippet"]


async def test_changes_reach_the_index(client, agent, customer):
    article = await new_article(client, agent, title="打印机卡纸", body="打开前盖")
    await client.patch(f"{ARTICLES}/{article['id']}", json={"title": "投影仪不亮"}, headers=bearer(agent))
    assert await found(client, customer, "打印机") == set()
    assert await found(client, customer, "投影仪") == {article["id"]}
    await client.patch(f"{ARTICLES}/{article['id']}", json={"status": "draft"}, headers=bearer(agent))
    assert await found(client, customer, "投影仪") == set()
    await client.delete(f"{ARTICLES}/{article['id']}", headers=bearer(agent))
    assert await found(client, agent, "投影仪") == set()
