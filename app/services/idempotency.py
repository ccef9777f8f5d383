"""Idempotent creates (API.md "Idempotency").

The record of the first response is inserted in the same transaction as what it creates,
under a unique (user, key) constraint: a crash leaves neither, a commit leaves both. A repeat
that arrives while the first is still running is 409 `idempotency_key_in_progress`: on
PostgreSQL a transaction-scoped advisory try-lock on (user, key) tells at once; on SQLite
writers are serialised, so the repeat starts after the first committed and is a replay.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from app.db.base import utcnow
from app.models.idempotency import IdempotencyRecord

RETENTION = timedelta(hours=24)


def fingerprint(method: str, path: str, canonical_body: Any) -> str:
    """sha256 over method, path and the body with key order and whitespace normalised."""
    body = json.dumps(canonical_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


async def begin(session: AsyncSession, *, user_id: int, key: str, request_fingerprint: str) -> StoredResponse | None:
    """Before the work: the stored response to replay, or None to go ahead."""
    if session.get_bind().dialect.name == "postgresql":
        locked = await session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": f"idem:{user_id}:{key}"}
        )
        if not locked.scalar_one():
            raise IdempotencyKeyInProgress
    record = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.expires_at > utcnow(),
            )
        )
    ).scalar_one_or_none()
    if record is None:
        return None
    if record.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused
    return StoredResponse(record.response_status, record.response_body)


async def finish(
    session: AsyncSession, *, user_id: int, key: str, request_fingerprint: str, status: int, body: Any
) -> None:
    """After the work, in its transaction: remember the response."""
    now = utcnow()
    # An expired record under the same key makes room for the new one.
    existing = (
        await session.execute(
            select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        )
    ).scalar_one_or_none()
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    session.add(
        IdempotencyRecord(
            user_id=user_id,
            key=key,
            fingerprint=request_fingerprint,
            response_status=status,
            response_body=body,
            created_at=now,
            expires_at=now + RETENTION,
        )
    )
    try:
        await session.flush()
    except IntegrityError:  # a concurrent first request got there (without the lock: SQLite)
        raise IdempotencyKeyInProgress from None
