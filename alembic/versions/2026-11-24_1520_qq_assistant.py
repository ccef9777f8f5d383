"""qq assistant: conversations of the QQ knowledge-base assistant

Revision ID: 0015_qq_assistant
Revises: 0014_knowledge_base
Create Date: 2026-11-24 15:20:00

A new table only. At most one open conversation per (bot, QQ user): a partial unique index,
which SQLite and PostgreSQL both support.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0015_qq_assistant"
down_revision: str | None = "0014_knowledge_base"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qq_assistant_conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("self_id", sa.BigInteger(), nullable=False),
        sa.Column("qq_user_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open", "handed_over", "resolved", "expired", name="conversationstatus", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("turns", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_qq_assistant_conversations_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_qq_assistant_conversations_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qq_assistant_conversations")),
    )
    with op.batch_alter_table("qq_assistant_conversations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qq_assistant_conversations_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_qq_assistant_conversations_ticket_id"), ["ticket_id"], unique=False)
        batch_op.create_index(
            "uq_qq_assistant_conversations_open",
            ["self_id", "qq_user_id"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("qq_assistant_conversations", schema=None) as batch_op:
        batch_op.drop_index("uq_qq_assistant_conversations_open")
        batch_op.drop_index(batch_op.f("ix_qq_assistant_conversations_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_qq_assistant_conversations_user_id"))
    op.drop_table("qq_assistant_conversations")
