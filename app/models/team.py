"""Teams of agents (routing and, later, visibility)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Column, Enum, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, TimestampMixin
from app.models.user import User

team_members = Table(
    "team_members",
    Base.metadata,
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class AssignmentStrategy(StrEnum):
    """How a team hands out tickets routed to it (app/services/assignment.py)."""

    none = "none"
    round_robin = "round_robin"
    least_open = "least_open"


class Team(TimestampMixin, Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    assignment: Mapped[AssignmentStrategy] = mapped_column(
        Enum(AssignmentStrategy, native_enum=False, length=16, validate_strings=True, name="assignmentstrategy"),
        default=AssignmentStrategy.none,
        server_default=AssignmentStrategy.none.value,
    )
    # Round robin's place in the member list: who got the team's last automatic assignment.
    last_assigned_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    members: Mapped[list[User]] = relationship(secondary=team_members, lazy="raise", order_by=User.id)
