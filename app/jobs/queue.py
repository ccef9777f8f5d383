"""Enqueueing: a job row written in the caller's transaction, so it exists iff the change does."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import CTE, Integer, Select, String, Table, bindparam, func, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.session import WAKE_AFTER_COMMIT
from app.db.statements import PerDialect, dialect_name
from app.models.job import Job, JobStatus

DEFAULT_MAX_ATTEMPTS = 8


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    idempotency_key: str | None = None,
    routing_key: str | None = None,
) -> None:
    """Add a job to the caller's transaction. With an idempotency key, a second enqueue of the
    same key (a periodic slot taken by another worker, a retried request) adds nothing."""
    now = utcnow()
    values = {
        "kind": kind,
        "payload": payload or {},
        "status": JobStatus.pending,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "idempotency_key": idempotency_key,
        "routing_key": routing_key,
        "created_at": now,
    }
    await session.execute(_insert_job(session) if idempotency_key is None else _insert_keyed_job(session), values)
    session.info[WAKE_AFTER_COMMIT] = True  # Database wakes the worker once this commits


async def insert_and_enqueue(
    session: AsyncSession, table: Table, values: dict[str, Any], kind: str, *, payload_key: str, key_prefix: str
) -> int:
    """Inserts one row of `table` and enqueues the `kind` job that handles it: payload
    `{payload_key: id}`, idempotency key `<key_prefix>:<id>`. Returns the row's id.

    On PostgreSQL both rows go in one statement (a data-modifying CTE): a round trip less for
    every ticket change, and on this machine a round trip costs more than the statement's own
    work (docs/benchmarks.md). SQLite runs in this process: two statements cost no more there."""
    if dialect_name(session) != "postgresql":
        row_id = int((await session.execute(_insert_returning_id(table), values)).scalar_one())
        await enqueue(session, kind, {payload_key: row_id}, idempotency_key=f"{key_prefix}:{row_id}")
        return row_id
    params = values | job_parameters(kind)
    statement = _insert_with_job(table, tuple(values), payload_key, key_prefix)
    row_id = int((await session.execute(statement, params)).scalar_one())
    session.info[WAKE_AFTER_COMMIT] = True
    return row_id


@cache
def _insert_returning_id(table: Table) -> Any:
    return table.insert().returning(table.c.id)


@cache
def _insert_with_job(table: Table, keys: tuple[str, ...], payload_key: str, key_prefix: str) -> Select[Any]:
    """`WITH new_row AS (INSERT ... RETURNING id), job AS (INSERT INTO jobs SELECT ... FROM new_row
    ON CONFLICT DO NOTHING) SELECT id FROM new_row`, built once per table and shape."""
    row = table.insert().values({key: bindparam(key, type_=table.c[key].type) for key in keys})
    inserted = row.returning(table.c.id).cte("new_row")
    return select(inserted.c.id).add_cte(job_for_row(inserted, payload_key, key_prefix))


def job_for_row(inserted: CTE, payload_key: str, key_prefix: str) -> CTE:
    """PostgreSQL: the job that handles the row a data-modifying CTE inserts (its `id` column),
    as a CTE of the same statement: `INSERT INTO jobs SELECT ... FROM <inserted> ON CONFLICT DO
    NOTHING`, payload `{payload_key: id}`, key `<key_prefix>:<id>`. Bind parameters: job_kind,
    job_status, job_now (`job_parameters`)."""
    now = bindparam("job_now", type_=_JOBS.c.run_at.type)
    job = select(
        bindparam("job_kind", type_=_JOBS.c.kind.type),
        func.json_build_object(literal(payload_key, String), inserted.c.id),
        bindparam("job_status", type_=_JOBS.c.status.type),
        now,
        literal(0, Integer),
        literal(DEFAULT_MAX_ATTEMPTS, Integer),
        literal(f"{key_prefix}:", String) + sql_cast(inserted.c.id, String),
        now,
    ).select_from(inserted)
    columns = ["kind", "payload", "status", "run_at", "attempts", "max_attempts", "idempotency_key", "created_at"]
    insert_job = pg_insert(_JOBS).from_select(columns, job)
    return insert_job.on_conflict_do_nothing(index_elements=[_JOBS.c.idempotency_key]).cte("job")


def job_parameters(kind: str) -> dict[str, Any]:
    """The bind parameters of `job_for_row`'s CTE."""
    return {"job_kind": kind, "job_status": JobStatus.pending, "job_now": utcnow()}


_JOBS = cast(Table, Job.__table__)
_insert_job = PerDialect(lambda insert: insert(_JOBS))
_insert_keyed_job = PerDialect(
    lambda insert: insert(_JOBS).on_conflict_do_nothing(index_elements=[_JOBS.c.idempotency_key])
)
