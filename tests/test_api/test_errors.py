"""Every failure answers problem+json with a stable code, Chinese by default, no internals."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db import migrate
from app.models import User
from tests.conftest import bearer, captured_logs

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code.replace("_", "-"))
    assert body["title"]
    assert body["detail"]
    return body


async def test_unknown_route_is_problem_404(client):
    body = assert_problem(await client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert body["detail"] == "资源不存在"


async def test_english_on_request(client):
    response = await client.get("/api/v1/no-such-thing", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert assert_problem(response, 404, "not_found")["detail"] == "Not found"


async def test_chinese_wins_when_preferred(client):
    response = await client.get("/api/v1/no-such-thing", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert assert_problem(response, 404, "not_found")["detail"] == "资源不存在"


async def test_wrong_method_is_problem_405(client):
    assert_problem(await client.delete("/api/v1/auth/login"), 405, "method_not_allowed")


async def test_oversized_body_is_problem_413(client):
    big = {"username": "big", "password": "password123", "display_name": "x" * (2 * 1024 * 1024)}
    assert_problem(await client.post("/api/v1/auth/register", json=big), 413, "payload_too_large")


async def test_oversized_body_without_content_length_is_413(client):
    async def chunks():
        for _ in range(40):
            yield b"x" * 65536

    response = await client.post(
        "/api/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_malformed_json_is_problem_400(client):
    response = await client.post(
        "/api/v1/auth/login", content=b'{"username": "a", ', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")


async def test_validation_errors_list_fields_in_chinese_and_english(client):
    body = {"username": "a" * 40, "password": 12345678}
    zh = assert_problem(await client.post("/api/v1/auth/register", json=body), 422, "validation_error")
    fields = {e["field"]: e for e in zh["errors"]}
    assert fields["username"]["code"] == "too_long"
    assert fields["username"]["message"] == "长度不能超过 32"
    assert fields["password"]["code"] == "invalid_type"
    en = (await client.post("/api/v1/auth/register", json=body, headers={"Accept-Language": "en"})).json()
    assert {e["field"]: e for e in en["errors"]}["username"]["message"] == "At most 32 characters"
    assert en["detail"] == "The request has invalid fields"


async def test_query_validation_is_problem_422(client, admin):
    response = await client.get("/api/v1/users", params={"limit": 1000}, headers=bearer(admin))
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "limit"
    assert body["errors"][0]["code"] == "too_large"


async def test_unhandled_error_is_problem_500_without_internals(app, client):
    async def explode() -> None:
        raise RuntimeError("secret internal detail: /srv/db password=hunter2")

    app.add_api_route("/api/v1/_test/explode", explode)
    with captured_logs() as output:
        response = await client.get("/api/v1/_test/explode", headers={"X-Request-ID": "trace-me-123"})
    body = assert_problem(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == "trace-me-123"
    # The log line has the stack trace and the request id, but not the password.
    errors = [json.loads(line) for line in output.getvalue().splitlines() if '"level": "error"' in line]
    assert errors[0]["request_id"] == "trace-me-123"
    assert "RuntimeError" in errors[0]["exception"]
    assert "hunter2" not in output.getvalue()


async def test_request_id_is_echoed_or_generated(client):
    given = await client.get("/api/v1/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await client.get("/api/v1/health")
    assert len(generated.headers["x-request-id"]) == 32
    hostile = await client.get("/api/v1/health", headers={"X-Request-ID": "bad id\r\nwith junk"})
    assert hostile.headers["x-request-id"] != "bad id\r\nwith junk"


async def test_failed_commit_is_an_error_not_a_200(app, client, admin_engine):
    """The commit happens before the response is sent: when it fails, the client hears so."""

    def refuse_commit(session: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(Session, "before_commit", refuse_commit)
    try:
        response = await client.post("/api/v1/auth/register", json={"username": "ghost", "password": "password123"})
    finally:
        event.remove(Session, "before_commit", refuse_commit)
    assert_problem(response, 500, "internal_error")
    async with admin_engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(User).where(User.username == "ghost"))).scalar()
    assert count == 0


async def test_openapi_documents_problem_responses(app):
    schema = app.openapi()
    assert "Problem" in schema["components"]["schemas"]
    login = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert "invalid_credentials" in login["401"]["description"]
    assert "429" in login


def test_every_error_code_has_both_languages():
    from app.core import errors, i18n
    from app.services import wechat

    classes = [
        c for m in (errors, wechat) for c in vars(m).values() if isinstance(c, type) and issubclass(c, errors.AppError)
    ]
    for cls in classes:
        zh, en = i18n.ERROR_TEXTS[cls.code]
        assert zh, cls
        assert en, cls


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "zh"),
        ("en", "en"),
        ("en-GB", "en"),
        ("fr, en;q=0.5", "en"),
        ("zh-TW", "zh"),
        ("de", "zh"),
        ("en;q=0.2, zh;q=0.8", "zh"),
        ("en;q=0", "zh"),
        ("*", "zh"),
        ("en;q=abc", "zh"),
    ],
)
def test_language_negotiation(header, expected):
    from app.core.i18n import pick_language

    assert pick_language(header) == expected


async def test_health_and_ready(client):
    assert (await client.get("/api/v1/health")).json() == {"status": "ok"}
    ready = await client.get("/api/v1/ready")
    assert ready.status_code == 200
    assert ready.json()["revision"] in migrate.known_heads()


async def test_not_ready_when_schema_is_missing(settings, tmp_path):
    from app.main import create_app
    from tests.conftest import make_client

    empty = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"})
    application = create_app(empty)
    async with application.router.lifespan_context(application), make_client(application) as client:
        body = assert_problem(await client.get("/api/v1/ready"), 503, "not_ready")
        assert body["revision"] is None


async def test_not_ready_when_database_is_unreachable(settings):
    from app.main import create_app
    from tests.conftest import make_client

    # A port nothing listens on: the connection is refused at once.
    down = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
    application = create_app(down)
    async with application.router.lifespan_context(application), make_client(application) as client:
        response = await client.get("/api/v1/ready")
        assert_problem(response, 503, "not_ready")
        assert "Traceback" not in json.dumps(response.json())
