"""statistics: indexes for the time windows (resolved, first answered, rated in a range)

Revision ID: 0012_stats_indexes
Revises: 0011_sla
Create Date: 2026-11-24 14:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_stats_indexes"
down_revision: str | None = "0011_sla"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain CREATE INDEX: no table rebuild on SQLite, so nothing else to recreate.
    op.create_index("ix_tickets_resolved_at", "tickets", ["resolved_at"])
    op.create_index("ix_tickets_first_responded_at", "tickets", ["first_responded_at"])
    op.create_index("ix_ratings_created_at", "ratings", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_ratings_created_at", table_name="ratings")
    op.drop_index("ix_tickets_first_responded_at", table_name="tickets")
    op.drop_index("ix_tickets_resolved_at", table_name="tickets")
