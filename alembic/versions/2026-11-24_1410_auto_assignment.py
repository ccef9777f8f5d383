"""auto-assignment: a category's team, a team's assignment strategy

Revision ID: 0010_auto_assignment
Revises: 0009_search
Create Date: 2026-11-24 14:10:00

`categories.team_id` routes a category's tickets to a team; `teams.assignment` says how the
team hands them out and `teams.last_assigned_user_id` is round robin's place in its member list.
On SQLite the foreign keys make batch mode rebuild both tables (foreign keys are off meanwhile,
see app.db.migrate); neither table carries triggers or full-text objects.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_auto_assignment"
down_revision: str | None = "0009_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STRATEGY = sa.Enum("none", "round_robin", "least_open", name="assignmentstrategy", native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignment", STRATEGY, server_default="none", nullable=False))
        batch_op.add_column(sa.Column("last_assigned_user_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_teams_last_assigned_user_id_users"),
            "users",
            ["last_assigned_user_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_categories_team_id"), ["team_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_categories_team_id_teams"), "teams", ["team_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_categories_team_id_teams"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_categories_team_id"))
        batch_op.drop_column("team_id")

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_teams_last_assigned_user_id_users"), type_="foreignkey")
        batch_op.drop_column("last_assigned_user_id")
        batch_op.drop_column("assignment")
