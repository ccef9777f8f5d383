"""statistics: indexes for the time windows (resolved, first answered, rated in a range)

Resolved and first-answered tickets are indexed with their `created_at`, so the percentile
statements read each duration from the index alone (SQLite: covering index; PostgreSQL: index
only scan) instead of a table lookup per ticket.

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
    op.create_index("ix_tickets_resolved_at_created_at", "tickets", ["resolved_at", "created_at"])
    op.create_index("ix_tickets_first_responded_at_created_at", "tickets", ["first_responded_at", "created_at"])
    op.create_index("ix_ratings_created_at", "ratings", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_ratings_created_at", table_name="ratings")
    op.drop_index("ix_tickets_first_responded_at_created_at", table_name="tickets")
    op.drop_index("ix_tickets_resolved_at_created_at", table_name="tickets")
