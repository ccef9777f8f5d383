"""Bad input (issue 9): property-based fuzzing of every operation in the app's own OpenAPI
document with schemathesis, once with a customer's token and once with an agent's.

The app serves real HTTP (uvicorn on 127.0.0.1, in the test's event loop, lifespan entered by the
`app` fixture); schemathesis generates cases from `/openapi.json` and sends them with `requests`
from a worker thread, so the event loop keeps serving. Every response must not be a 5xx and must
match what the document promises for it: a documented status, its content type and its schema.
Valid and invalid data (schemathesis' positive and negative modes) are both sent, to generated
path ids and to ids of rows seeded beforehand, so that the bodies reach real resources too.

Every failure is collected (one example per operation and kind of failure) and reported at the
end, rather than stopping at the first, so one run shows everything that is wrong.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.core.config import LlmSettings, Settings
from app.models import Role
from tests.conftest import bearer, create_user, login
from tests.fakes.openai_server import FakeOpenAI, Reply, running_fake_openai
from tests.fakes.server import serving
from tests.reliability.conftest import scaled

# Cases per operation and token (half valid, half invalid): few on every CI run, many more under
# `make soak`.
MAX_EXAMPLES = scaled(12, 200)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# What is not fuzzed here, and why. Everything else in the document is.
EXCLUDED = {
    # An SSE stream answers 200 and then stays open until the client goes away: a request never
    # completes, so no response could be checked. Its bad inputs (tokens, Last-Event-ID) are
    # covered by tests/test_realtime.
    "GET /api/v1/events/stream",
}

REQUEST_TIMEOUT = 30.0
REPORT_CHARS = 4000


# What the fake provider answers every AI call with: valid for a summary (JSON) and, as text, for
# a streamed reply draft, so the AI endpoints answer for real instead of 503 `ai_disabled`.
AI_ANSWER = {"intent": "恢复网络", "summary": "宿舍网络连不上。", "open_questions": [], "mood": "neutral"}


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.default = Reply(json.dumps(AI_ANSWER, ensure_ascii=False))
        yield server


@pytest.fixture
def settings(settings: Settings, fake_llm: FakeOpenAI) -> Settings:
    return settings.model_copy(update={"llm": LlmSettings(providers=[fake_llm.provider()])})


@dataclass
class Seeded:
    """Rows that exist before the fuzzing starts, by the name of the path parameter that
    addresses them, so that generated bodies also reach real resources."""

    ids: dict[str, int]
    tokens: dict[str, dict[str, Any]]


@dataclass
class Findings:
    """The first example of each (operation, kind of failure)."""

    by_key: dict[tuple[str, str], str] = field(default_factory=dict)
    cases: int = 0

    def add(self, operation: str, kind: str, report: str) -> None:
        # Cut: a report quotes the request, and a body can be a megabyte.
        self.by_key.setdefault((operation, kind), report[:REPORT_CHARS])

    def render(self) -> str:
        out = io.StringIO()
        for (operation, kind), report in sorted(self.by_key.items()):
            out.write(f"\n===== {operation}: {kind}\n{report}\n")
        return out.getvalue()


async def seed(client: httpx.AsyncClient, app: Any) -> Seeded:
    """A little of everything through the API: the customer's tickets (one with a message from an
    agent and an attachment), another customer's ticket, a team, category, tag, canned response,
    published KB article, SLA policy and webhook; the jobs the tickets queued."""
    await create_user(app, "fuzz-admin", Role.admin)
    await create_user(app, "fuzz-agent", Role.agent)
    customer_id = await create_user(app, "fuzz-customer")
    await create_user(app, "fuzz-other")
    tokens = {name: await login(client, f"fuzz-{name}") for name in ("admin", "agent", "customer", "other")}
    admin, agent, customer = bearer(tokens["admin"]), bearer(tokens["agent"]), bearer(tokens["customer"])

    async def created(path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
        response = await client.post(f"/api/v1{path}", json=body, headers=headers)
        assert response.status_code in (200, 201), (path, response.text)
        return int(response.json()["id"])

    team_id = await created("/teams", {"name": "一线支持"}, admin)
    category_id = await created("/categories", {"name": "网络故障", "team_id": team_id}, admin)
    upload = await client.post("/api/v1/attachments", files={"file": ("截图.png", PNG, "image/png")}, headers=customer)
    assert upload.status_code == 201, upload.text
    attachment_id = int(upload.json()["id"])
    ticket_body = {
        "title": "宿舍无法连接校园网",
        "body": "从昨晚开始连不上 Wi-Fi。",
        "category_id": category_id,
        "attachment_ids": [attachment_id],
    }
    ticket_id = await created("/tickets", ticket_body, customer)
    tagged = await client.patch(f"/api/v1/tickets/{ticket_id}", json={"tags": ["wifi", "宿舍"]}, headers=agent)
    assert tagged.status_code == 200, tagged.text
    await created("/tickets", {"title": "打印机卡纸", "body": "三楼打印机。"}, customer)
    await created("/tickets", {"title": "别人的工单", "body": "看不到我。"}, bearer(tokens["other"]))
    await created(f"/tickets/{ticket_id}/messages", {"body": "我们正在处理。"}, agent)
    await created(f"/tickets/{ticket_id}/messages", {"body": "内部备注", "internal": True}, agent)
    tags = await client.get("/api/v1/tags", headers=agent)
    assert tags.status_code == 200, tags.text
    canned_id = await created("/canned-responses", {"title": "重启路由器", "body": "请先重启路由器。"}, admin)
    article_id = await created(
        "/kb/articles", {"title": "如何连接校园网", "body": "打开设置。", "status": "published"}, admin
    )
    policy_id = await created("/sla-policies", {"name": "紧急", "priority": "urgent"}, admin)
    webhook_id = await created("/webhooks", {"url": "http://127.0.0.1:9/hook"}, admin)
    jobs = await client.get("/api/v1/jobs", headers=admin)
    assert jobs.status_code == 200, jobs.text
    ids = {
        "ticket_id": ticket_id,
        "user_id": customer_id,
        "attachment_id": attachment_id,
        "category_id": category_id,
        "team_id": team_id,
        "tag_id": int(tags.json()["items"][0]["id"]),
        "canned_id": canned_id,
        "article_id": article_id,
        "policy_id": policy_id,
        "webhook_id": webhook_id,
        "job_id": int(jobs.json()["items"][0]["id"]),
    }
    return Seeded(ids=ids, tokens=tokens)


# The smallest valid PNG (1×1, transparent): the upload sniffs the type from the content.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def operations(schema: Any) -> Iterator[Any]:
    every = [result.ok() for result in schema.get_all_operations()]
    stale = EXCLUDED - {operation.label for operation in every}
    assert not stale, f"excluded operations that no longer exist: {stale}"
    return (operation for operation in every if operation.label not in EXCLUDED)


def strategies_for(operation: Any, ids: dict[str, int]) -> Any:
    """Positive and negative cases, to generated path ids and to the seeded ones."""
    known = {p.name: ids[p.name] for p in operation.path_parameters if p.name in ids}
    options = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        options.append(operation.as_strategy(generation_mode=mode))
        if known:
            options.append(operation.as_strategy(generation_mode=mode, path_parameters=known))
    return st.one_of(options)


def fuzz_operation(
    operation: Any, *, base_url: str, session: requests.Session, ids: dict[str, int], findings: Findings
) -> None:
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same cases on every run: a failure in CI reproduces locally
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: we report, not minimise
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategies_for(operation, ids))
    def check(case: schemathesis.Case) -> None:
        findings.cases += 1
        try:
            response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            findings.add(operation.label, f"no response: {type(exc).__name__}", f"{exc}\n{case.as_curl_command()}")
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                findings.add(operation.label, failure_kind(failure), str(group))

    check()


def failure_kind(failure: Failure) -> str:
    return f"{failure.code} {failure.title}"


def fuzz_everything(base_url: str, token: dict[str, Any], ids: dict[str, int]) -> Findings:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT)
    findings = Findings()
    with requests.Session() as session:
        session.headers.update(bearer(token))
        for operation in operations(schema):
            fuzz_operation(operation, base_url=base_url, session=session, ids=ids, findings=findings)
    return findings


# The admin too: otherwise the bodies sent to admin-only operations never get past the 403.
@pytest.mark.parametrize("role", ["customer", "agent", "admin"])
async def test_no_operation_answers_5xx_or_breaks_its_schema(app: Any, client: httpx.AsyncClient, role: str) -> None:
    seeded = await seed(client, app)
    async with serving(app) as base_url:
        findings = await asyncio.to_thread(fuzz_everything, base_url, seeded.tokens[role], seeded.ids)
    assert findings.cases > 0
    assert not findings.by_key, f"{len(findings.by_key)} failures in {findings.cases} cases:" + findings.render()
