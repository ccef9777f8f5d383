"""GET /metrics: Prometheus text for admins and the scrape token, with bounded labels and the
figures of the job queue, the LLM providers, OneBot and the realtime streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import LlmProviderSettings, LlmSettings, Settings
from app.db.base import utcnow
from app.jobs.queue import enqueue
from app.llm.client import ChatMessage
from app.main import create_app
from app.models.job import Job, JobStatus
from app.models.user import Role, User
from app.onebot.transports.http_api import HttpApiConnection
from tests.conftest import bearer, create_user, empty_tables, login, make_client
from tests.fakes.openai_server import Fail, FakeOpenAI, Reply, running_fake_openai
from tests.onebot_sim import Implementation, Quirks

METRICS = "/metrics"
SCRAPE_TOKEN = "scrape-token-0123456789abcdef"
BOT = 123456789

Labels = frozenset[tuple[str, str]]


@pytest.fixture
async def primary() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The scrape token always; the two fake providers when a test asks for them."""
    changes: dict[str, Any] = {"metrics_token": SecretStr(SCRAPE_TOKEN)}
    if "primary" in request.fixturenames:
        fakes = [("primary", request.getfixturevalue("primary")), ("backup", request.getfixturevalue("backup"))]
        providers = [LlmProviderSettings(**fake.provider(name)) for name, fake in fakes]
        changes["llm"] = LlmSettings(providers=providers)
    return settings.model_copy(update=changes)


async def scrape(client: Any, token: str = SCRAPE_TOKEN) -> dict[tuple[str, Labels], float]:
    response = await client.get(METRICS, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_need_a_token(client):
    response = await client.get(METRICS)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_authenticated"


async def test_a_wrong_token_is_refused(client):
    response = await client.get(METRICS, headers={"Authorization": f"Bearer {SCRAPE_TOKEN}x"})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_customers_and_agents_may_not_read_metrics(client, customer, agent):
    for who in (customer, agent):
        response = await client.get(METRICS, headers=bearer(who))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


async def test_admins_and_the_scrape_token_read_metrics(client, admin):
    assert (await client.get(METRICS, headers=bearer(admin))).status_code == 200
    samples = await scrape(client)
    assert value(samples, "helpdesk_job_queue_scrape_success") == 1


async def test_without_a_scrape_token_only_admins_read_metrics(settings, admin_engine: AsyncEngine):
    await empty_tables(admin_engine)
    application = create_app(settings.model_copy(update={"metrics_token": None}))
    async with application.router.lifespan_context(application), make_client(application) as client:
        await create_user(application, "boss", Role.admin)
        admin = await login(client, "boss")
        assert (await client.get(METRICS, headers={"Authorization": "Bearer "})).status_code == 401
        assert (await client.get(METRICS, headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})).status_code == 401
        assert (await client.get(METRICS, headers=bearer(admin))).status_code == 200


async def test_http_latency_is_labelled_with_the_route_template(client, customer):
    created = await client.post(
        "/api/v1/tickets", json={"title": "打印机卡纸", "body": "三楼"}, headers=bearer(customer)
    )
    ticket_id = created.json()["id"]
    assert (await client.get(f"/api/v1/tickets/{ticket_id}", headers=bearer(customer))).status_code == 200
    assert (await client.get(f"/api/v1/tickets/{ticket_id + 1000}", headers=bearer(customer))).status_code == 404
    assert (await client.get("/no/such/path/42")).status_code == 404

    samples = await scrape(client)

    route = "/api/v1/tickets/{ticket_id}"
    count = "helpdesk_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=route, status="2xx") == 1
    assert value(samples, count, method="GET", route=route, status="4xx") == 1
    assert value(samples, count, method="POST", route="/api/v1/tickets", status="2xx") == 1
    assert value(samples, count, method="GET", route="unmatched", status="4xx") == 1
    routes = {dict(labels).get("route", "") for name, labels in samples if name.startswith("helpdesk_http_")}
    raw = {f"/api/v1/tickets/{ticket_id}", f"/api/v1/tickets/{ticket_id + 1000}", "/no/such/path/42"}
    assert routes.isdisjoint(raw)
    assert not any(segment.isdigit() for r in routes for segment in r.split("/"))


