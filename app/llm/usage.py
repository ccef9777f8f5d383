"""Where the provider layer's attempts go: one `llm_calls` row each, in a short transaction of
its own (the feature that made the call holds no session while it waits)."""

from __future__ import annotations

from collections.abc import Callable

from app.crud import crud_llm
from app.db.session import Database
from app.llm.client import Attempt, UsageSink


def database_sink(db: Database, *, observe: Callable[[Attempt], None] | None = None) -> UsageSink:
    """`observe` (the metrics) sees each attempt first, so a failed write does not lose it."""

    async def record(attempt: Attempt) -> None:
        if observe is not None:
            observe(attempt)
        async with db.transaction() as session:
            await crud_llm.add_call(session, attempt)

    return record
