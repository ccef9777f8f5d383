"""llm: one row per provider attempt (usage accounting), and the AI's notes per ticket

Revision ID: 0013_llm
Revises: 0012_stats_indexes
Create Date: 2026-11-24 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0013_llm"
down_revision: str | None = "0012_stats_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # New tables only: nothing existing is rebuilt.
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("feature", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_llm_calls_ticket_id_tickets"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_calls")),
    )
    with op.batch_alter_table("llm_calls", schema=None) as batch_op:
        batch_op.create_index("ix_llm_calls_created_at", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_llm_calls_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "ticket_ai",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("triage", sa.JSON(), nullable=True),
        sa.Column("triaged_at", UTCDateTime(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("summary_event_id", sa.Integer(), nullable=True),
        sa.Column("summarized_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_ai_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_ai")),
    )


def downgrade() -> None:
    op.drop_table("ticket_ai")
    with op.batch_alter_table("llm_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_llm_calls_ticket_id"))
        batch_op.drop_index("ix_llm_calls_created_at")
    op.drop_table("llm_calls")