async def test_job_queue_depth_age_and_dead_jobs_by_kind(app, client):
    async with app.state.ctx.db.transaction() as session:
        await enqueue(session, "notify", {"n": 1}, run_at=utcnow() - timedelta(seconds=90))
        await enqueue(session, "notify", {"n": 2})
        await enqueue(session, "webhook", {"n": 3}, run_at=utcnow() + timedelta(hours=1))
        await enqueue(session, "webhook", {"n": 4})
        await enqueue(session, "triage", {"n": 5})
    async with app.state.ctx.db.transaction() as session:
        await session.execute(update(Job).where(Job.payload["n"].as_integer() == 4).values(status=JobStatus.dead))
        await session.execute(update(Job).where(Job.payload["n"].as_integer() == 5).values(status=JobStatus.running))

    samples = await scrape(client)

    assert value(samples, "helpdesk_job_queue_depth", kind="notify", status="pending") == 2
    assert value(samples, "helpdesk_job_queue_depth", kind="webhook", status="pending") == 1
    assert value(samples, "helpdesk_job_queue_depth", kind="triage", status="running") == 1
    assert value(samples, "helpdesk_jobs_dead", kind="webhook") == 1
    assert value(samples, "helpdesk_jobs_dead", kind="notify") is None
    notify_age = value(samples, "helpdesk_job_queue_oldest_age_seconds", kind="notify", status="pending")
    assert notify_age is not None
    assert 89 <= notify_age < 600
    # A retry due in an hour is not late yet.
    assert value(samples, "helpdesk_job_queue_oldest_age_seconds", kind="webhook", status="pending") == 0


async def test_llm_attempts_are_counted_by_provider_and_outcome(app, client, primary, backup):
    primary.script(Fail(500))
    backup.script(Reply("好", prompt_tokens=12, completion_tokens=3))

    answer = await app.state.ctx.llm.complete("summary", [ChatMessage("user", "打印机卡纸了")])
    assert answer.provider == "backup"

    samples = await scrape(client)
    calls = "helpdesk_llm_calls_total"
    assert value(samples, calls, provider="primary", feature="summary", outcome="server_error") == 1
    assert value(samples, calls, provider="backup", feature="summary", outcome="ok") == 1
    assert value(samples, "helpdesk_llm_call_duration_seconds_count", provider="backup") == 1
    assert value(samples, "helpdesk_llm_tokens_total", provider="backup", direction="prompt") == 12
    assert value(samples, "helpdesk_llm_tokens_total", provider="backup", direction="completion") == 3
    assert value(samples, "helpdesk_llm_tokens_total", provider="primary", direction="prompt") is None


async def test_onebot_connections_and_counters(app, client):
    hub = app.state.ctx.onebot
    impl = Implementation(self_id=BOT, friends={345678901}, quirks=Quirks.napcat())
    async with make_client(app, client_ip="127.0.0.1") as loopback:
        response = await loopback.post("/onebot/v11/http", json=impl.private_message(345678901, "你好"))
    assert response.status_code == 204
    hub.attach(HttpApiConnection(app.state.ctx.http, "http://127.0.0.1:9", self_id=BOT))
    hub.metrics.inc("reconnects", "ws://napcat:3001/")

    samples = await scrape(client)

    assert value(samples, "helpdesk_onebot_connections", self_id=str(BOT), role="API", transport="http-api") == 1
    assert value(samples, "helpdesk_onebot_pending_calls") == 0
    assert value(samples, "helpdesk_onebot_events_in_total", self_id=str(BOT)) == 1
    assert value(samples, "helpdesk_onebot_connects_total", self_id=str(BOT)) == 1
    assert value(samples, "helpdesk_onebot_reconnects_total", url="ws://napcat:3001/") == 1


async def test_open_realtime_streams_are_counted(app, client, customer):
    bus = app.state.ctx.realtime.bus
    assert value(await scrape(client), "helpdesk_realtime_connections") == 0
    async with app.state.ctx.db.transaction(write=False) as session:
        user = await session.get(User, customer["id"])
    subscription = bus.subscribe(user)
    try:
        assert value(await scrape(client), "helpdesk_realtime_connections") == 1
    finally:
        bus.unsubscribe(subscription)


async def test_every_family_is_parseable_and_prefixed(app, client, admin):
    response = await client.get(METRICS, headers=bearer(admin))
    families = list(text_string_to_metric_families(response.text))
    names = {family.name for family in families}
    assert {
        "helpdesk_http_request_duration_seconds",
        "helpdesk_llm_calls",
        "helpdesk_job_queue_depth",
        "helpdesk_onebot_connections",
        "helpdesk_realtime_connections",
    } <= names
    assert all(name.startswith("helpdesk_") for name in names)
