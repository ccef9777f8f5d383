"""the QQ helpdesk: inbox, ticket origins, sent messages, binding codes

Revision ID: 0008_qq_helpdesk
Revises: 0007_realtime_tokens
Create Date: 2026-11-24 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0008_qq_helpdesk"
down_revision: str | None = "0007_realtime_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qq_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("self_id", sa.BigInteger(), nullable=False),
        sa.Column("post_type", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "done", "failed", name="inboxstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qq_inbox")),
        sa.UniqueConstraint("self_id", "post_type", "event_key", name=op.f("uq_qq_inbox_self_id_post_type_event_key")),
    )
    with op.batch_alter_table("qq_inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qq_inbox_received_at"), ["received_at"], unique=False)

    op.create_table(
        "qq_binding_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_qq_binding_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qq_binding_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_qq_binding_codes_code_hash")),
    )
    with op.batch_alter_table("qq_binding_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qq_binding_codes_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_qq_binding_codes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "qq_sent_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("self_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_qq_sent_messages_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qq_sent_messages")),
        sa.UniqueConstraint("self_id", "message_id", name=op.f("uq_qq_sent_messages_self_id_message_id")),
    )
    with op.batch_alter_table("qq_sent_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qq_sent_messages_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "qq_ticket_origins",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("self_id", sa.BigInteger(), nullable=False),
        sa.Column("qq_user_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_qq_ticket_origins_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_qq_ticket_origins")),
    )


def downgrade() -> None:
    op.drop_table("qq_ticket_origins")
    with op.batch_alter_table("qq_sent_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qq_sent_messages_ticket_id"))

    op.drop_table("qq_sent_messages")
    with op.batch_alter_table("qq_binding_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qq_binding_codes_user_id"))
        batch_op.drop_index(batch_op.f("ix_qq_binding_codes_expires_at"))

    op.drop_table("qq_binding_codes")
    with op.batch_alter_table("qq_inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qq_inbox_received_at"))

    op.drop_table("qq_inbox")
