"""unique names among top-level categories

Revision ID: 0005_category_names
Revises: 0004_jobs
Create Date: 2026-11-24 10:10:00

UNIQUE(parent_id, name) treats NULL parents as distinct, so two concurrent creates could add
the same top-level name on PostgreSQL; a partial unique index closes that on both databases.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_category_names"
down_revision: str | None = "0004_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_categories_top_level_name",
        "categories",
        ["name"],
        unique=True,
        postgresql_where=sa.text("parent_id IS NULL"),
        sqlite_where=sa.text("parent_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_categories_top_level_name", table_name="categories")
