"""Knowledge-base articles: markdown written by staff, read by customers once published, and
searched (by people and, for grounding answers, by the AI) through their segmented `tokens`.

The full-text index over `tokens` lives outside the model (see the migration
0014_knowledge_base): an FTS5 table `kb_articles_fts` on SQLite; on PostgreSQL a stored
tsvector column `tokens_fts` with a GIN index.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class KbStatus(StrEnum):
    draft = "draft"
    published = "published"


class KbArticle(Base):
    __tablename__ = "kb_articles"
    __table_args__ = (
        # Lists walk newest first by id, filtered by status (customers: published) or category.
        Index("ix_kb_articles_status_id", "status", "id"),
        Index("ix_kb_articles_category_id_id", "category_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[KbStatus] = mapped_column(
        Enum(KbStatus, native_enum=False, length=16, validate_strings=True, name="kbstatus")
    )
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="SET NULL"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # The segmented title (twice: title words weigh double) and body, space-separated; see
    # app/services/knowledge_base.py. Never sent to clients; deferred and raising if a query
    # forgets it is not loaded, so lists never drag it along.
    tokens: Mapped[str] = mapped_column(Text, deferred=True, deferred_raiseload=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Optimistic concurrency as on tickets: every UPDATE carries "WHERE version = <read>", so a
    # concurrent writer gets StaleDataError (409); the service sets the next value itself.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012  # SQLAlchemy's hook
