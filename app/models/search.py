"""Search documents: one row per searchable text (a ticket's title, each message), holding its
segmented tokens and the visibility of the text it came from.

The full-text index lives outside the models (see the migration 0009_search): an FTS5 table
over `tokens` and `context_tokens` on SQLite; on PostgreSQL a stored tsvector column
`tokens_fts` over both, with a GIN index.
"""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class SearchDoc(Base):
    __tablename__ = "search_docs"
    __table_args__ = (
        # At most one title row per ticket (message rows carry their message's id).
        Index(
            "uq_search_docs_title",
            "ticket_id",
            unique=True,
            postgresql_where=text("message_id IS NULL"),
            sqlite_where=text("message_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # NULL for the ticket's title.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    # A copy of the message's `internal`: a customer's query never matches an internal note.
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    tokens: Mapped[str] = mapped_column(Text)
    # Messages carry their ticket's title tokens, so a query can match words of both.
    context_tokens: Mapped[str] = mapped_column(Text, default="", server_default="")
