"""Alembic environment.

The app passes an open connection (app.db.migrate), already inside the transaction that holds
the migration lock. Run as `alembic ...` on its own, it connects with the settings' URL
through the same runner, so the same rules (foreign keys off on SQLite, advisory lock on
PostgreSQL) apply either way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context

from app.db.base import UTCDateTime
from app.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # Full-text search objects (FTS5 tables, the tsvector column, its GIN index) are made by
    # migrations, not models.
    return not (type_ in ("table", "index", "column") and name is not None and "_fts" in name)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Render our UTC timestamp type by name, with its import, in generated migrations.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from app.db.base import UTCDateTime")
        return "UTCDateTime()"
    return False


def run_with_connection(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with_connection(connection)
        return
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
    from app.core.config import load_settings
    from app.db.migrate import run_locked

    url = config.get_main_option("sqlalchemy.url") or load_settings().resolved_database_url
    asyncio.run(run_locked(url, run_with_connection))


main()
