"""Secrets never reach a log line; every line carries the request id."""

from __future__ import annotations

import json

import pytest

from app.core.logging import redact
from tests.conftest import PASSWORD, bearer, captured_logs, create_user, login


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /sns/jscode2session?appid=wx1&secret=abcdef123&js_code=xyz987 200", "abcdef123"),
        ("GET /sns/jscode2session?appid=wx1&secret=abcdef123&js_code=xyz987 200", "xyz987"),
        ('payload {"password": "hunter2hunter2", "username": "a"}', "hunter2hunter2"),
        ('{"refresh_token": "r3fr3sh-t0ken-value"}', "r3fr3sh-t0ken-value"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("Authorization: Token abcdefghijklmnop", "abcdefghijklmnop"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl seen", "eyJzdWIiOiIxIn0"),
        ("[parameters: ('alice', '$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA')]", "aGFzaA"),
        ("/onebot/v11/ws?access_token=0neb0t-t0ken", "0neb0t-t0ken"),
    ],
)
def test_redaction_removes_secrets(line, secret):
    assert secret not in redact(line)


def test_redaction_keeps_ordinary_text():
    assert redact("用户 alice 登录成功 status=200") == "用户 alice 登录成功 status=200"


async def test_auth_flows_log_no_password_or_token(app, client):
    await create_user(app, "alice")
    with captured_logs() as output:
        await client.post("/api/v1/auth/register", json={"username": "bob", "password": "bobs-own-password"})
        await client.post("/api/v1/auth/login", json={"username": "alice", "password": "a wrong password"})
        tokens = await login(client, "alice")
        refreshed = (await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
        await client.get("/api/v1/users/me", headers=bearer(refreshed))
        await client.get("/api/v1/users/me", headers={"Authorization": "Bearer forged.token.value"})
        await client.patch(
            "/api/v1/users/me",
            json={"password": "next-password", "current_password": PASSWORD},
            headers=bearer(refreshed),
        )
        await client.post("/api/v1/auth/logout", json={"refresh_token": refreshed["refresh_token"]})
        await client.get("/api/v1/health", params={"token": "query-string-secret"})
    text = output.getvalue()
    assert text, "the flows logged nothing at all"
    for secret in (
        "bobs-own-password",
        "a wrong password",
        PASSWORD,
        "next-password",
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        "forged.token.value",
        "query-string-secret",
        "$argon2",
    ):
        assert secret not in text, secret


async def test_access_log_is_json_with_request_id(client):
    with captured_logs() as output:
        await client.get("/api/v1/health", headers={"X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    access = next(line for line in lines if line["logger"] == "helpdesk.access")
    assert access["request_id"] == "req-42"
    assert access["path"] == "/api/v1/health"
    assert access["status"] == 200
    assert access["duration_ms"] >= 0
