"""SLA: policies, the business calendar, per-ticket SLA bookkeeping

Revision ID: 0011_sla
Revises: 0010_auto_assignment
Create Date: 2026-11-24 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0011_sla"
down_revision: str | None = "0010_auto_assignment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # New tables only: nothing existing is rebuilt, so SQLite's batch mode copies no rows here.
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "priority",
            sa.Enum("low", "normal", "high", "urgent", name="priority", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("first_response_minutes", sa.Integer(), nullable=True),
        sa.Column("resolution_minutes", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "first_response_minutes IS NULL OR first_response_minutes > 0",
            name=op.f("ck_sla_policies_first_response_positive"),
        ),
        sa.CheckConstraint(
            "resolution_minutes IS NULL OR resolution_minutes > 0", name=op.f("ck_sla_policies_resolution_positive")
        ),
        sa.ForeignKeyConstraint(
            ["category_id"], ["categories.id"], name=op.f("fk_sla_policies_category_id_categories"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policies")),
        sa.UniqueConstraint("priority", "category_id", name=op.f("uq_sla_policies_priority_category_id")),
    )
    with op.batch_alter_table("sla_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_policies_category_id"), ["category_id"], unique=False)
        batch_op.create_index(
            "uq_sla_policies_priority_default",
            ["priority"],
            unique=True,
            postgresql_where=sa.text("category_id IS NULL"),
            sqlite_where=sa.text("category_id IS NULL"),
        )

    op.create_table(
        "business_calendars",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_business_calendars_single_row")),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"], name=op.f("fk_business_calendars_updated_by_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_calendars")),
    )

    op.create_table(
        "ticket_slas",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=True),
        sa.Column("basis", sa.String(length=128), nullable=False),
        sa.Column("paused_seconds", sa.Integer(), nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=True),
        sa.Column("response_paused_seconds", sa.Integer(), nullable=True),
        sa.Column("first_response_warn_at", UTCDateTime(), nullable=True),
        sa.Column("first_response_breach_at", UTCDateTime(), nullable=True),
        sa.Column("resolution_warn_at", UTCDateTime(), nullable=True),
        sa.Column("resolution_breach_at", UTCDateTime(), nullable=True),
        sa.Column("first_response_warned_at", UTCDateTime(), nullable=True),
        sa.Column("first_response_breached_at", UTCDateTime(), nullable=True),
        sa.Column("resolution_warned_at", UTCDateTime(), nullable=True),
        sa.Column("resolution_breached_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["sla_policies.id"], name=op.f("fk_ticket_slas_policy_id_sla_policies"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_slas_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_slas")),
    )
    with op.batch_alter_table("ticket_slas", schema=None) as batch_op:
        for column in (
            "policy_id",
            "first_response_warn_at",
            "first_response_breach_at",
            "resolution_warn_at",
            "resolution_breach_at",
        ):
            batch_op.create_index(batch_op.f(f"ix_ticket_slas_{column}"), [column], unique=False)


def downgrade() -> None:
    op.drop_table("ticket_slas")
    op.drop_table("business_calendars")
    with op.batch_alter_table("sla_policies", schema=None) as batch_op:
        batch_op.drop_index("uq_sla_policies_priority_default")
        batch_op.drop_index(batch_op.f("ix_sla_policies_category_id"))
    op.drop_table("sla_policies")
