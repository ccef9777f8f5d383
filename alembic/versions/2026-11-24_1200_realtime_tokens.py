"""single-use realtime tokens

Revision ID: 0007_realtime_tokens
Revises: 0006_webhooks
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0007_realtime_tokens"
down_revision: str | None = "0006_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "realtime_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name=op.f("fk_realtime_tokens_session_id_auth_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_realtime_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_realtime_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_realtime_tokens_token_hash")),
    )
    op.create_index(op.f("ix_realtime_tokens_expires_at"), "realtime_tokens", ["expires_at"])
    op.create_index(op.f("ix_realtime_tokens_session_id"), "realtime_tokens", ["session_id"])
    op.create_index(op.f("ix_realtime_tokens_user_id"), "realtime_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("realtime_tokens")
