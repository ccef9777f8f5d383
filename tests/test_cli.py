"""The `helpdesk` command line: migrate, create-admin, openapi.

Plain (sync) tests: the commands call asyncio.run themselves, which must not happen inside
the test session's event loop.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.db.migrate import known_heads


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh SQLite file and data directory; every other HELPDESK_* variable unset."""
    monkeypatch.chdir(tmp_path)  # load_settings reads .env from the working directory
    values: dict[str, str | None] = {name: None for name in os.environ if name.upper().startswith("HELPDESK_")}
    values.update(
        {
            "HELPDESK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
            "HELPDESK_DATA_DIR": str(tmp_path / "data"),
            "HELPDESK_AUTH__ARGON2_TIME_COST": "1",
            "HELPDESK_AUTH__ARGON2_MEMORY_KIB": "64",
        }
    )
    return values


@pytest.fixture(autouse=True)
def restore_root_logger():
    """`openapi` builds the app, which installs a log handler on the runner's (then closed) stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def query(tmp_path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        return conn.execute(sql, params).fetchall()


def test_migrate_builds_the_schema_at_head(runner, env, tmp_path):
    result = runner.invoke(cli, ["migrate"], env=env)

    assert result.exit_code == 0, result.output
    tables = {name for (name,) in query(tmp_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "external_identities", "alembic_version"} <= tables
    assert {version for (version,) in query(tmp_path, "SELECT version_num FROM alembic_version")} == set(known_heads())
    assert "database at" in result.stdout


def test_migrate_twice_changes_nothing(runner, env):
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0

    result = runner.invoke(cli, ["migrate"], env=env)

    assert result.exit_code == 0, result.output


def test_reindex_rebuilds_the_search_index_from_tickets_and_messages(runner, env, tmp_path):
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        conn.execute(
            "INSERT INTO users (id, username, display_name, role, is_active, notification_preferences, "
            "created_at, updated_at) VALUES (1, 'zhangsan', '张三', 'customer', 1, '{}', "
            "'2026-11-24 08:00:00.000000', '2026-11-24 08:00:00.000000')"
        )
        for n in range(1, 6):
            conn.execute(
                "INSERT INTO tickets (id, number, title, status, priority, priority_rank, channel, requester_id, "
                "created_at, updated_at, version) VALUES (?, ?, ?, 'new', 'normal', 1, 'web', 1, "
                "'2026-11-24 08:00:00.000000', '2026-11-24 08:00:00.000000', 1)",
                (n, f"T{n}", f"三楼打印机卡纸 {n}"),
            )
            conn.execute(
                "INSERT INTO messages (ticket_id, author_id, body, internal, channel, created_at) "
                "VALUES (?, 1, '邮箱提示密码错误', 0, 'web', '2026-11-24 08:00:00.000000')",
                (n,),
            )

        # An article written before its words were known: re-segmented with the dictionary.
        conn.execute(
            "INSERT INTO kb_articles (id, title, body, status, tokens, created_at, updated_at, version) "
            "VALUES (1, '蓝屏怎么办', '电脑蓝屏时先重启', 'published', '', "
            "'2026-11-24 08:00:00.000000', '2026-11-24 08:00:00.000000', 1)"
        )

    result = runner.invoke(cli, ["reindex", "--batch", "2"], env=env)
    again = runner.invoke(cli, ["reindex"], env=env)

    assert result.exit_code == 0, result.output
    assert "10 search document(s) written, 1 knowledge-base article(s) re-segmented" in result.stdout
    assert query(tmp_path, "SELECT count(*) FROM kb_articles_fts WHERE kb_articles_fts MATCH ?", '"蓝屏"') == [(1,)]
    assert again.exit_code == 0, again.output  # idempotent: the same documents, refreshed
    match = "SELECT count(*) FROM search_docs_fts WHERE search_docs_fts MATCH ?"
    assert query(tmp_path, match, '"密码"') == [(5,)]
    assert query(tmp_path, match, '"打印机"') == [(10,)]  # the titles, and the messages through them
    assert query(tmp_path, "SELECT count(*) FROM search_docs") == [(10,)]


def test_create_admin_creates_an_admin_account(runner, env, tmp_path):
    result = runner.invoke(cli, ["create-admin", "--username", "boss", "--password", "a long password"], env=env)

    assert result.exit_code == 0, result.output
    assert "admin created" in result.stdout
    rows = query(tmp_path, "SELECT username, display_name, role, is_active, password_hash FROM users")
    assert len(rows) == 1
    username, display_name, role, is_active, password_hash = rows[0]
    assert (username, display_name, role, is_active) == ("boss", "boss", "admin", 1)
    # Hashed with argon2id, and with the cost the environment asked for.
    assert password_hash.startswith("$argon2id$v=19$m=64,t=1,")
    assert "a long password" not in password_hash


def test_create_admin_twice_exits_1_and_changes_nothing(runner, env, tmp_path):
    args = ["create-admin", "--username", "boss", "--password", "a long password"]
    assert runner.invoke(cli, args, env=env).exit_code == 0
    before = query(tmp_path, "SELECT id, password_hash FROM users")

    result = runner.invoke(cli, [*args[:-1], "another long password"], env=env)

    assert result.exit_code == 1
    assert "already exists" in result.stdout
    assert query(tmp_path, "SELECT id, password_hash FROM users") == before


def test_create_admin_rejects_a_short_password(runner, env, tmp_path):
    result = runner.invoke(cli, ["create-admin", "--username", "boss", "--password", "short"], env=env)

    assert result.exit_code == 2, result.output
    assert query(tmp_path, "SELECT count(*) FROM users") == [(0,)]


def test_openapi_prints_the_api_document_as_json(runner, env):
    result = runner.invoke(cli, ["openapi"], env=env)

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/auth/login", "/api/v1/auth/wechat", "/api/v1/users/me"} <= set(document["paths"])
    assert "Problem" in document["components"]["schemas"]


def test_create_admin_error_does_not_echo_the_rejected_password(runner, env):
    result = runner.invoke(cli, ["create-admin", "--username", "boss", "--password", "hunter2"], env=env)

    assert result.exit_code == 2
    assert "hunter2" not in result.output


def receive_private_message(env: dict[str, str], message: str, message_id: int) -> None:
    """What an API process does with a QQ message: into the inbox, a `qq.event` job queued."""
    import asyncio

    from app.bot.inbox import InboxStore
    from app.db.session import Database
    from app.onebot.events import parse_event

    event = parse_event(
        {
            "time": 1732435200,
            "self_id": 10001,
            "post_type": "message",
            "message_type": "private",
            "message_id": message_id,
            "user_id": 42,
            "message": message,
        }
    )

    async def receive() -> None:
        db = Database(env["HELPDESK_DATABASE_URL"])
        try:
            assert await InboxStore(db).first_seen(event.dedupe_key, event)
        finally:
            await db.dispose()

    asyncio.run(receive())


def jobs_by_kind(env: dict[str, str]) -> dict[str, str]:
    query = "SELECT kind, status || ' ' || COALESCE(routing_key, '-') FROM jobs ORDER BY id"
    return dict(query_db(env, query))


def query_db(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(env["HELPDESK_DATABASE_URL"].split("///", 1)[1]) as conn:
        return conn.execute(sql).fetchall()


def test_a_separate_worker_handles_qq_events_and_leaves_the_sends_to_the_bots_holder(runner, env):
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    receive_private_message(env, "/帮助", 77)

    result = runner.invoke(cli, ["worker", "--once"], env=env)

    assert result.exit_code == 0, result.output
    jobs = jobs_by_kind(env)
    assert jobs["qq.event"] == "done -"
    assert jobs["qq.send"] == "pending onebot:10001"  # the help text waits for the bot's holder


def test_a_separate_worker_runs_the_ai_jobs_too(runner, env):
    """`helpdesk serve --no-worker` leaves the assistant and triage to `helpdesk worker`, which
    must wire them as the API process does. The provider here refuses connections (a closed
    loopback port): the assistant hands over with a ticket, whose triage then waits for a retry."""
    env = {**env, "HELPDESK_LLM__PROVIDERS": '[{"name": "down", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]'}
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    receive_private_message(env, "宿舍的网络连不上了", 78)

    result = runner.invoke(cli, ["worker", "--once"], env=env)

    assert result.exit_code == 0, result.output
    jobs = jobs_by_kind(env)
    assert jobs["qq.assist"] == "done -"
    assert jobs["ai.triage"].startswith("pending")  # queued for the handover ticket, retried later
    assert query_db(env, "SELECT channel FROM tickets") == [("qq",)]
