"""search: segmented text per ticket title and message, indexed for full-text search

Revision ID: 0009_search
Revises: 0008_qq_helpdesk
Create Date: 2026-11-24 14:00:00

SQLite: an FTS5 table over `tokens` and `context_tokens` (external content, kept in step by
triggers). PostgreSQL: a stored tsvector column `tokens_fts` over both, with a GIN index.
Neither exists in the models
(alembic/env.py skips `_fts` objects); a later migration that rebuilds `search_docs` in batch
mode on SQLite must recreate the triggers.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0009_search"
down_revision: str | None = "0008_qq_helpdesk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE search_docs_fts USING fts5(tokens, context_tokens, "
    "content='search_docs', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER search_docs_fts_insert AFTER INSERT ON search_docs BEGIN "
    "INSERT INTO search_docs_fts(rowid, tokens, context_tokens) VALUES (new.id, new.tokens, new.context_tokens); "
    "END",
    "CREATE TRIGGER search_docs_fts_delete AFTER DELETE ON search_docs BEGIN "
    "INSERT INTO search_docs_fts(search_docs_fts, rowid, tokens, context_tokens) "
    "VALUES ('delete', old.id, old.tokens, old.context_tokens); END",
    "CREATE TRIGGER search_docs_fts_update AFTER UPDATE OF tokens, context_tokens ON search_docs BEGIN "
    "INSERT INTO search_docs_fts(search_docs_fts, rowid, tokens, context_tokens) "
    "VALUES ('delete', old.id, old.tokens, old.context_tokens); "
    "INSERT INTO search_docs_fts(rowid, tokens, context_tokens) VALUES (new.id, new.tokens, new.context_tokens); "
    "END",
]
# Stored, not an expression index: ranking and the newest-first scan read it for every
# candidate row, and parsing the text again each time costs twenty times more.
POSTGRES_FTS = [
    "ALTER TABLE search_docs ADD COLUMN tokens_fts tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', tokens || ' ' || context_tokens)) STORED",
    "CREATE INDEX search_docs_fts_gin ON search_docs USING gin (tokens_fts)",
]


def upgrade() -> None:
    op.create_table(
        "search_docs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("context_tokens", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_search_docs_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_search_docs_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_docs")),
        sa.UniqueConstraint("message_id", name=op.f("uq_search_docs_message_id")),
    )
    with op.batch_alter_table("search_docs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_search_docs_ticket_id"), ["ticket_id"], unique=False)
        batch_op.create_index(
            "uq_search_docs_title",
            ["ticket_id"],
            unique=True,
            postgresql_where=sa.text("message_id IS NULL"),
            sqlite_where=sa.text("message_id IS NULL"),
        )
    statements = SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS
    for statement in statements:
        op.execute(statement)
    _queue_the_backfill()


def _queue_the_backfill() -> None:
    """Tickets written before search existed are indexed by the job worker, batch by batch
    (segmentation needs jieba: not a migration's work), while the app already serves."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM tickets LIMIT 1")).first() is None:
        return
    jobs = sa.table(
        "jobs",
        sa.column("kind", sa.String),
        sa.column("payload", sa.JSON),
        sa.column("status", sa.String),
        sa.column("run_at", UTCDateTime()),
        sa.column("attempts", sa.Integer),
        sa.column("max_attempts", sa.Integer),
        sa.column("idempotency_key", sa.String),
        sa.column("created_at", UTCDateTime()),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        jobs,
        [
            {
                "kind": "search.reindex",
                "payload": {"from_id": 1, "run": "0009"},
                "status": "pending",
                "run_at": now,
                "attempts": 0,
                "max_attempts": 8,
                "idempotency_key": "search.reindex:0009:1",
                "created_at": now,
            }
        ],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS search_docs_fts_{name}")
        op.execute("DROP TABLE IF EXISTS search_docs_fts")
    else:
        op.execute("DROP INDEX IF EXISTS search_docs_fts_gin")
        op.execute("ALTER TABLE search_docs DROP COLUMN IF EXISTS tokens_fts")
    with op.batch_alter_table("search_docs", schema=None) as batch_op:
        batch_op.drop_index("uq_search_docs_title")
        batch_op.drop_index(batch_op.f("ix_search_docs_ticket_id"))
    op.drop_table("search_docs")
