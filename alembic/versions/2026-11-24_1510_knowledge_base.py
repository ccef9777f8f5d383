"""knowledge base: articles with segmented tokens, indexed for full-text search

Revision ID: 0014_knowledge_base
Revises: 0013_llm
Create Date: 2026-11-24 15:10:00

As for ticket search (0009_search): SQLite gets an FTS5 table over `tokens` (external
content, kept in step by triggers); PostgreSQL a stored tsvector column `tokens_fts` with a GIN
index. Neither exists in the models (alembic/env.py skips `_fts` objects); a later migration
that rebuilds `kb_articles` in batch mode on SQLite must recreate the triggers. A new table:
no rows to backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0014_knowledge_base"
down_revision: str | None = "0013_llm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE kb_articles_fts USING fts5(tokens, "
    "content='kb_articles', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER kb_articles_fts_insert AFTER INSERT ON kb_articles BEGIN "
    "INSERT INTO kb_articles_fts(rowid, tokens) VALUES (new.id, new.tokens); END",
    "CREATE TRIGGER kb_articles_fts_delete AFTER DELETE ON kb_articles BEGIN "
    "INSERT INTO kb_articles_fts(kb_articles_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); END",
    "CREATE TRIGGER kb_articles_fts_update AFTER UPDATE OF tokens ON kb_articles BEGIN "
    "INSERT INTO kb_articles_fts(kb_articles_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); "
    "INSERT INTO kb_articles_fts(rowid, tokens) VALUES (new.id, new.tokens); END",
]
POSTGRES_FTS = [
    "ALTER TABLE kb_articles ADD COLUMN tokens_fts tsvector GENERATED ALWAYS AS (to_tsvector('simple', tokens)) STORED",
    "CREATE INDEX kb_articles_fts_gin ON kb_articles USING gin (tokens_fts)",
]


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("draft", "published", name="kbstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_kb_articles_author_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["category_id"], ["categories.id"], name=op.f("fk_kb_articles_category_id_categories"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
    )
    with op.batch_alter_table("kb_articles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_articles_author_id"), ["author_id"], unique=False)
        batch_op.create_index("ix_kb_articles_category_id_id", ["category_id", "id"], unique=False)
        batch_op.create_index("ix_kb_articles_status_id", ["status", "id"], unique=False)
    statements = SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS kb_articles_fts_{name}")
        op.execute("DROP TABLE IF EXISTS kb_articles_fts")
    else:
        op.execute("DROP INDEX IF EXISTS kb_articles_fts_gin")
        op.execute("ALTER TABLE kb_articles DROP COLUMN IF EXISTS tokens_fts")
    with op.batch_alter_table("kb_articles", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_articles_status_id")
        batch_op.drop_index("ix_kb_articles_category_id_id")
        batch_op.drop_index(batch_op.f("ix_kb_articles_author_id"))
    op.drop_table("kb_articles")
