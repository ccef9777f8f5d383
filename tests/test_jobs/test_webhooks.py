"""Outgoing webhooks: signed, retried, logged, switched off when the receiver keeps failing.
The receiver is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.jobs.handlers import build_handlers
from app.jobs.worker import Worker, WorkerOptions
from tests.conftest import bearer
from tests.fakes.server import serving

WEBHOOKS = "/api/v1/webhooks"


class Receiver:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        if len(self.requests) <= self.failures:
            return Response("busy", status_code=503)
        return Response(status_code=204)


@pytest.fixture
async def receiver():
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serving(app) as base_url:
        receiver.url = f"{base_url}/hook"
        yield receiver


async def run_jobs(app) -> None:
    ctx = app.state.ctx
    handlers = build_handlers(ctx.settings, ctx.tickets, ctx.webhooks)
    await Worker(ctx.db, handlers, WorkerOptions(backoff_base_seconds=0)).run_until_idle()


async def add_webhook(client, admin, url: str, **fields) -> dict:
    response = await client.post(WEBHOOKS, json={"url": url, **fields}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return response.json()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The recipe a receiver follows (API.md): HMAC-SHA256(secret, "<t>.<body>")."""
    parts = dict(item.split("=", 1) for item in headers["x-helpdesk-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


async def test_delivery_is_signed_retried_and_logged_as_succeeded(app, client, admin, customer, receiver):
    receiver.failures = 2
    hook = await add_webhook(client, admin, receiver.url, event_types=["ticket.created"])
    ticket = (await client.post("/api/v1/tickets", json={"title": "t", "body": "b"}, headers=bearer(customer))).json()
    await run_jobs(app)

    assert len(receiver.requests) == 3  # failed twice, then accepted
    headers, body = receiver.requests[-1]
    assert verify(hook["secret"], headers, body)
    assert not verify("another-secret-entirely", headers, body)
    event = json.loads(body)
    assert (event["type"], event["ticket_id"]) == ("ticket.created", ticket["id"])
    assert event["created_at"].endswith("Z")
    assert headers["x-helpdesk-event"] == "ticket.created"
    # Every attempt carries the same event id and delivery id, so receivers can de-duplicate.
    assert len({json.loads(b)["id"] for _, b in receiver.requests}) == 1
    assert len({h["x-helpdesk-delivery"] for h, _ in receiver.requests}) == 1

    log = (await client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=bearer(admin))).json()["items"]
    assert [(d["event_type"], d["status"], d["attempts"], d["response_status"]) for d in log] == [
        ("ticket.created", "succeeded", 3, 204)
    ]


async def test_only_subscribed_event_types_are_delivered(app, client, admin, agent, receiver):
    await add_webhook(client, admin, receiver.url, event_types=["ticket.rated"])
    all_events = await add_webhook(client, admin, receiver.url)
    await client.post("/api/v1/tickets", json={"title": "t", "body": "b"}, headers=bearer(agent))
    await run_jobs(app)
    types = [json.loads(body)["type"] for _, body in receiver.requests]
    assert types == ["ticket.created"]  # from the webhook that wants everything
    log = (await client.get(f"{WEBHOOKS}/{all_events['id']}/deliveries", headers=bearer(admin))).json()["items"]
    assert len(log) == 1


async def test_receiver_that_keeps_failing_gets_the_webhook_disabled(app, client, admin, agent, receiver):
    app.state.ctx.settings.webhooks.max_attempts = 2
    app.state.ctx.settings.webhooks.disable_after_failures = 2
    receiver.failures = 1000
    hook = await add_webhook(client, admin, receiver.url)
    for i in range(3):
        await client.post("/api/v1/tickets", json={"title": f"t{i}", "body": "b"}, headers=bearer(agent))
        await run_jobs(app)
    state = (await client.get(f"{WEBHOOKS}/{hook['id']}", headers=bearer(admin))).json()
    assert (state["is_active"], state["disabled_reason"]) == (False, "too_many_failures")
    log = (await client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=bearer(admin))).json()["items"]
    assert [d["status"] for d in log] == ["failed", "failed"]  # the third event found it disabled
    assert log[0]["response_status"] == 503
    assert len(receiver.requests) == 4  # two events x two attempts

    again = await client.patch(f"{WEBHOOKS}/{hook['id']}", json={"is_active": True}, headers=bearer(admin))
    assert (again.json()["is_active"], again.json()["consecutive_failures"]) == (True, 0)


async def test_unreachable_receiver_is_a_failed_attempt_not_a_crash(app, client, admin, agent):
    app.state.ctx.settings.webhooks.max_attempts = 1
    hook = await add_webhook(client, admin, "http://127.0.0.1:1/nothing-listens-here")
    await client.post("/api/v1/tickets", json={"title": "t", "body": "b"}, headers=bearer(agent))
    await run_jobs(app)
    (delivery,) = (await client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=bearer(admin))).json()["items"]
    assert delivery["status"] == "failed"
    assert "ConnectError" in delivery["error"]


async def test_secret_is_shown_once_and_never_listed(client, admin):
    created = await add_webhook(client, admin, "https://example.invalid/hook")
    assert len(created["secret"]) >= 32
    listed = (await client.get(WEBHOOKS, headers=bearer(admin))).json()["items"]
    assert "secret" not in listed[0]
    assert "secret" not in (await client.get(f"{WEBHOOKS}/{created['id']}", headers=bearer(admin))).json()


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.invalid/x"},
        {"url": "not a url"},
        {"url": "https://a.invalid", "event_types": ["nope"]},
        {"url": "https://a.invalid", "secret": "short"},
    ],
)
async def test_bad_webhook_settings_are_422(client, admin, body):
    assert (await client.post(WEBHOOKS, json=body, headers=bearer(admin))).status_code == 422


async def test_webhooks_are_for_admins_only(client, customer, agent, admin):
    hook = await add_webhook(client, admin, "https://example.invalid/hook")
    routes = [
        ("GET", WEBHOOKS),
        ("POST", WEBHOOKS),
        ("GET", f"{WEBHOOKS}/{hook['id']}"),
        ("PATCH", f"{WEBHOOKS}/{hook['id']}"),
        ("DELETE", f"{WEBHOOKS}/{hook['id']}"),
        ("GET", f"{WEBHOOKS}/{hook['id']}/deliveries"),
    ]
    for method, path in routes:
        body = {"url": "https://example.invalid/x"} if method in ("POST", "PATCH") else None
        assert (await client.request(method, path, json=body)).status_code == 401
        for who in (customer, agent):
            assert (await client.request(method, path, json=body, headers=bearer(who))).status_code == 403
    assert (await client.delete(f"{WEBHOOKS}/{hook['id']}", headers=bearer(admin))).status_code == 204
    assert (await client.get(f"{WEBHOOKS}/{hook['id']}", headers=bearer(admin))).json()["code"] == "webhook_not_found"
