"""SLA: policies, the business calendar, per-ticket SLA bookkeeping

Revision ID: 0011_sla
Revises: 0010_auto_assignment
Create Date: 2026-11-24 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0011_sla"
down_revision: str | None = "0010_auto_assignment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
